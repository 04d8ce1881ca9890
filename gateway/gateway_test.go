package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestMain(m *testing.M) {
	if mode, ok := os.LookupEnv(fakeWorkerEnv); ok {
		fakeWorkerMain(mode)
		return
	}
	os.Exit(m.Run())
}

// startGateway runs a gateway on a free port with fake workers in the given mode.
func startGateway(t *testing.T, mode string, workers int) (*Server, string) {
	t.Helper()
	t.Setenv(fakeWorkerEnv, mode)
	cfg := DefaultConfig()
	cfg.App = "fake:app"
	cfg.Python = os.Args[0]
	cfg.Port = 0
	cfg.Workers = workers
	cfg.AccessLog = false
	cfg.StartupTimeout = 10 * time.Second
	cfg.HealthTimeout = 400 * time.Millisecond
	srv, err := NewServer(cfg, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	where, err := srv.Start()
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	go srv.Serve()
	t.Cleanup(srv.Shutdown)
	return srv, strings.TrimPrefix(where, "http://")
}

// waitWorkers returns the worker pids once n workers run: on a loaded machine a fake worker can
// miss a health check (HealthTimeout) and be in replacement for a moment.
func waitWorkers(t *testing.T, srv *Server, n int) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := srv.WorkerPIDs()
		if len(pids) == n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d workers running, want %d", len(pids), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, addr, path string) (*http.Response, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s body: %v", path, err)
	}
	return resp, string(b)
}

func TestGetThroughWorker(t *testing.T) {
	_, addr := startGateway(t, "ok", 1)
	resp, body := get(t, addr, "/caf%C3%A9")
	if resp.StatusCode != 200 || !strings.Contains(body, "path=/café body=0") {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if got := resp.Header.Values("Set-Cookie"); len(got) != 2 || got[0] != "a=1" || got[1] != "b=2" {
		t.Fatalf("set-cookie headers %q", got)
	}
	if resp.Header.Get("Server") != "asgi-gateway" || resp.Header.Get("Date") == "" {
		t.Fatalf("default headers missing: %v", resp.Header)
	}
}

func TestPipelinedRequestsAnswerInOrder(t *testing.T) {
	_, addr := startGateway(t, "ok", 1)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	var reqs strings.Builder
	for i := 0; i < 5; i++ {
		fmt.Fprintf(&reqs, "POST /r%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", i, i, strings.Repeat("x", i))
	}
	if _, err := io.WriteString(nc, reqs.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	for i := 0; i < 5; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if want := fmt.Sprintf("path=/r%d body=%d", i, i); !strings.Contains(string(b), want) {
			t.Fatalf("response %d = %q, want %q", i, b, want)
		}
	}
}

func TestChunkedUploadReachesWorker(t *testing.T) {
	_, addr := startGateway(t, "ok", 1)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(nc, "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	time.Sleep(20 * time.Millisecond)
	io.WriteString(nc, "6\r\n world\r\n0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), "body=11") {
		t.Fatalf("got %q", b)
	}
}

func TestMalformedRequestNeverReachesWorker(t *testing.T) {
	_, addr := startGateway(t, "ok", 1)
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
		"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
		"BLAH\r\n\r\n",
	} {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(nc, raw)
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		nc.Close()
		if err != nil || resp.StatusCode != 400 {
			t.Fatalf("%q: got %v %v, want 400", raw, resp, err)
		}
	}
	if resp, _ := get(t, addr, "/after"); resp.StatusCode != 200 {
		t.Fatalf("server stopped serving after bad requests: %d", resp.StatusCode)
	}
}

func TestAppErrorBeforeStartIs500(t *testing.T) {
	_, addr := startGateway(t, "ok", 1)
	if resp, _ := get(t, addr, "/raise"); resp.StatusCode != 500 {
		t.Fatalf("got %d, want 500", resp.StatusCode)
	}
	if resp, _ := get(t, addr, "/fine"); resp.StatusCode != 200 {
		t.Fatalf("after the error: %d", resp.StatusCode)
	}
}

// A worker that breaks the protocol is killed and replaced; the request it held fails with 502 and
// the next requests are served by its replacement.
func TestBrokenWorkerIsReplaced(t *testing.T) {
	for _, mode := range []string{"garbage", "unknown-stream", "oversize", "exit", "hang"} {
		t.Run(mode, func(t *testing.T) {
			srv, addr := startGateway(t, mode, 1)
			before := waitWorkers(t, srv, 1)
			resp, _ := get(t, addr, "/misbehave")
			if resp.StatusCode != 502 {
				t.Fatalf("request on the broken worker: %d, want 502", resp.StatusCode)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				pids := srv.WorkerPIDs()
				if len(pids) == 1 && pids[0] != before[0] {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("worker not replaced: before %v, now %v", before, pids)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if resp, body := get(t, addr, "/next"); resp.StatusCode != 200 || !strings.Contains(body, "path=/next") {
				t.Fatalf("after replacement: %d %q", resp.StatusCode, body)
			}
		})
	}
}

func TestAppLoadErrorIsReported(t *testing.T) {
	t.Setenv(fakeWorkerEnv, "hello-error")
	cfg := DefaultConfig()
	cfg.App, cfg.Python, cfg.Port = "fake:app", os.Args[0], 0
	srv, err := NewServer(cfg, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	_, err = srv.Start()
	var appErr *AppLoadError
	if !errors.As(err, &appErr) || !strings.Contains(appErr.Message, "fake failure") {
		t.Fatalf("got %v, want an AppLoadError with the worker's message", err)
	}
}

// A signal in the first moments calls Shutdown before Start has made the pool: Start must then
// start no worker (it did, and the gateway waited out the app's whole startup before exiting).
func TestShutdownBeforeTheWorkersStartStartsNone(t *testing.T) {
	t.Setenv(fakeWorkerEnv, "ok")
	cfg := DefaultConfig()
	cfg.App, cfg.Python, cfg.Port, cfg.AccessLog = "fake:app", os.Args[0], 0, false
	srv, err := NewServer(cfg, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	where, err := srv.Start()
	if err == nil || !strings.Contains(err.Error(), "stopped before the workers started") {
		srv.Shutdown()
		t.Fatalf("Start after Shutdown: %q, %v; want the error that says it was stopped", where, err)
	}
	if pids := srv.WorkerPIDs(); len(pids) != 0 {
		t.Fatalf("workers started after Shutdown: %v", pids)
	}
}

func TestLimitConcurrencyAnswers503(t *testing.T) {
	t.Setenv(fakeWorkerEnv, "hang")
	cfg := DefaultConfig()
	cfg.App, cfg.Python, cfg.Port, cfg.AccessLog = "fake:app", os.Args[0], 0, false
	cfg.LimitConcurrency = 1
	cfg.HealthTimeout = 0                        // the hanging request must stay in flight
	cfg.GracefulTimeout = 500 * time.Millisecond // the hung worker is killed at teardown
	srv, err := NewServer(cfg, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	where, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Shutdown()
	addr := strings.TrimPrefix(where, "http://")
	hung, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	io.WriteString(hung, "GET /misbehave HTTP/1.1\r\nHost: x\r\n\r\n")
	deadline := time.Now().Add(5 * time.Second)
	for srv.inflight.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first request never went in flight")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	resp, _ := get(t, addr, "/second")
	if resp.StatusCode != 503 {
		t.Fatalf("second request: %d, want 503", resp.StatusCode)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("503 took %s: it must come at once, not after a wait", took)
	}
}

// startGatewayCfg is startGateway with a configuration hook.
func startGatewayCfg(t *testing.T, mode string, tweak func(*Config)) (*Server, string) {
	t.Helper()
	t.Setenv(fakeWorkerEnv, mode)
	cfg := DefaultConfig()
	cfg.App, cfg.Python, cfg.Port, cfg.AccessLog = "fake:app", os.Args[0], 0, false
	cfg.GracefulTimeout = 2 * time.Second
	tweak(&cfg)
	srv, err := NewServer(cfg, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	where, err := srv.Start()
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	go srv.Serve()
	t.Cleanup(srv.Shutdown)
	return srv, strings.TrimPrefix(where, "http://")
}

// pidOf extracts the worker pid the fake worker puts in its answer.
func pidOf(body string) string {
	f := strings.Fields(body)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func TestMaxRequestsRecyclesWithoutFailures(t *testing.T) {
	srv, addr := startGatewayCfg(t, "ok", func(c *Config) { c.MaxRequests = 5 })
	pids := map[string]int{}
	// 40 requests, and then more (10 ms apart, for up to 10 s) until the replacement serves: 40
	// requests can take less time than starting a worker.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 40 || (len(pids) < 2 && time.Now().Before(deadline)); i++ {
		resp, body := get(t, addr, fmt.Sprintf("/r%d", i))
		if resp.StatusCode != 200 {
			t.Fatalf("request %d during recycling: %d %q", i, resp.StatusCode, body)
		}
		pids[pidOf(body)]++
		if i >= 40 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The old worker keeps serving until its replacement is ready (no gap), so it may pass the limit
	// by the requests that arrive meanwhile; it must never be retired before reaching it.
	current := strconv.Itoa(srv.WorkerPIDs()[0])
	if len(pids) < 2 {
		t.Fatalf("requests over 10 s with --limit-max-requests 5 were all served by one worker: %v", pids)
	}
	for pid, n := range pids {
		if pid != current && n < 5 {
			t.Fatalf("worker %s was retired after %d requests, before the limit of 5: %v", pid, n, pids)
		}
	}
	if srv.pool.Restarts() == 0 {
		t.Fatal("no restart counted")
	}
}

func TestReloadUnderLoadLosesNothing(t *testing.T) {
	srv, addr := startGatewayCfg(t, "ok", func(c *Config) { c.Workers = 2 })
	before := map[int]bool{}
	for _, pid := range srv.WorkerPIDs() {
		before[pid] = true
	}
	stop := make(chan struct{})
	errs := make(chan error, 4)
	var done = make(chan int, 4)
	for g := 0; g < 4; g++ {
		go func() {
			client := &http.Client{Timeout: 5 * time.Second}
			n := 0
			for {
				select {
				case <-stop:
					done <- n
					return
				default:
				}
				resp, err := client.Get("http://" + addr + "/load")
				if err != nil {
					errs <- err
					done <- n
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
					done <- n
					return
				}
				n++
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	srv.Reload()
	time.Sleep(100 * time.Millisecond)
	close(stop)
	total := 0
	for g := 0; g < 4; g++ {
		total += <-done
	}
	select {
	case err := <-errs:
		t.Fatalf("a request failed during the reload: %v", err)
	default:
	}
	for _, pid := range srv.WorkerPIDs() {
		if before[pid] {
			t.Fatalf("worker %d survived the reload: before %v, after %v", pid, before, srv.WorkerPIDs())
		}
	}
	if total < 20 {
		t.Fatalf("only %d requests during the test", total)
	}
}

func TestAddAndRemoveWorkers(t *testing.T) {
	srv, _ := startGatewayCfg(t, "ok", func(c *Config) {})
	srv.AddWorker()
	deadline := time.Now().Add(10 * time.Second)
	for len(srv.WorkerPIDs()) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("workers after AddWorker: %v", srv.WorkerPIDs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.RemoveWorker()
	for len(srv.WorkerPIDs()) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("workers after RemoveWorker: %v", srv.WorkerPIDs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.RemoveWorker() // never below one
	time.Sleep(50 * time.Millisecond)
	if n := len(srv.WorkerPIDs()); n != 1 {
		t.Fatalf("%d workers after removing the last one", n)
	}
}

func rawGet(t *testing.T, addr, path string, headers ...string) string {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	io.WriteString(nc, req+"\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestProxyHeadersFromTrustedPeer(t *testing.T) {
	_, addr := startGatewayCfg(t, "ok", func(c *Config) {})
	cases := []struct {
		headers []string
		want    string
	}{
		{nil, "client=127.0.0.1:"},
		{[]string{"X-Forwarded-For: 203.0.113.7"}, "client=203.0.113.7:0 scheme=http"},
		// The rightmost address that is not a trusted proxy is the client.
		{[]string{"X-Forwarded-For: 198.51.100.1, 203.0.113.7, 127.0.0.1"}, "client=203.0.113.7:0"},
		{[]string{"X-Forwarded-Proto: https"}, "scheme=https"},
		{[]string{"X-Forwarded-Proto: gopher"}, "scheme=http"},
		{[]string{`Forwarded: for="[2001:db8::1]:4711";proto=https`}, "client=2001:db8::1:4711 scheme=https"},
	}
	for _, tc := range cases {
		if body := rawGet(t, addr, "/p", tc.headers...); !strings.Contains(body, tc.want) {
			t.Errorf("%q: got %q, want it to contain %q", tc.headers, body, tc.want)
		}
	}
}

func TestProxyHeadersIgnoredFromUntrustedPeer(t *testing.T) {
	_, addr := startGatewayCfg(t, "ok", func(c *Config) { c.ForwardedAllowIPs = "10.0.0.0/8" })
	body := rawGet(t, addr, "/p", "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https")
	if !strings.Contains(body, "client=127.0.0.1:") || !strings.Contains(body, "scheme=http") {
		t.Fatalf("an untrusted peer's proxy headers were honoured: %q", body)
	}
}

func TestTrustedProxiesParsing(t *testing.T) {
	tp, err := ParseTrustedProxies("127.0.0.1, 10.0.0.0/8, ::1, /tmp/proxy.sock")
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{"127.0.0.1": true, "10.1.2.3": true, "11.0.0.1": false, "::1": true, "/tmp/proxy.sock": true, "::ffff:10.0.0.1": true} {
		if got := tp.Trusts(host); got != want {
			t.Errorf("Trusts(%q) = %v, want %v", host, got, want)
		}
	}
	if _, err := ParseTrustedProxies("10.0.0.0/33"); err == nil {
		t.Error("a bad network was accepted")
	}
	if all, _ := ParseTrustedProxies("*"); !all.Trusts("8.8.8.8") {
		t.Error(`"*" does not trust everyone`)
	}
}

func TestStaleSocketDirsAreRemoved(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip("cannot run true:", err)
	}
	stale := filepath.Join(tmp, fmt.Sprintf("asgi-gateway-%d-123", dead.Process.Pid))
	live := filepath.Join(tmp, fmt.Sprintf("asgi-gateway-%d-456", os.Getppid()))
	other := filepath.Join(tmp, "asgi-gateway-notapid-789")
	for _, d := range []string{stale, live, other} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	removeStaleSocketDirs(zerolog.New(io.Discard))
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the directory of a dead gateway (pid %d) was kept", dead.Process.Pid)
	}
	for _, d := range []string{live, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
}

func TestPickWaitIsBounded(t *testing.T) {
	p := &Pool{changed: make(chan struct{}), stopping: make(chan struct{})}
	empty := []*workerConn{}
	p.ready.Store(&empty)
	start := time.Now()
	if w := p.pickWait(80 * time.Millisecond); w != nil {
		t.Fatal("a worker was picked from an empty pool")
	}
	if took := time.Since(start); took < 80*time.Millisecond || took > time.Second {
		t.Fatalf("the wait took %s, want about 80ms", took)
	}
	w := &workerConn{id: 1}
	time.AfterFunc(30*time.Millisecond, func() { p.publish(w, nil) })
	start = time.Now()
	if got := p.pickWait(5 * time.Second); got != w {
		t.Fatalf("got %v, want the worker published during the wait", got)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("the worker published after 30ms was picked after %s", took)
	}
}

// A request whose scope cannot be encoded (a str field that is no UTF-8; the command line refuses
// such a --root-path, the test sets it past that) fails alone: 502, and the worker, with every
// other stream on it, stays.
func TestRequestThatCannotBeEncodedFailsAlone(t *testing.T) {
	srv, addr := startGatewayCfg(t, "ok", func(c *Config) { c.RootPath = "/\xff" })
	pids := srv.WorkerPIDs()
	for i := 0; i < 2; i++ {
		if resp, _ := rawDo(t, addr, "GET", "/x"); resp.StatusCode != 502 {
			t.Fatalf("request %d: %d, want 502", i, resp.StatusCode)
		}
	}
	if got := srv.WorkerPIDs(); len(got) != 1 || got[0] != pids[0] {
		t.Fatalf("workers %v, then %v: the worker was replaced", pids, got)
	}
	waitInflightZero(t, srv)
}

// Start returns once every worker of --workers takes traffic: the "listening on" line lists them all
// (a worker reported started but not yet published made it list fewer, now and then, in CI).
func TestStartListsEveryWorker(t *testing.T) {
	for round := 0; round < 8; round++ {
		t.Setenv(fakeWorkerEnv, "echo")
		cfg := DefaultConfig()
		cfg.App = "fake:app"
		cfg.Python = os.Args[0]
		cfg.Port = 0
		cfg.Workers = 4
		cfg.AccessLog = false
		cfg.StartupTimeout = 10 * time.Second
		srv, err := NewServer(cfg, zerolog.New(io.Discard))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Start(); err != nil {
			t.Fatalf("start: %v", err)
		}
		pids := srv.WorkerPIDs()
		srv.Shutdown()
		if len(pids) != 4 {
			t.Fatalf("round %d: Start returned with workers %v, want 4", round, pids)
		}
	}
}

package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"

	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// h2Client is an HTTP/2-only client trusting the test CA; dials counts its TLS connections.
func h2Client(pki *testPKI, dials *atomic.Int32) *http.Client {
	tr := &http2.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pki.pool},
		DialTLSContext: func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
			if dials != nil {
				dials.Add(1)
			}
			d := &tls.Dialer{Config: cfg}
			return d.DialContext(ctx, network, addr)
		},
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: tr}
}

func h2Get(t *testing.T, client *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s body: %v", url, err)
	}
	return resp, string(b)
}

func TestH2Get(t *testing.T) {
	pki := newTestPKI(t)
	_, addr := startTLSGateway(t, "ok", pki, nil)
	// The standard client, which negotiates h2 by ALPN.
	std := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pki.pool}, ForceAttemptHTTP2: true,
	}}
	resp, body := h2Get(t, std, "https://"+addr+"/caf%C3%A9?q=1")
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || !strings.Contains(body, "path=/café body=0") {
		t.Fatalf("got %s %d %q", resp.Proto, resp.StatusCode, body)
	}
	if got := resp.Header.Values("Set-Cookie"); len(got) != 2 || got[0] != "a=1" || got[1] != "b=2" {
		t.Fatalf("set-cookie headers %q", got)
	}
	if resp.Header.Get("Server") != "asgi-gateway" || resp.Header.Get("Date") == "" || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("headers: %v", resp.Header)
	}
	// HEAD: headers only.
	req, _ := http.NewRequest("HEAD", "https://"+addr+"/x", nil)
	resp, err := std.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(b) != 0 {
		t.Fatalf("HEAD: %d %q", resp.StatusCode, b)
	}
}

func TestH2ConcurrentStreamsOneConnection(t *testing.T) {
	pki := newTestPKI(t)
	srv, addr := startTLSGateway(t, "ok", pki, func(c *Config) { c.Workers = 2 })
	var dials atomic.Int32
	client := h2Client(pki, &dials)
	h2Get(t, client, "https://"+addr+"/warm") // one connection, then reused by every stream
	// As many streams as the gateway allows at once (the client dials another connection beyond).
	const n = h2MaxStreams
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			path := fmt.Sprintf("/s%d", i)
			resp, err := client.Get("https://" + addr + path)
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 || !strings.Contains(string(b), "path="+path+" ") {
				errs <- fmt.Errorf("%s: %s %d %q", path, resp.Proto, resp.StatusCode, b)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d := dials.Load(); d != 1 {
		t.Errorf("%d TLS connections, want 1", d)
	}
	waitInflightZero(t, srv)
}

func waitInflightZero(t *testing.T, srv *Server) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for srv.inflight.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("inflight = %d after every stream ended", srv.inflight.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestH2PostBody(t *testing.T) {
	pki := newTestPKI(t)
	srv, addr := startTLSGateway(t, "ok", pki, nil)
	client := h2Client(pki, nil)
	// Larger than the protocol window (256 KiB): the body moves on the worker's CREDIT.
	for _, size := range []int{1, 100_000, 1_000_000} {
		resp, err := client.Post("https://"+addr+"/up", "application/octet-stream", bytes.NewReader(make([]byte, size)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("path=/up body=%d", size); resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Fatalf("size %d: %d %q, want %q", size, resp.StatusCode, b, want)
		}
	}
	// Unknown length (no content-length: the body is streamed in DATA frames).
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < 10; i++ {
			pw.Write(make([]byte, 30_000))
			time.Sleep(time.Millisecond)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "https://"+addr+"/stream", pr)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "body=300000") {
		t.Fatalf("streamed upload: %q", b)
	}
	waitInflightZero(t, srv)
}

func TestH2LimitRequestBody(t *testing.T) {
	pki := newTestPKI(t)
	_, addr := startTLSGateway(t, "ok", pki, func(c *Config) { c.MaxBodySize = 1000 })
	client := h2Client(pki, nil)
	resp, err := client.Post("https://"+addr+"/up", "x/y", bytes.NewReader(make([]byte, 5000)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("declared length over the limit: %d", resp.StatusCode)
	}
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < 5; i++ {
			if _, err := pw.Write(make([]byte, 600)); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "https://"+addr+"/up", pr)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("streamed body over the limit: %d", resp.StatusCode)
	}
}

func TestH2AppErrorAndWorkerLoss(t *testing.T) {
	pki := newTestPKI(t)
	srv, addr := startTLSGateway(t, "exit", pki, nil)
	client := h2Client(pki, nil)
	if resp, body := h2Get(t, client, "https://"+addr+"/raise"); resp.StatusCode != 500 || body != "Internal Server Error" {
		t.Fatalf("app error before start: %d %q", resp.StatusCode, body)
	}
	if resp, _ := h2Get(t, client, "https://"+addr+"/misbehave"); resp.StatusCode != 502 {
		t.Fatalf("worker exit: %d, want 502", resp.StatusCode)
	}
	waitInflightZero(t, srv)
	// The pool replaces the worker; the same connection keeps working.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get("https://" + addr + "/after")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 200 after the worker was replaced: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestH2ShutdownClosesIdleConnections(t *testing.T) {
	pki := newTestPKI(t)
	srv, addr := startTLSGateway(t, "ok", pki, nil)
	client := h2Client(pki, nil)
	h2Get(t, client, "https://"+addr+"/") // leaves an idle HTTP/2 connection open
	srv.tls.mu.Lock()
	tracked := len(srv.tls.conns)
	srv.tls.mu.Unlock()
	if tracked != 1 {
		t.Fatalf("%d HTTP/2 connections open before the shutdown, want 1", tracked)
	}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Shutdown()
	}()
	// Timed up to the connection's end, not the end of Shutdown: stopping the worker follows, and a
	// fake worker built with -race sleeps a second at exit (GORACE atexit_sleep_ms).
	for open := true; open; {
		srv.tls.mu.Lock()
		open = len(srv.tls.conns) > 0
		srv.tls.mu.Unlock()
		if took := time.Since(start); took > 1900*time.Millisecond { // GracefulTimeout is 2s in startGatewayCfg
			t.Fatalf("the idle HTTP/2 connection was still open %s into the shutdown: GOAWAY did not close it", took)
		}
		time.Sleep(10 * time.Millisecond)
	}
	<-done
}

func TestH2ScopeFromRequest(t *testing.T) {
	s := &Server{cfg: DefaultConfig(), scheme: "https"}
	s.cfg.RootPath = "/api"
	r := &http.Request{
		Method:     "GET",
		RequestURI: "/caf%C3%A9/a%2Fb?x=1&y=%20",
		Host:       "example.com:8443",
		Header:     http.Header{"User-Agent": {"t"}, "Accept": {"a", "b"}, "X-Empty": {""}},
	}
	info := &h2ConnInfo{client: &protocol.Addr{Host: "127.0.0.1", Port: 5000, HasPort: true},
		server: &protocol.Addr{Host: "127.0.0.1", Port: 8443, HasPort: true}}
	var hr protocol.HTTPRequest
	if st := s.buildH2Scope(r, info, &hr); st != 0 {
		t.Fatalf("status %d", st)
	}
	if hr.HTTPVersion != "2" || hr.Scheme != "https" || string(hr.Method) != "GET" || hr.RootPath != "/api" {
		t.Fatalf("scope %+v", hr)
	}
	if string(hr.Path) != "/api/café/a/b" || string(hr.RawPath) != "/api/caf%C3%A9/a%2Fb" || string(hr.QueryString) != "x=1&y=%20" {
		t.Fatalf("path %q raw %q query %q", hr.Path, hr.RawPath, hr.QueryString)
	}
	var got []string
	for _, h := range hr.Headers {
		got = append(got, string(h.Name)+"="+string(h.Value))
	}
	if want := "host=example.com:8443 accept=a accept=b user-agent=t x-empty="; strings.Join(got, " ") != want {
		t.Fatalf("headers %q, want %q", strings.Join(got, " "), want)
	}
	if hr.Client != info.client || hr.Server != info.server {
		t.Fatal("addresses")
	}
	// x/net moves the Trailer field into r.Trailer: the scope has it back.
	r.Trailer = http.Header{"X-Sum": nil, "Checksum": nil}
	if st := s.buildH2Scope(r, info, &hr); st != 0 {
		t.Fatalf("status %d", st)
	}
	if last := hr.Headers[len(hr.Headers)-1]; string(last.Name) != "trailer" || string(last.Value) != "checksum, x-sum" {
		t.Fatalf("trailer field %q: %q", last.Name, last.Value)
	}
	r.Trailer = nil
	r.RequestURI = "/bad%zz"
	if st := s.buildH2Scope(r, info, &hr); st != 400 {
		t.Fatalf("undecodable path: %d", st)
	}
	r.RequestURI = "/"
	for _, host := range []string{"a:xx", "a:1:2", "[::1", "a:99999", "a b"} {
		r.Host = host
		if st := s.buildH2Scope(r, info, &hr); st != 400 {
			t.Fatalf(":authority %q: %d, want 400", host, st)
		}
	}
	for _, host := range []string{"example.com:8443", "[::1]:80", "", "a:"} {
		r.Host = host
		if st := s.buildH2Scope(r, info, &hr); st != 0 {
			t.Fatalf(":authority %q: %d, want 0", host, st)
		}
	}
	r.Method, r.RequestURI = "CONNECT", "example.com:443"
	if st := s.buildH2Scope(r, info, &hr); st != 501 {
		t.Fatalf("CONNECT: %d, want 501 (as over HTTP/1.1)", st)
	}
}

// newPipeWorker is a workerConn whose peer end the test reads (no worker process): frames the
// stream sends (CREDIT, DISCONNECT) arrive on the returned reader.
func newPipeWorker(t *testing.T) (*workerConn, *protocol.Reader, net.Conn) {
	t.Helper()
	path := t.TempDir() + "/w.sock"
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	sock, err := newRawSock(uc)
	if err != nil {
		t.Fatal(err)
	}
	w := newWorkerConn(1, 0, uc, sock, nil, protocol.DefaultWindow, protocol.DefaultMaxFrame)
	go w.writeLoop()
	t.Cleanup(func() {
		w.fail(errors.New("test over"))
		peer.Close()
	})
	return w, protocol.NewReader(peer, protocol.DefaultMaxFrame), peer
}

func nextFrame(t *testing.T, r *protocol.Reader, peer net.Conn) *protocol.Frame {
	t.Helper()
	peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	payload, err := r.Next()
	if err != nil {
		t.Fatalf("reading the gateway's frames: %v", err)
	}
	f := new(protocol.Frame)
	if err := f.Decode(payload); err != nil {
		t.Fatal(err)
	}
	return f
}

// runStream runs an h2stream's response loop against a recorder, as serveH2Stream would.
func runStream(t *testing.T, method string) (*h2stream, *httptest.ResponseRecorder, <-chan any, *protocol.Reader, net.Conn) {
	w, r, peer := newPipeWorker(t)
	s := &Server{cfg: DefaultConfig(), log: zerolog.Nop(), scheme: "https"}
	st := &h2stream{s: s, w: w, wake: make(chan struct{}, 1)}
	st.cond.L = &st.mu
	st.respWindow, st.reqCredit, st.windowBatch = int64(w.window), int64(w.window), int64(w.window/2)
	sid, err := w.open(st)
	if err != nil {
		t.Fatal(err)
	}
	st.sid = sid
	s.inflight.Add(1)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(method, "https://x/", nil)
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		st.run(rec, req, &h2Response{remaining: -1})
	}()
	return st, rec, done, r, peer
}

func waitDone(t *testing.T, done <-chan any) any {
	t.Helper()
	select {
	case v := <-done:
		return v
	case <-time.After(2 * time.Second):
		t.Fatal("the stream goroutine did not finish")
		return nil
	}
}

func TestH2StreamResponseFlowControl(t *testing.T) {
	st, rec, done, r, peer := runStream(t, "GET")
	hs := []protocol.Header{{Name: []byte("content-type"), Value: []byte("text/plain")}, {Name: []byte("connection"), Value: []byte("close")},
		{Name: []byte("x-dup"), Value: []byte("1")}, {Name: []byte("x-dup"), Value: []byte("2")}}
	piece := bytes.Repeat([]byte("a"), 200_000)
	if err := st.responseStart(&protocol.Frame{Status: 201, Headers: hs, Body: piece, MoreBody: true}); err != nil {
		t.Fatal(err)
	}
	// 200000 bytes written (>= window/2): they come back as CREDIT, so the worker can go on.
	if f := nextFrame(t, r, peer); f.Type != protocol.TypeCreditG2W || f.Increment != 200_000 {
		t.Fatalf("got %s %d, want CREDIT 200000", f.Type, f.Increment)
	}
	if err := st.responseBody(&protocol.Frame{Body: piece, MoreBody: true}); err != nil {
		t.Fatal(err)
	}
	if f := nextFrame(t, r, peer); f.Type != protocol.TypeCreditG2W || f.Increment != 200_000 {
		t.Fatalf("got %s %d, want CREDIT 200000", f.Type, f.Increment)
	}
	if err := st.responseBody(&protocol.Frame{Body: []byte("end"), MoreBody: false}); err != nil {
		t.Fatal(err)
	}
	if v := waitDone(t, done); v != nil {
		t.Fatalf("panicked: %v", v)
	}
	st.end(protocol.OutcomeOK, nil)
	if rec.Code != 201 || rec.Body.Len() != 400_003 {
		t.Fatalf("got %d with %d bytes", rec.Code, rec.Body.Len())
	}
	if got := rec.Header().Values("X-Dup"); len(got) != 2 || got[0] != "1" || got[1] != "2" {
		t.Fatalf("x-dup %q", got)
	}
	if rec.Header().Get("Connection") != "" || rec.Header().Get("Server") != "asgi-gateway" {
		t.Fatalf("headers %v", rec.Header())
	}
	if st.s.inflight.Load() != 0 {
		t.Fatal("inflight not back to 0")
	}
	// Beyond the window: a protocol error for the worker connection.
	if err := st.responseBody(&protocol.Frame{Body: make([]byte, protocol.DefaultWindow+1), MoreBody: true}); err == nil {
		t.Fatal("a body beyond the window was accepted")
	}
}

func TestH2StreamEndBeforeStartIs500(t *testing.T) {
	st, rec, done, _, _ := runStream(t, "GET")
	st.end(protocol.OutcomeAppError, []byte("RuntimeError: boom"))
	waitDone(t, done)
	if rec.Code != 500 || rec.Body.String() != "Internal Server Error" {
		t.Fatalf("got %d %q", rec.Code, rec.Body.String())
	}
}

func TestH2StreamIncompleteResponseIsReset(t *testing.T) {
	st, _, done, _, _ := runStream(t, "GET")
	st.responseStart(&protocol.Frame{Status: 200, Body: []byte("partial"), MoreBody: true})
	st.end(protocol.OutcomeAppError, []byte("RuntimeError: after start"))
	if v := waitDone(t, done); v != http.ErrAbortHandler {
		t.Fatalf("recovered %v, want http.ErrAbortHandler (stream reset)", v)
	}
}

func TestH2StreamShortContentLengthIsReset(t *testing.T) {
	st, _, done, r, peer := runStream(t, "GET")
	st.responseStart(&protocol.Frame{Status: 200, Headers: []protocol.Header{{Name: []byte("content-length"), Value: []byte("10")}},
		Body: []byte("short"), MoreBody: false})
	if v := waitDone(t, done); v != http.ErrAbortHandler {
		t.Fatalf("recovered %v, want http.ErrAbortHandler", v)
	}
	// The response was complete on the worker's side: no DISCONNECT follows.
	st.end(protocol.OutcomeOK, nil)
	peer.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := r.Next(); err == nil {
		t.Fatal("a frame was sent for a complete response")
	}
}

func TestH2StreamWorkerLostIs502(t *testing.T) {
	st, rec, done, _, _ := runStream(t, "GET")
	st.w.fail(errors.New("gone"))
	waitDone(t, done)
	if rec.Code != 502 {
		t.Fatalf("got %d", rec.Code)
	}
}

func TestH2StreamInvalidHeadIs500AndDisconnects(t *testing.T) {
	st, rec, done, r, peer := runStream(t, "GET")
	st.responseStart(&protocol.Frame{Status: 200, Headers: []protocol.Header{{Name: []byte("bad name"), Value: []byte("x")}}, MoreBody: true})
	waitDone(t, done)
	if rec.Code != 500 {
		t.Fatalf("got %d", rec.Code)
	}
	if f := nextFrame(t, r, peer); f.Type != protocol.TypeDisconnect {
		t.Fatalf("got %s, want DISCONNECT", f.Type)
	}
	// What the app still sends (before it learns of the DISCONNECT) is dropped, and nothing follows
	// the DISCONNECT for the sid (SPEC §3): no CREDIT for the dropped bytes.
	st.responseBody(&protocol.Frame{Body: []byte("more"), MoreBody: true})
	peer.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if payload, err := r.Next(); err == nil {
		t.Fatalf("a frame followed the DISCONNECT: % x", payload)
	}
}

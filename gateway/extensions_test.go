package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPathsendSendsTheFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "big.txt")
	content := strings.Repeat("0123456789", 100_000) // 1 MB, never through the worker
	os.WriteFile(file, []byte(content), 0o644)
	_, addr := startGatewayCfg(t, "ok", func(c *Config) {})
	for i := 0; i < 2; i++ { // twice on one connection: the response completes properly
		resp, body := rawDo(t, addr, "GET", "/pathsend?"+file)
		if resp.StatusCode != 200 || body != content {
			t.Fatalf("pathsend: %d, %d bytes (want %d)", resp.StatusCode, len(body), len(content))
		}
		if te := resp.TransferEncoding; len(te) != 1 || te[0] != "chunked" {
			t.Fatalf("without content-length the file goes chunked: %v", resp.TransferEncoding)
		}
	}
	if resp, _ := rawDo(t, addr, "GET", "/pathsend?/no/such/file"); resp != nil && resp.StatusCode == 200 {
		// The head went out before the file failed to open: the connection is cut, which
		// ReadResponse reports as an error on the body; a 200 with a complete body would be wrong.
		t.Log("head sent, body cut, as expected")
	}
}

func TestTrailersOnlyWhenTheClientAsks(t *testing.T) {
	_, addr := startGatewayCfg(t, "ok", func(c *Config) {})
	resp, body := rawDo(t, addr, "GET", "/trailers", "TE: trailers")
	if resp.StatusCode != 200 || body != "abc" || resp.Trailer.Get("X-Checksum") != "42" {
		t.Fatalf("with TE: trailers: %d %q trailer=%v", resp.StatusCode, body, resp.Trailer)
	}
	resp, body = rawDo(t, addr, "GET", "/trailers")
	if resp.StatusCode != 200 || body != "abc" || len(resp.Trailer) != 0 {
		t.Fatalf("without TE: trailers: %d %q trailer=%v", resp.StatusCode, body, resp.Trailer)
	}
}

// The worker refuses invalid fields (send() raises in the app); the gateway still guards its output:
// a trailer section with an invalid field is dropped and the chunked message ends, an invalid response header
// makes a 500. Nothing of either reaches the client.
func TestInvalidFieldsFromTheWorkerNeverReachTheClient(t *testing.T) {
	br := sendRaw(t, "GET /trailers-invalid HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n"+
		"GET /header-invalid HTTP/1.1\r\nHost: x\r\n\r\n")
	first, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(first.Body)
	if err != nil || string(body) != "abc" || len(first.Trailer) != 0 { // (the whole section is dropped)
		t.Fatalf("trailers: %q %v, trailer %v", body, err, first.Trailer)
	}
	second, err := http.ReadResponse(br, nil)
	if err != nil || second.StatusCode != 500 || second.Header.Get("X-Bad") != "" || second.Header.Get("X-Injected") != "" {
		t.Fatalf("invalid header: %v %v", second, err)
	}
}

// sendRaw starts a gateway with the fake worker, sends it the raw requests on a new connection (closed
// at the test's end; 5 s to answer) and returns the connection's reader.
func sendRaw(t *testing.T, requests string) *bufio.Reader {
	_, addr := startGatewayCfg(t, "ok", func(c *Config) {})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(nc, requests)
	return bufio.NewReader(nc)
}

func TestEarlyHintsComeBeforeTheResponse(t *testing.T) {
	br := sendRaw(t, "GET /hint HTTP/1.1\r\nHost: x\r\n\r\n")
	hint, err := http.ReadResponse(br, nil)
	if err != nil || hint.StatusCode != 103 || hint.Header.Get("Link") != "</style.css>; rel=preload; as=style" {
		t.Fatalf("first response: %v %v", hint, err)
	}
	final, err := http.ReadResponse(br, nil)
	if err != nil || final.StatusCode != 200 {
		t.Fatalf("final response: %v %v", final, err)
	}
}

func TestExtensionFlagsAdvertised(t *testing.T) {
	_, addr := startGatewayCfg(t, "ok", func(c *Config) {})
	if _, body := rawDo(t, addr, "GET", "/flags", "TE: trailers"); body != "flags=14" { // trailers|pathsend|early hints
		t.Fatalf("HTTP/1.1 flags with TE: trailers: %q", body)
	}
	if _, body := rawDo(t, addr, "GET", "/flags"); body != "flags=12" { // pathsend|early hints
		t.Fatalf("HTTP/1.1 flags without TE: trailers: %q", body)
	}
}

func TestRequestTimeoutAnswers504AndCancels(t *testing.T) {
	srv, addr := startGatewayCfg(t, "ok", func(c *Config) { c.RequestTimeout = 300 * time.Millisecond })
	start := time.Now()
	resp, _ := rawDo(t, addr, "GET", "/slow")
	if resp.StatusCode != 504 {
		t.Fatalf("got %d, want 504", resp.StatusCode)
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 3*time.Second {
		t.Fatalf("504 after %s", took)
	}
	// The worker got CANCEL and ended the stream; it serves on (no protocol error, same worker).
	deadline := time.Now().Add(3 * time.Second)
	for srv.inflight.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the cancelled stream never ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if resp, body := rawDo(t, addr, "GET", "/next"); resp.StatusCode != 200 || !strings.Contains(body, "path=/next") {
		t.Fatalf("after the timeout: %d %q", resp.StatusCode, body)
	}
}

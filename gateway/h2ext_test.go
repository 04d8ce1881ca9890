package gateway

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// The ASGI extensions and timeouts over HTTP/2 (h2c here; the HTTP/2 engine is the same over TLS).

func h2cClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, a)
		},
	}}
}

func h2cDo(t *testing.T, client *http.Client, req *http.Request) (*http.Response, string, error) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func TestH2Pathsend(t *testing.T) {
	file := filepath.Join(t.TempDir(), "big.txt")
	content := strings.Repeat("0123456789", 100_000) // 1 MB, never through the worker
	os.WriteFile(file, []byte(content), 0o644)
	_, addr := startGatewayCfg(t, "ok", func(c *Config) { c.HTTP2Cleartext = true })
	client := h2cClient()
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequest("GET", "http://"+addr+"/pathsend?"+file, nil)
		resp, body, err := h2cDo(t, client, req)
		if err != nil || resp.ProtoMajor != 2 || resp.StatusCode != 200 || body != content {
			t.Fatalf("pathsend: %v, %d bytes (want %d)", err, len(body), len(content))
		}
	}
	// A file that cannot be opened after the head: the stream is reset, never a complete 200.
	req, _ := http.NewRequest("GET", "http://"+addr+"/pathsend?/no/such/file", nil)
	if _, _, err := h2cDo(t, client, req); err == nil {
		t.Fatal("a missing file gave a complete response")
	}
	// The connection serves on.
	req, _ = http.NewRequest("GET", "http://"+addr+"/after", nil)
	if resp, body, err := h2cDo(t, client, req); err != nil || resp.StatusCode != 200 || !strings.Contains(body, "path=/after") {
		t.Fatalf("after: %v %q", err, body)
	}
}

func TestH2TrailersOnlyWhenTheClientAsks(t *testing.T) {
	_, addr := startGatewayCfg(t, "ok", func(c *Config) { c.HTTP2Cleartext = true })
	client := h2cClient()
	req, _ := http.NewRequest("GET", "http://"+addr+"/trailers", nil)
	req.Header.Set("TE", "trailers")
	resp, body, err := h2cDo(t, client, req)
	if err != nil || resp.StatusCode != 200 || body != "abc" || resp.Trailer.Get("X-Checksum") != "42" {
		t.Fatalf("with TE: trailers: %v %q trailer=%v", err, body, resp.Trailer)
	}
	// No content-length beside the trailers: curl, for one, stops reading at the length and never
	// sees them.
	if resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" {
		t.Fatalf("with TE: trailers: a content-length (%d) beside the trailers", resp.ContentLength)
	}
	req, _ = http.NewRequest("GET", "http://"+addr+"/trailers", nil)
	resp, body, err = h2cDo(t, client, req)
	if err != nil || resp.StatusCode != 200 || body != "abc" || len(resp.Trailer) != 0 {
		t.Fatalf("without TE: trailers: %v %q trailer=%v", err, body, resp.Trailer)
	}
}

func TestH2ExtensionFlags(t *testing.T) {
	_, addr := startGatewayCfg(t, "ok", func(c *Config) { c.HTTP2Cleartext = true })
	client := h2cClient()
	req, _ := http.NewRequest("GET", "http://"+addr+"/flags", nil)
	if _, body, err := h2cDo(t, client, req); err != nil || body != "flags=44" { // pathsend|early hints|small window
		t.Fatalf("HTTP/2 flags without TE: %q %v", body, err)
	}
	req, _ = http.NewRequest("GET", "http://"+addr+"/flags", nil)
	req.Header.Set("TE", "trailers")
	if _, body, err := h2cDo(t, client, req); err != nil || body != "flags=46" { // trailers|pathsend|early hints|small window
		t.Fatalf("HTTP/2 flags with TE: trailers: %q %v", body, err)
	}
}

func TestH2EarlyHints(t *testing.T) {
	_, addr := startGatewayCfg(t, "ok", func(c *Config) { c.HTTP2Cleartext = true })
	var hints []textproto.MIMEHeader
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		if code == 103 {
			hints = append(hints, h)
		}
		return nil
	}}
	req, _ := http.NewRequest("GET", "http://"+addr+"/hint", nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, body, err := h2cDo(t, h2cClient(), req)
	if err != nil || resp.StatusCode != 200 || !strings.Contains(body, "path=/hint") {
		t.Fatalf("final response: %v %q", err, body)
	}
	if len(hints) != 1 || hints[0].Get("Link") != "</style.css>; rel=preload; as=style" {
		t.Fatalf("103 responses: %v", hints)
	}
	if resp.Header.Get("Link") != "" {
		t.Fatalf("the hint's Link leaked into the final response: %v", resp.Header)
	}
}

func TestH2RequestTimeoutAnswers504AndCancels(t *testing.T) {
	srv, addr := startGatewayCfg(t, "ok", func(c *Config) {
		c.HTTP2Cleartext = true
		c.RequestTimeout = 300 * time.Millisecond
	})
	client := h2cClient()
	start := time.Now()
	req, _ := http.NewRequest("GET", "http://"+addr+"/slow", nil)
	resp, _, err := h2cDo(t, client, req)
	if err != nil || resp.StatusCode != 504 {
		t.Fatalf("got %v %v, want 504", resp, err)
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 3*time.Second {
		t.Fatalf("504 after %s", took)
	}
	waitInflightZero(t, srv) // the worker got CANCEL and ended the stream
	req, _ = http.NewRequest("GET", "http://"+addr+"/next", nil)
	if resp, body, err := h2cDo(t, client, req); err != nil || resp.StatusCode != 200 || !strings.Contains(body, "path=/next") {
		t.Fatalf("after the timeout: %v %q", err, body)
	}
}

// A client that stops sending its request body is cut after --timeout-request-body: the stream is
// reset and the app told (DISCONNECT), while the connection serves other streams.
func TestH2BodyReadTimeout(t *testing.T) {
	srv, addr := startGatewayCfg(t, "ok", func(c *Config) {
		c.HTTP2Cleartext = true
		c.BodyReadTimeout = 300 * time.Millisecond
	})
	h := dialRawH2(t, addr)
	blk := h.block(":method", "POST", ":scheme", "http", ":authority", "example.com", ":path", "/upload")
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteData(1, false, []byte("first part")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, reset, _ := h.outcome(1)
	if reset == 0 {
		t.Fatal("the stalled upload got a response instead of a reset")
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 5*time.Second {
		t.Fatalf("reset after %s", took)
	}
	waitInflightZero(t, srv)
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: h.get(3), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if status, reset, _ := h.outcome(3); status != "200" {
		t.Fatalf("next stream: %q %v", status, reset)
	}
}

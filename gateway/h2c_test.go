package gateway

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/net/http2"
)

// With --http2-cleartext, an HTTP/2 client with prior knowledge (as proxies speak h2c) is served on
// the plain listener, and HTTP/1.1 still works there.
func TestHTTP2Cleartext(t *testing.T) {
	_, addr := startGatewayCfg(t, "ok", func(c *Config) { c.HTTP2Cleartext = true })
	client := &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, a)
		},
	}}
	for i := 0; i < 3; i++ {
		resp, err := client.Get("http://" + addr + "/h2c")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 || !strings.Contains(string(body), "path=/h2c") {
			t.Fatalf("h2c: HTTP/%d %d %q", resp.ProtoMajor, resp.StatusCode, body)
		}
	}
	if resp, body := get(t, addr, "/h1"); resp.StatusCode != 200 || !strings.Contains(body, "path=/h1") {
		t.Fatalf("HTTP/1.1 beside h2c: %d %q", resp.StatusCode, body)
	}
}

// Without the option, the HTTP/2 preface gets 505 (an HTTP version the listener does not serve).
func TestHTTP2PrefaceWithoutCleartext(t *testing.T) {
	_, addr := startGatewayCfg(t, "ok", func(c *Config) {})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, h2Preface)
	buf := make([]byte, 64)
	n, _ := io.ReadAtLeast(nc, buf, 12)
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 505") {
		t.Fatalf("got %q, want a 505", buf[:n])
	}
}

package gateway

import (
	"testing"

	"github.com/asgi-gateway/asgi-gateway/gateway/http1"
	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// scopeHeaders parses head and returns the headers of its scope, as "name: value" lines.
func scopeHeaders(t *testing.T, c *h1conn, head string) []string {
	t.Helper()
	var req http1.Request
	if _, err := http1.ParseHead([]byte(head), &req, nil); err != nil {
		t.Fatalf("ParseHead(%q): %v", head, err)
	}
	var hr protocol.HTTPRequest
	if !c.srv.buildScope(c, &req, &hr) {
		t.Fatalf("buildScope(%q) = false", head)
	}
	var got []string
	for _, h := range hr.Headers {
		got = append(got, string(h.Name)+": "+string(h.Value))
	}
	return got
}

func newScopeConn() *h1conn {
	srv := &Server{cfg: DefaultConfig()}
	return &h1conn{srv: srv, scheme: "http", client: &protocol.Addr{Host: "127.0.0.1", Port: 1, HasPort: true}}
}

// RFC 9112 §3.2.2: with an absolute-form target the server uses the target's authority, which the
// app sees as the host header: in place of a received Host, or first when there is none.
func TestScopeHostOfAbsoluteForm(t *testing.T) {
	for _, tt := range []struct {
		head string
		want []string
	}{
		{"GET http://other.example/p HTTP/1.0\r\n\r\n", []string{"host: other.example"}},
		{"GET http://[::1]:8080/p HTTP/1.0\r\nX-A: 1\r\nX-B: 2\r\n\r\n", []string{"host: [::1]:8080", "x-a: 1", "x-b: 2"}},
		{"GET http://other.example/p HTTP/1.0\r\nX-A: 1\r\nHost: test.local\r\n\r\n", []string{"x-a: 1", "host: other.example"}},
		{"GET http://other.example/p HTTP/1.1\r\nX-A: 1\r\nHost: test.local\r\n\r\n", []string{"x-a: 1", "host: other.example"}},
		// Not absolute-form: the headers as received, with no host header made up.
		{"GET /p HTTP/1.0\r\nX-A: 1\r\n\r\n", []string{"x-a: 1"}},
		{"OPTIONS * HTTP/1.0\r\n\r\n", nil},
		{"GET /p HTTP/1.1\r\nX-A: 1\r\nHost: test.local\r\n\r\n", []string{"x-a: 1", "host: test.local"}},
	} {
		got := scopeHeaders(t, newScopeConn(), tt.head)
		if len(got) != len(tt.want) {
			t.Errorf("%q: headers %q; want %q", tt.head, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%q: headers %q; want %q", tt.head, got, tt.want)
				break
			}
		}
	}
}

func TestScopeHostOfAbsoluteFormReusesBuffers(t *testing.T) {
	c := newScopeConn()
	buf := []byte("GET http://other.example/p HTTP/1.0\r\nX-A: 1\r\n\r\n")
	var req http1.Request
	var hr protocol.HTTPRequest
	if _, err := http1.ParseHead(buf, &req, nil); err != nil {
		t.Fatal(err)
	}
	c.srv.buildScope(c, &req, &hr) // grows the connection's buffers once
	if n := testing.AllocsPerRun(100, func() { c.srv.buildScope(c, &req, &hr) }); n != 0 {
		t.Errorf("buildScope allocates %v times per request; want 0", n)
	}
}

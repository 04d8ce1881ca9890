package gateway

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/asgi-gateway/asgi-gateway/gateway/http1"
	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// FuzzScope checks the scope builder end to end: any request head the parser accepts gives a scope
// that encodes as an HTTP_REQUEST frame, decodes back to the same values, and holds valid UTF-8
// text with root_path in front of path and raw_path. (The corpus is in testdata/fuzz/FuzzScope.)
func FuzzScope(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /caf%C3%A9/%FF%2F?x=%20&x=2 HTTP/1.1\r\nHost: a\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n",
		"POST http://h.example:8080/p?q HTTP/1.1\r\nHost: other\r\nContent-Length: 0\r\n\r\n",
		"OPTIONS * HTTP/1.0\r\n\r\n",
		"GET http://a:8/p HTTP/1.0\r\n\r\n", // absolute-form without Host: the scope gets one
		"GET /%e2%82 HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		buf := append([]byte(nil), raw...)
		var req http1.Request
		lim := http1.DefaultLimits()
		if _, err := http1.ParseHead(buf, &req, &lim); err != nil {
			return
		}
		srv := &Server{cfg: DefaultConfig()}
		srv.cfg.RootPath = "/root"
		c := &h1conn{srv: srv, scheme: "http", client: &protocol.Addr{Host: "127.0.0.1", Port: 1, HasPort: true}}
		var hr protocol.HTTPRequest
		if !srv.buildScope(c, &req, &hr) {
			return
		}
		frame, err := protocol.AppendHTTPRequest(nil, 7, &hr)
		if err != nil {
			t.Fatalf("a parsed request does not encode: %v\n%q", err, raw)
		}
		var fr protocol.Frame
		if err := fr.Decode(frame[protocol.PrefixLen:]); err != nil {
			t.Fatalf("the encoded scope does not decode: %v\n%q", err, raw)
		}
		got := &fr.Request
		if !utf8.Valid(got.Path) || !strings.HasPrefix(string(got.Path), "/root") {
			t.Fatalf("path %q: not UTF-8 or without root_path", got.Path)
		}
		if !bytes.Equal(got.RawPath, append([]byte("/root"), req.Path...)) || !bytes.Equal(got.QueryString, req.Query) {
			t.Fatalf("raw_path %q / query %q do not match the request target %q", got.RawPath, got.QueryString, req.Target)
		}
		headers := len(req.Headers)
		if absolute := req.Target[0] != '/' && req.Target[0] != '*'; absolute && !hasHost(req.Headers) {
			// RFC 9112 §3.2.2: the target's authority, as the first header.
			if len(got.Headers) == 0 || string(got.Headers[0].Name) != "host" || !bytes.Equal(got.Headers[0].Value, req.Host) {
				t.Fatalf("absolute-form %q without Host: scope headers %q", req.Target, got.Headers)
			}
			headers++
		}
		if string(got.Method) != string(req.Method) || len(got.Headers) != headers {
			t.Fatalf("method or header count changed: %q %d vs %q %d", got.Method, len(got.Headers), req.Method, headers)
		}
		for _, h := range got.Headers {
			if !bytes.Equal(h.Name, bytes.ToLower(h.Name)) {
				t.Fatalf("header name %q is not lower-case", h.Name)
			}
		}
	})
}

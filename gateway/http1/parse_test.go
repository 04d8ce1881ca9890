package http1

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// parse parses s (copied, since ParseHead writes to its buffer) with lim.
func parse(s string, lim *Limits) (*Request, []byte, int, error) {
	buf := []byte(s)
	req := new(Request)
	n, err := ParseHead(buf, req, lim)
	return req, buf, n, err
}

func status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// Requests that must be refused, with the status to answer.
var badHeads = []struct {
	name   string
	in     string
	status int
}{
	// Request-line.
	{"bare CR in request-line", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"bare CR ending request-line", "GET / HTTP/1.1\rHost: a\r\n\r\n", 400},
	{"five leading empty lines", "\r\n\n\r\n\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"only empty lines", "\r\n\r\n\r\n\r\n\r\n", 400},
	{"bare CR before request-line", "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"double space after method", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"double space before version", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"leading space", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
	{"tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"tab before version", "GET /\tHTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"no version", "GET /\r\nHost: a\r\n\r\n", 400},
	{"only method", "GET\r\n\r\n", 400},
	{"empty method", " / HTTP/1.1\r\n\r\n", 400},
	{"method not token", "GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"method with NUL", "GE\x00T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"lower-case HTTP", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
	// RFC 9110 §9.1: methods are case-sensitive; one with lowercase letters is not implemented.
	{"lower-case method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", 501},
	{"mixed-case method", "Post / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 501},
	{"lower-case head", "head / HTTP/1.1\r\nHost: a\r\n\r\n", 501},
	{"lower-case connect", "connect a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501},
	{"lower-case options asterisk", "options * HTTP/1.1\r\nHost: a\r\n\r\n", 501},
	{"version HTTP/1", "GET / HTTP/1\r\nHost: a\r\n\r\n", 400},
	{"version HTTP/1.10", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400},
	{"version HTTP/11", "GET / HTTP/11\r\nHost: a\r\n\r\n", 400},
	{"version x", "GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400},
	{"version HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
	{"version HTTP/0.9", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505},
	{"version HTTP/3.0", "GET / HTTP/3.0\r\n\r\n", 505},

	// Request-target.
	{"NUL in target", "GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"control in target", "GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"DEL in target", "GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"non-ASCII target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"fragment in query", "GET /a?b#c HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"bad percent", "GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"short percent", "GET /a%4 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"percent at end", "GET /a% HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"percent before query", "GET /a%4?x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"relative target", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"asterisk with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"asterisk with query", "OPTIONS *?x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501},
	{"CONNECT origin-form", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 501},
	{"authority-form", "GET example.com:80 HTTP/1.1\r\nHost: example.com\r\n\r\n", 400},
	{"authority-form IP", "GET 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400},
	{"other scheme", "GET ftp://example.com/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"absolute empty host", "GET http:///a HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"absolute userinfo", "GET http://u@example.com/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"absolute bad host", "GET http://exa\"mple/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},

	// Field lines.
	{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
	{"tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400},
	{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nFoo\r\n\r\n", 400},
	{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400},
	{"name not token", "GET / HTTP/1.1\r\nHost: a\r\nF(o): x\r\n\r\n", 400},
	{"non-ASCII name", "GET / HTTP/1.1\r\nHost: a\r\nF\xc3\xb6o: x\r\n\r\n", 400},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nFoo: a\r\n b\r\n\r\n", 400},
	{"obs-fold tab", "GET / HTTP/1.1\r\nHost: a\r\nFoo: a\r\n\tb\r\n\r\n", 400},
	{"space-led first line", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400},
	{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nFoo: a\x00b\r\n\r\n", 400},
	{"control in value", "GET / HTTP/1.1\r\nHost: a\r\nFoo: a\x1bb\r\n\r\n", 400},
	{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nFoo: a\x7fb\r\n\r\n", 400},
	{"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nFoo: a\rb\r\n\r\n", 400},
	{"bare CR ending value", "GET / HTTP/1.1\r\nHost: a\r\nFoo: a\r\r\n\r\n", 400},
	{"bare CR in name", "GET / HTTP/1.1\r\nHost: a\r\nF\roo: a\r\n\r\n", 400},
	{"bare CR as blank line", "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", 400},
	{"bare CR then LF LF", "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n\r\n", 400},

	// Host.
	{"missing Host", "GET / HTTP/1.1\r\n\r\n", 400},
	{"missing Host absolute-form", "GET http://a/ HTTP/1.1\r\n\r\n", 400},
	{"duplicate Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400},
	{"duplicate Host case", "GET / HTTP/1.1\r\nHost: a\r\nhOST: b\r\n\r\n", 400},
	{"duplicate Host HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400},
	{"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
	{"Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
	// RFC 9112 3.2: 400 for a Host value outside uri-host [ ":" port ] (more in host_test.go).
	{"Host port not digits", "GET / HTTP/1.1\r\nHost: a:xx\r\n\r\n", 400},
	{"Host two colons", "GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", 400},
	{"Host unclosed IP-literal", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400},
	{"Host port above 65535", "GET / HTTP/1.1\r\nHost: a:99999999999\r\n\r\n", 400},
	{"Host HTTP/1.0", "GET / HTTP/1.0\r\nHost: a:xx\r\n\r\n", 400},
	{"absolute port not digits", "GET http://a:xx/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"absolute unclosed IP-literal", "GET http://[::1/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	{"absolute empty host with port", "GET http://:80/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},

	// Content-Length.
	{"CL duplicate equal", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400},
	{"CL duplicate different", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
	{"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400},
	{"CL list no space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,5\r\n\r\n", 400},
	{"CL plus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400},
	{"CL minus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", 400},
	{"CL inner space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n", 400},
	{"CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400},
	{"CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400},
	{"CL 19 digits", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000000000\r\n\r\n", 400},
	{"CL 19 zero digits", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0000000000000000000\r\n\r\n", 400},

	// Transfer-Encoding.
	{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	{"TE and CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400},
	{"TE chunked, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400},
	{"TE chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	{"TE chunked, gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
	{"TE chunked then gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
	{"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
	{"TE gzip then chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
	{"TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400}, // final coding not chunked: RFC 9112 §6.3
	{"TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 400},
	{"TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400},
	{"TE chunkedx", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedx\r\n\r\n", 400},
	{"TE chunked;q=1", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", 400},
	{"TE quoted", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 400},
	{"TE vertical tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \vchunked\r\n\r\n", 400},
	{"TE form feed", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\f\r\n\r\n", 400},
	{"TE empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400},
	{"TE only empty elements", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , ,\r\n\r\n", 400},
	{"Expect empty element and other", "POST / HTTP/1.1\r\nHost: a\r\nExpect: , foo\r\n\r\n", 417},
	{"TE space inside", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun ked\r\n\r\n", 400},
	{"TE name space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400},
	{"TE obs-fold", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", 400},
	{"TE HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	{"TE gzip HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n", 400},

	// Expect.
	{"Expect other", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417},
	{"Expect list", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, foo\r\n\r\n", 417},
	{"Expect other HTTP/1.0", "POST / HTTP/1.0\r\nExpect: foo\r\n\r\n", 417},
}

func TestParseHeadErrors(t *testing.T) {
	for _, tt := range badHeads {
		t.Run(tt.name, func(t *testing.T) {
			_, _, n, err := parse(tt.in, nil)
			if got := status(err); got != tt.status || n != 0 {
				t.Fatalf("ParseHead(%q) = %d, %v; want status %d", tt.in, n, err, tt.status)
			}
			// Bare LF line endings must not change the verdict.
			if !strings.Contains(tt.in, "\r") {
				return
			}
			lf := strings.ReplaceAll(tt.in, "\r\n", "\n")
			if strings.Contains(lf, "\r") {
				return // the bare CR is the point of the case
			}
			if _, _, _, err := parse(lf, nil); status(err) != tt.status {
				t.Fatalf("with LF endings: ParseHead(%q) = %v; want status %d", lf, err, tt.status)
			}
		})
	}
}

func TestParseHeadErrorValues(t *testing.T) {
	// The refusals the connection loop may want to tell apart.
	for _, tt := range []struct {
		in   string
		want *Error
	}{
		{"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n", errConnect},
		{"GET / HTTP/2.0\r\n\r\n", errHTTPVersion},
		{"GET / HTTP/1.1\r\nHost: a\r\nExpect: x\r\n\r\n", errExpectation},
		{"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", errTECoding},
		{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", errTEAndCL},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", errBareCR},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", errHeaderValue},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", errObsFold},
	} {
		if _, _, _, err := parse(tt.in, nil); err != tt.want {
			t.Errorf("ParseHead(%q) = %v; want %v", tt.in, err, tt.want)
		}
	}
	if got := errConnect.Error(); got != "http1: 501 CONNECT is not supported" {
		t.Errorf("Error() = %q", got)
	}
}

func hdrs(kv ...string) []Header {
	var h []Header
	for i := 0; i < len(kv); i += 2 {
		h = append(h, Header{Name: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return h
}

// want describes a successfully parsed head; nil slices in want are compared
// as "absent".
type want struct {
	method, target, path, query, host, upgrade string
	hasQuery                                   bool
	minor                                      int
	headers                                    []Header
	contentLength                              int64
	chunked, close, expectContinue             bool
	n                                          int // bytes consumed; 0 means len(in)
}

var goodHeads = []struct {
	name string
	in   string
	want want
}{
	{"simple", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", want{
		method: "GET", target: "/", path: "/", host: "example.com", minor: 1,
		headers: hdrs("host", "example.com"), contentLength: -1,
	}},
	// RFC 9110 §2.5: a higher minor version is processed as the highest one the server knows.
	{"HTTP/1.2 as 1.1", "GET / HTTP/1.2\r\nHost: example.com\r\n\r\n", want{
		method: "GET", target: "/", path: "/", host: "example.com", minor: 1,
		headers: hdrs("host", "example.com"), contentLength: -1,
	}},
	{"HTTP/1.9 as 1.1", "GET / HTTP/1.9\r\nHost: example.com\r\n\r\n", want{
		method: "GET", target: "/", path: "/", host: "example.com", minor: 1,
		headers: hdrs("host", "example.com"), contentLength: -1,
	}},
	{"query", "GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: h\r\n\r\n", want{
		method: "GET", target: "/a/b?x=1&y=%20", path: "/a/b", query: "x=1&y=%20", hasQuery: true,
		host: "h", minor: 1, headers: hdrs("host", "h"), contentLength: -1,
	}},
	{"empty query", "GET /a? HTTP/1.1\r\nHost: h\r\n\r\n", want{
		method: "GET", target: "/a?", path: "/a", hasQuery: true,
		host: "h", minor: 1, headers: hdrs("host", "h"), contentLength: -1,
	}},
	{"query with bad percent and slash", "GET /a?b=%zz/c?d HTTP/1.1\r\nHost: h\r\n\r\n", want{
		method: "GET", target: "/a?b=%zz/c?d", path: "/a", query: "b=%zz/c?d", hasQuery: true,
		host: "h", minor: 1, headers: hdrs("host", "h"), contentLength: -1,
	}},
	{"percent path", "GET /a%2Fb%c3%A9 HTTP/1.1\r\nHost: h\r\n\r\n", want{
		method: "GET", target: "/a%2Fb%c3%A9", path: "/a%2Fb%c3%A9",
		host: "h", minor: 1, headers: hdrs("host", "h"), contentLength: -1,
	}},
	{"bare LF", "GET / HTTP/1.1\nHost: h\nX-A: 1\n\n", want{
		method: "GET", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "x-a", "1"), contentLength: -1,
	}},
	{"mixed line ends", "GET / HTTP/1.1\r\nHost: h\nX-A: 1\r\n\n", want{
		method: "GET", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "x-a", "1"), contentLength: -1,
	}},
	{"leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", want{
		method: "GET", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h"), contentLength: -1,
	}},
	{"four leading empty lines", "\r\n\n\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", want{
		method: "GET", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h"), contentLength: -1,
	}},
	{"lower-cased names, order and duplicates kept", "GET / HTTP/1.1\r\nX-B: 2\r\nHOST: h\r\nCookie: a=1\r\nx-b: 3\r\nCoOkIe: b=2\r\n\r\n", want{
		method: "GET", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("x-b", "2", "host", "h", "cookie", "a=1", "x-b", "3", "cookie", "b=2"), contentLength: -1,
	}},
	{"OWS trimmed, inner kept", "GET / HTTP/1.1\r\nHost:h\r\nX:  \t a \t b\t \r\nY:\r\nZ: \t\r\n\r\n", want{
		method: "GET", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "x", "a \t b", "y", "", "z", ""), contentLength: -1,
	}},
	{"obs-text in value", "GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\xff\r\n\r\n", want{
		method: "GET", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "x", "caf\xc3\xa9\xff"), contentLength: -1,
	}},
	{"token chars in name", "GET / HTTP/1.1\r\nHost: h\r\n!#$%&'*+-.^_`|~09AZaz: v\r\n\r\n", want{
		method: "GET", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "!#$%&'*+-.^_`|~09azaz", "v"), contentLength: -1,
	}},
	{"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", want{
		method: "GET", target: "/", path: "/", minor: 1,
		headers: hdrs("host", ""), contentLength: -1,
	}},
	{"IPv6 Host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", want{
		method: "GET", target: "/", path: "/", host: "[::1]:8080", minor: 1,
		headers: hdrs("host", "[::1]:8080"), contentLength: -1,
	}},
	{"custom method", "PURGE /x HTTP/1.1\r\nHost: h\r\n\r\n", want{
		method: "PURGE", target: "/x", path: "/x", host: "h", minor: 1,
		headers: hdrs("host", "h"), contentLength: -1,
	}},

	// HTTP/1.0.
	{"HTTP/1.0 no Host", "GET / HTTP/1.0\r\n\r\n", want{
		method: "GET", target: "/", path: "/", minor: 0, contentLength: -1, close: true,
	}},
	{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: h\r\n\r\n", want{
		method: "GET", target: "/", path: "/", host: "h", minor: 0,
		headers: hdrs("connection", "Keep-Alive", "host", "h"), contentLength: -1,
	}},
	{"HTTP/1.0 keep-alive and close", "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", want{
		method: "GET", target: "/", path: "/", minor: 0,
		headers: hdrs("connection", "keep-alive, close"), contentLength: -1, close: true,
	}},
	{"HTTP/1.0 Expect ignored", "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", want{
		method: "POST", target: "/", path: "/", minor: 0,
		headers: hdrs("expect", "100-continue", "content-length", "3"), contentLength: 3, close: true,
	}},
	{"HTTP/1.0 Upgrade ignored", "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", want{
		method: "GET", target: "/", path: "/", minor: 0,
		headers: hdrs("connection", "upgrade", "upgrade", "websocket"), contentLength: -1, close: true,
	}},

	// Connection.
	{"Connection close", "GET / HTTP/1.1\r\nHost: h\r\nConnection: CLOSE\r\n\r\n", want{
		method: "GET", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "connection", "CLOSE"), contentLength: -1, close: true,
	}},
	{"Connection list", "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo ,\tclose , bar\r\n\r\n", want{
		method: "GET", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "connection", "foo ,\tclose , bar"), contentLength: -1, close: true,
	}},
	{"Connection closed not close", "GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n", want{
		method: "GET", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "connection", "closed"), contentLength: -1,
	}},
	{"Upgrade", "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n", want{
		method: "GET", target: "/ws", path: "/ws", host: "h", minor: 1, upgrade: "websocket",
		headers: hdrs("host", "h", "upgrade", "websocket", "connection", "keep-alive, Upgrade"), contentLength: -1,
	}},
	{"Upgrade without Connection", "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", want{
		method: "GET", target: "/ws", path: "/ws", host: "h", minor: 1,
		headers: hdrs("host", "h", "upgrade", "websocket"), contentLength: -1,
	}},
	{"Connection upgrade in second field", "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", want{
		method: "GET", target: "/ws", path: "/ws", host: "h", minor: 1, upgrade: "websocket",
		headers: hdrs("host", "h", "connection", "keep-alive", "upgrade", "websocket", "connection", "upgrade"), contentLength: -1,
	}},

	// Framing.
	{"Content-Length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n", want{
		method: "POST", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "content-length", "42"), contentLength: 42,
	}},
	{"Content-Length OWS", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \t 0 \t\r\n\r\n", want{
		method: "POST", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "content-length", "0"), contentLength: 0,
	}},
	{"Content-Length 18 digits", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999999999999\r\n\r\n", want{
		method: "POST", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "content-length", "999999999999999999"), contentLength: 999999999999999999,
	}},
	{"Content-Length leading zeros", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n", want{
		method: "POST", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "content-length", "007"), contentLength: 7,
	}},
	{"chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", want{
		method: "POST", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "transfer-encoding", "chunked"), contentLength: -1, chunked: true,
	}},
	{"chunked case and OWS", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \t CHUNKED \t\r\n\r\n", want{
		method: "POST", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "transfer-encoding", "CHUNKED"), contentLength: -1, chunked: true,
	}},
	{"Expect 100-continue", "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", want{
		method: "POST", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "expect", "100-Continue", "content-length", "1"), contentLength: 1, expectContinue: true,
	}},
	// Empty list elements are ignored (RFC 9110 §5.6.1.2: a recipient MUST).
	{"TE empty elements", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , chunked,\r\n\r\n", want{
		method: "POST", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "transfer-encoding", ", chunked,"), contentLength: -1, chunked: true,
	}},
	{"Expect empty elements", "POST / HTTP/1.1\r\nHost: h\r\nExpect: , 100-continue,\r\nContent-Length: 1\r\n\r\n", want{
		method: "POST", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "expect", ", 100-continue,", "content-length", "1"), contentLength: 1, expectContinue: true,
	}},
	{"empty Expect ignored", "POST / HTTP/1.1\r\nHost: h\r\nExpect:\r\n\r\n", want{
		method: "POST", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "expect", ""), contentLength: -1,
	}},

	// Target forms.
	{"absolute-form", "GET http://example.com:8080/a/b?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", want{
		method: "GET", target: "http://example.com:8080/a/b?q=1", path: "/a/b", query: "q=1", hasQuery: true,
		host: "example.com:8080", minor: 1, headers: hdrs("host", "other"), contentLength: -1,
	}},
	{"absolute-form https upper case", "GET HTTPS://Example.com HTTP/1.1\r\nHost: other\r\n\r\n", want{
		method: "GET", target: "HTTPS://Example.com", path: "/",
		host: "Example.com", minor: 1, headers: hdrs("host", "other"), contentLength: -1,
	}},
	{"absolute-form empty path with query", "GET http://h?x HTTP/1.1\r\nHost: h\r\n\r\n", want{
		method: "GET", target: "http://h?x", path: "/", query: "x", hasQuery: true,
		host: "h", minor: 1, headers: hdrs("host", "h"), contentLength: -1,
	}},
	{"absolute-form IP-literal", "GET http://[::1]:8080 HTTP/1.1\r\nHost: h\r\n\r\n", want{
		method: "GET", target: "http://[::1]:8080", path: "/",
		host: "[::1]:8080", minor: 1, headers: hdrs("host", "h"), contentLength: -1,
	}},
	{"Host empty port", "GET / HTTP/1.1\r\nHost: h:\r\n\r\n", want{
		method: "GET", target: "/", path: "/", host: "h:", minor: 1,
		headers: hdrs("host", "h:"), contentLength: -1,
	}},
	{"absolute-form HTTP/1.0 without Host", "GET http://h/p HTTP/1.0\r\n\r\n", want{
		method: "GET", target: "http://h/p", path: "/p",
		host: "h", minor: 0, contentLength: -1, close: true,
	}},
	{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", want{
		method: "OPTIONS", target: "*", path: "*", host: "h", minor: 1,
		headers: hdrs("host", "h"), contentLength: -1,
	}},
	{"pipelined", "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n", want{
		method: "GET", target: "/1", path: "/1", host: "h", minor: 1,
		headers: hdrs("host", "h"), contentLength: -1, n: len("GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"),
	}},
	{"body follows", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody", want{
		method: "POST", target: "/", path: "/", host: "h", minor: 1,
		headers: hdrs("host", "h", "content-length", "4"), contentLength: 4, n: len("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n"),
	}},
}

func checkRequest(t *testing.T, in string, req *Request, n int, w want) {
	t.Helper()
	wn := w.n
	if wn == 0 {
		wn = len(in)
	}
	if n != wn {
		t.Errorf("consumed %d; want %d", n, wn)
	}
	eq := func(field string, got []byte, want string) {
		t.Helper()
		if string(got) != want {
			t.Errorf("%s = %q; want %q", field, got, want)
		}
	}
	eq("Method", req.Method, w.method)
	eq("Target", req.Target, w.target)
	eq("Path", req.Path, w.path)
	eq("Query", req.Query, w.query)
	if (req.Query != nil) != w.hasQuery {
		t.Errorf("Query = %#v; want present=%v", req.Query, w.hasQuery)
	}
	eq("Host", req.Host, w.host)
	eq("Upgrade", req.Upgrade, w.upgrade)
	if (req.Upgrade != nil) != (w.upgrade != "") {
		t.Errorf("Upgrade = %#v; want %q", req.Upgrade, w.upgrade)
	}
	if req.Minor != w.minor {
		t.Errorf("Minor = %d; want %d", req.Minor, w.minor)
	}
	if req.ContentLength != w.contentLength || req.Chunked != w.chunked || req.Close != w.close || req.ExpectContinue != w.expectContinue {
		t.Errorf("ContentLength, Chunked, Close, ExpectContinue = %d, %v, %v, %v; want %d, %v, %v, %v",
			req.ContentLength, req.Chunked, req.Close, req.ExpectContinue,
			w.contentLength, w.chunked, w.close, w.expectContinue)
	}
	if len(req.Headers) != len(w.headers) {
		t.Fatalf("Headers = %q; want %q", req.Headers, w.headers)
	}
	for i, h := range req.Headers {
		if !bytes.Equal(h.Name, w.headers[i].Name) || !bytes.Equal(h.Value, w.headers[i].Value) {
			t.Errorf("Headers[%d] = %q: %q; want %q: %q", i, h.Name, h.Value, w.headers[i].Name, w.headers[i].Value)
		}
	}
}

func TestParseHead(t *testing.T) {
	for _, tt := range goodHeads {
		t.Run(tt.name, func(t *testing.T) {
			req, buf, n, err := parse(tt.in, nil)
			if err != nil {
				t.Fatalf("ParseHead(%q): %v", tt.in, err)
			}
			checkRequest(t, tt.in, req, n, tt.want)
			checkAliases(t, buf, req)
		})
	}
}

// checkAliases checks that every slice of req lies inside buf.
func checkAliases(t testing.TB, buf []byte, req *Request) {
	t.Helper()
	inside := func(field string, b []byte) {
		t.Helper()
		if b == nil {
			return
		}
		if cap(b) == 0 {
			t.Errorf("%s: zero-capacity slice", field)
			return
		}
		// b[:cap(b)] ends where buf ends if b aliases buf.
		start := cap(buf) - cap(b)
		if start < 0 || start+len(b) > len(buf) || &buf[:cap(buf)][start] != &b[:1][0] {
			t.Errorf("%s = %q does not alias buf", field, b)
		}
	}
	inside("Method", req.Method)
	inside("Target", req.Target)
	inside("Path", req.Path)
	inside("Query", req.Query)
	inside("Host", req.Host)
	inside("Upgrade", req.Upgrade)
	for i, h := range req.Headers {
		inside(fmt.Sprintf("Headers[%d].Name", i), h.Name)
		inside(fmt.Sprintf("Headers[%d].Value", i), h.Value)
	}
}

func TestParseHeadLowerCaseInPlace(t *testing.T) {
	buf := []byte("GET /Path HTTP/1.1\r\nHOST: Example.COM\r\nX-Mixed-Case: VaLuE\r\n\r\n")
	var req Request
	if _, err := ParseHead(buf, &req, nil); err != nil {
		t.Fatal(err)
	}
	const want = "GET /Path HTTP/1.1\r\nhost: Example.COM\r\nx-mixed-case: VaLuE\r\n\r\n"
	if string(buf) != want {
		t.Errorf("buf = %q; want %q", buf, want)
	}
	if &req.Headers[1].Name[0] != &buf[len("GET /Path HTTP/1.1\r\nhost: Example.COM\r\n")] {
		t.Error("header name is not a slice of buf")
	}
}

func TestParseHeadReusesHeaders(t *testing.T) {
	var req Request
	req.Headers = make([]Header, 0, 8)
	p := &req.Headers[:1][0]
	if _, err := ParseHead([]byte("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\r\n"), &req, nil); err != nil {
		t.Fatal(err)
	}
	if &req.Headers[0] != p {
		t.Error("Headers backing array not reused")
	}
	// A second parse must not leak state from the first.
	if _, err := ParseHead([]byte("GET / HTTP/1.0\r\n\r\n"), &req, nil); err != nil {
		t.Fatal(err)
	}
	if len(req.Headers) != 0 || req.Host != nil || req.ContentLength != -1 || !req.Close {
		t.Errorf("stale state: %+v", req)
	}
}

// Every proper prefix of a valid head is incomplete; the whole parses.
func TestParseHeadIncremental(t *testing.T) {
	for _, tt := range goodHeads {
		t.Run(tt.name, func(t *testing.T) {
			end := tt.want.n
			if end == 0 {
				end = len(tt.in)
			}
			for i := 0; i < end; i++ {
				var req Request
				if n, err := ParseHead([]byte(tt.in[:i]), &req, nil); err != ErrNeedMore || n != 0 {
					t.Fatalf("prefix %q: %d, %v; want ErrNeedMore", tt.in[:i], n, err)
				}
			}
			// Growing one buffer in place, as the connection loop does,
			// re-parsing already lower-cased bytes.
			buf := make([]byte, 0, len(tt.in))
			var req Request
			for i := 0; i < len(tt.in); i++ {
				buf = append(buf, tt.in[i])
				n, err := ParseHead(buf, &req, nil)
				if err == ErrNeedMore {
					continue
				}
				if err != nil {
					t.Fatalf("after %d bytes: %v", len(buf), err)
				}
				checkRequest(t, tt.in, &req, n, tt.want)
				if len(buf) != end {
					t.Errorf("completed after %d bytes; want %d", len(buf), end)
				}
				return
			}
			t.Fatal("never completed")
		})
	}
}

func TestParseHeadPipelined(t *testing.T) {
	heads := []string{
		"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /2 HTTP/1.1\nHost: h\nContent-Length: 0\n\n",
		"\r\nGET /3 HTTP/1.0\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
	}
	buf := []byte(strings.Join(heads, ""))
	var req Request
	for i, h := range heads {
		n, err := ParseHead(buf, &req, nil)
		if err != nil || n != len(h) {
			t.Fatalf("head %d: %d, %v; want %d", i, n, err, len(h))
		}
		buf = buf[n:]
	}
	if len(buf) != 0 {
		t.Errorf("%d bytes left", len(buf))
	}
}

func TestParseHeadNeedMore(t *testing.T) {
	for _, in := range []string{
		"",
		"\r",
		"\r\n",
		"\n\n\r",
		"G",
		"GET / HTTP/1.1\r",
		"GET / HTTP/1.1\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\n\r",
		"GET / HTTP/1.1\nHost: h\n",
		// Errors are found only in complete lines.
		"GET / HTTP/1.1\r\nHost: h\r\nBad Name",
		"GET /\x00 HTTP/1.1",
	} {
		var req Request
		if n, err := ParseHead([]byte(in), &req, nil); err != ErrNeedMore || n != 0 {
			t.Errorf("ParseHead(%q) = %d, %v; want ErrNeedMore", in, n, err)
		}
	}
}

func TestParseHeadLimits(t *testing.T) {
	lim := &Limits{MaxRequestLine: 64, MaxHeaderBytes: 256, MaxHeaders: 4}
	line := func(n int) string { // a request-line of exactly n bytes, without CRLF
		const pre, post = "GET /", " HTTP/1.1"
		return pre + strings.Repeat("a", n-len(pre)-len(post)) + post
	}
	const host = "Host: h\r\n"

	// Request-line: at the limit, one past, and decided before the LF.
	for _, tt := range []struct {
		name string
		in   string
		want error
	}{
		{"line at limit", line(64) + "\r\n" + host + "\r\n", nil},
		{"line at limit LF", line(64) + "\n" + host + "\n", nil},
		{"line past limit", line(65) + "\r\n" + host + "\r\n", errURITooLong},
		{"line past limit LF", line(65) + "\n" + host + "\n", errURITooLong},
		{"line at limit, CR pending", line(64) + "\r", ErrNeedMore},
		{"line at limit, no CR yet", line(64), ErrNeedMore},
		{"line past limit, no LF yet", line(65), errURITooLong},
		{"line far past limit, no LF yet", line(64) + strings.Repeat("x", 100), errURITooLong},
		{"line past limit, CR pending", line(65) + "\r", errURITooLong},
		{"leading CRLF not counted", "\r\n\r\n" + line(64) + "\r\n" + host + "\r\n", nil},
	} {
		if _, _, _, err := parse(tt.in, lim); err != tt.want {
			t.Errorf("%s: %v; want %v", tt.name, err, tt.want)
		}
	}

	// Number of fields.
	fields := func(n int) string {
		s := "GET / HTTP/1.1\r\n" + host
		for i := 1; i < n; i++ {
			s += "X: 1\r\n"
		}
		return s
	}
	for _, tt := range []struct {
		name string
		in   string
		want error
	}{
		{"fields at limit", fields(4) + "\r\n", nil},
		{"fields past limit", fields(5) + "\r\n", errTooManyFields},
		{"fields past limit, incomplete", fields(5), errTooManyFields},
		{"fields past limit, line started", fields(4) + "X", errTooManyFields},
		{"fields at limit, end pending", fields(4) + "\r", ErrNeedMore},
		{"fields at limit, end missing", fields(4), ErrNeedMore},
	} {
		if _, _, _, err := parse(tt.in, lim); err != tt.want {
			t.Errorf("%s: %v; want %v", tt.name, err, tt.want)
		}
	}

	// Head bytes, counting everything through the final LF.
	head := func(n int, eol string) string { // a complete head of exactly n bytes
		s := "GET / HTTP/1.1" + eol + "Host: h" + eol + "X: "
		return s + strings.Repeat("v", n-len(s)-2*len(eol)) + eol + eol
	}
	for _, tt := range []struct {
		name string
		in   string
		want error
	}{
		{"head at limit", head(256, "\r\n"), nil},
		{"head at limit LF", head(256, "\n"), nil},
		{"head at limit, pipelined", head(256, "\r\n") + "GET / HTTP/1.1\r\n", nil},
		{"head past limit", head(257, "\r\n"), errHeadTooLarge},
		{"head past limit LF", head(257, "\n"), errHeadTooLarge},
		{"head at limit minus final LF", head(256, "\r\n")[:255], ErrNeedMore},
		{"head past limit minus final LF", head(257, "\r\n")[:256], errHeadTooLarge},
		{"head past limit, no LF at all", "GET / HTTP/1.1\r\nHost: h\r\nX: " + strings.Repeat("v", 300), errHeadTooLarge},
		{"leading CRLF counted", "\r\n" + head(255, "\r\n"), errHeadTooLarge},
	} {
		if _, _, _, err := parse(tt.in, lim); err != tt.want {
			t.Errorf("%s: %v; want %v", tt.name, err, tt.want)
		}
	}
}

func TestParseHeadTinyLimit(t *testing.T) {
	lim := &Limits{MaxHeaderBytes: 3}
	for _, in := range []string{"\r\n\r\n", "\r\nG", "GET"} {
		if _, _, _, err := parse(in, lim); err != errHeadTooLarge {
			t.Errorf("ParseHead(%q) = %v; want %v", in, err, errHeadTooLarge)
		}
	}
	for _, in := range []string{"\r\n", "GE"} {
		if _, _, _, err := parse(in, lim); err != ErrNeedMore {
			t.Errorf("ParseHead(%q) = %v; want ErrNeedMore", in, err)
		}
	}
}

func TestParseHeadDefaultLimits(t *testing.T) {
	// Only the head's size is bounded by default (as uvicorn's parsers): a request line may take
	// most of it, and the fields are not counted.
	if got := DefaultLimits(); got != (Limits{0, 16384, 0}) || got.RequestLine() != 16384 {
		t.Errorf("DefaultLimits() = %+v", got)
	}
	var zero Limits
	for _, lim := range []*Limits{nil, &zero} {
		target := "/" + strings.Repeat("a", 16000-len("GET  HTTP/1.1")-1)
		if _, _, _, err := parse("GET "+target+" HTTP/1.1\r\nHost: h\r\n\r\n", lim); err != nil {
			t.Errorf("16000-byte request-line: %v", err)
		}
		target = "/" + strings.Repeat("a", 16385-len("GET  HTTP/1.1")-1)
		if _, _, _, err := parse("GET "+target+" HTTP/1.1\r\nHost: h\r\n\r\n", lim); status(err) != 414 {
			t.Errorf("16385-byte request-line: %v; want 414", err)
		}
		many := "GET / HTTP/1.1\r\nHost: h\r\n" + strings.Repeat("X: 1\r\n", 2000)
		if _, _, _, err := parse(many+"\r\n", lim); err != nil {
			t.Errorf("2001 fields: %v", err)
		}
		big := "GET / HTTP/1.1\r\nHost: h\r\nX: "
		big += strings.Repeat("v", 16384-len(big)-4) + "\r\n\r\n"
		if _, _, _, err := parse(big, lim); err != nil {
			t.Errorf("16384-byte head: %v", err)
		}
		if _, _, _, err := parse(big[:len(big)-4]+"v\r\n\r\n", lim); status(err) != 431 {
			t.Errorf("16385-byte head: %v; want 431", err)
		}
	}
}

const benchHead = "GET /api/v1/users/12345?fields=name,email&sort=asc HTTP/1.1\r\n" +
	"Host: api.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\n" +
	"Accept: application/json, text/plain, */*\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=abcdef0123456789; theme=dark\r\n" +
	"Content-Length: 0\r\n" +
	"\r\n"

func TestParseHeadAllocs(t *testing.T) {
	buf := []byte(benchHead)
	var req Request
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := ParseHead(buf, &req, nil); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("ParseHead allocates %v times per run; want 0", allocs)
	}
	// Refusals do not allocate either.
	bad := []byte("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
	allocs = testing.AllocsPerRun(1000, func() {
		if _, err := ParseHead(bad, &req, nil); err == nil {
			t.Fatal("no error")
		}
	})
	if allocs != 0 {
		t.Errorf("ParseHead refusal allocates %v times per run; want 0", allocs)
	}
}

func BenchmarkParseHead(b *testing.B) {
	buf := []byte(benchHead)
	var req Request
	lim := DefaultLimits()
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := ParseHead(buf, &req, &lim); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseHeadMinimal(b *testing.B) {
	buf := []byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	var req Request
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := ParseHead(buf, &req, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// RFC 9112 §3: the path may not hold '"', '<', '>', '`', '{' or '}' raw (validPath); the query
// may, and so may the path '|', '^' and '\'.
func TestRequestTargetPathCharacters(t *testing.T) {
	for target, ok := range map[string]bool{
		"/a<b": false, "/a>b": false, `/a"b`: false, "/a`b": false, "/a{b": false, "/a}b": false,
		"http://h/a<b": false, "/a|b": true, "/a^b": true, `/a\b`: true, "/?q={\"a\":1}": true,
		"/p?x=<y>`": true, "/%7B%22%7D": true,
	} {
		var req Request
		_, err := parseRequestLine([]byte("GET "+target+" HTTP/1.1"), &req)
		if (err == nil) != ok {
			t.Errorf("%q: %v, want ok=%v", target, err, ok)
		}
		if !ok && err != errTarget {
			t.Errorf("%q: %v, want errTarget", target, err)
		}
	}
}

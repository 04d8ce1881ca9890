package protocol

import (
	"bytes"
	"io"
	"testing"
)

func realisticRequest() *HTTPRequest {
	return &HTTPRequest{
		HTTPVersion: "1.1",
		Method:      []byte("GET"),
		Scheme:      "http",
		Path:        []byte("/api/v1/users/42"),
		RawPath:     []byte("/api/v1/users/42"),
		QueryString: []byte("fields=name,email&expand=groups"),
		Headers: []Header{
			{[]byte("host"), []byte("api.example.com")},
			{[]byte("user-agent"), []byte("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36")},
			{[]byte("accept"), []byte("application/json, text/plain, */*")},
			{[]byte("accept-encoding"), []byte("gzip, deflate, br")},
			{[]byte("accept-language"), []byte("en-US,en;q=0.9")},
			{[]byte("authorization"), []byte("Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiJ9.sig")},
			{[]byte("cookie"), []byte("session=abc123def456; theme=dark")},
			{[]byte("x-request-id"), []byte("7f9c2ba4-e88f-4a7b-9c1d-3c3e1f2a9b10")},
		},
		Client: &Addr{Host: "192.168.1.23", Port: 53412, HasPort: true},
		Server: &Addr{Host: "10.0.0.5", Port: 8000, HasPort: true},
	}
}

func realisticWSConnect() *WSConnect {
	r := realisticRequest()
	return &WSConnect{
		HTTPVersion: "1.1",
		Scheme:      "wss",
		Path:        []byte("/ws/chat"),
		RawPath:     []byte("/ws/chat"),
		QueryString: []byte("room=42"),
		Headers: append(r.Headers[:2:2],
			Header{[]byte("upgrade"), []byte("websocket")},
			Header{[]byte("connection"), []byte("Upgrade")},
			Header{[]byte("sec-websocket-key"), []byte("dGhlIHNhbXBsZSBub25jZQ==")},
			Header{[]byte("sec-websocket-version"), []byte("13")},
			Header{[]byte("sec-websocket-protocol"), []byte("chat.v2, chat.v1")}),
		Client:       r.Client,
		Server:       r.Server,
		Subprotocols: [][]byte{[]byte("chat.v2"), []byte("chat.v1")},
	}
}

var responseHeaders = []Header{
	{[]byte("content-type"), []byte("application/json")},
	{[]byte("content-length"), []byte("1234")},
	{[]byte("cache-control"), []byte("no-store")},
	{[]byte("set-cookie"), []byte("session=abc123; Path=/; HttpOnly")},
}

var trailers = []Header{
	{[]byte("grpc-status"), []byte("0")},
	{[]byte("grpc-message"), []byte("")},
	{[]byte("server-timing"), []byte("db;dur=53, app;dur=47.2")},
}

var links = [][]byte{
	[]byte("</static/css/app.css>; rel=preload; as=style"),
	[]byte("</static/js/app.js>; rel=preload; as=script"),
	[]byte("<https://fonts.example.com>; rel=preconnect"),
}

// TestZeroAllocs asserts that appending and decoding each hot frame type allocates nothing in
// steady state (dst and Frame reused).
func TestZeroAllocs(t *testing.T) {
	req := realisticRequest()
	ws := realisticWSConnect()
	tlsInfo := testTLSInfo()
	body := bytes.Repeat([]byte("b"), 4096)
	hot := map[string]func(dst []byte) []byte{
		"HTTP_REQUEST": func(dst []byte) []byte {
			out, err := AppendHTTPRequest(dst, 7, req)
			if err != nil {
				panic(err)
			}
			return out
		},
		"HTTP_REQUEST_root_path": func(dst []byte) []byte {
			r := *req
			r.RootPath = "/mounted"
			r.Server = &Addr{Host: "/run/gw.sock"}
			r.Client = nil
			out, _ := AppendHTTPRequest(dst, 7, &r)
			return out
		},
		"HTTP_REQUEST_tls": func(dst []byte) []byte {
			r := *req
			r.Scheme = "https"
			r.TLS = tlsInfo
			out, err := AppendHTTPRequest(dst, 7, &r)
			if err != nil {
				panic(err)
			}
			return out
		},
		"REQUEST_BODY": func(dst []byte) []byte { return AppendRequestBody(dst, 7, body, true) },
		"DISCONNECT":   func(dst []byte) []byte { return AppendDisconnect(dst, 7) },
		"CREDIT_G2W":   func(dst []byte) []byte { return AppendCredit(dst, TypeCreditG2W, 7, 1<<17) },
		"PING":         func(dst []byte) []byte { return AppendPing(dst, TypePing, 1<<40) },
		"RESPONSE_START": func(dst []byte) []byte {
			return AppendResponseStart(dst, 7, 200, responseHeaders, 0, body[:100], false)
		},
		"RESPONSE_BODY": func(dst []byte) []byte { return AppendResponseBody(dst, 7, body, false) },
		"CREDIT_W2G":    func(dst []byte) []byte { return AppendCredit(dst, TypeCreditW2G, 7, 1<<17) },
		"END":           func(dst []byte) []byte { return AppendEnd(dst, 7, OutcomeAppError, "ValueError: boom") },
		"PONG":          func(dst []byte) []byte { return AppendPing(dst, TypePong, 5) },
		"WS_CONNECT": func(dst []byte) []byte {
			out, err := AppendWSConnect(dst, 7, ws)
			if err != nil {
				panic(err)
			}
			return out
		},
		"WS_CONNECT_tls": func(dst []byte) []byte {
			c := *ws
			c.TLS = tlsInfo
			out, err := AppendWSConnect(dst, 7, &c)
			if err != nil {
				panic(err)
			}
			return out
		},
		"WS_RECEIVE_text":   func(dst []byte) []byte { return AppendWSMessage(dst, TypeWSReceive, 7, true, body[:200]) },
		"WS_RECEIVE_binary": func(dst []byte) []byte { return AppendWSMessage(dst, TypeWSReceive, 7, false, body) },
		"WS_DISCONNECT":     func(dst []byte) []byte { return AppendWSClose(dst, TypeWSDisconnect, 7, 1001, "going away") },
		"SHUTDOWN":          func(dst []byte) []byte { return AppendShutdown(dst, 30000) },
		"WS_ACCEPT": func(dst []byte) []byte {
			return AppendWSAccept(dst, 7, ws.Subprotocols[0], true, responseHeaders[3:])
		},
		"WS_ACCEPT_nil":  func(dst []byte) []byte { return AppendWSAccept(dst, 7, nil, false, nil) },
		"WS_SEND_text":   func(dst []byte) []byte { return AppendWSMessage(dst, TypeWSSend, 7, true, body[:50]) },
		"WS_SEND_binary": func(dst []byte) []byte { return AppendWSMessage(dst, TypeWSSend, 7, false, body) },
		"WS_CLOSE":       func(dst []byte) []byte { return AppendWSClose(dst, TypeWSClose, 7, 4000, "bye \u2603") },
		"CANCEL":         func(dst []byte) []byte { return AppendCancel(dst, 7) },
		"RESPONSE_TRAILERS": func(dst []byte) []byte {
			return AppendResponseTrailers(dst, 7, trailers, false)
		},
		"RESPONSE_PATHSEND": func(dst []byte) []byte {
			return AppendResponsePathsend(dst, 7, "/srv/www/static/css/app.min.css")
		},
		"RESPONSE_PATHSEND_repaired": func(dst []byte) []byte {
			return AppendResponsePathsend(dst, 7, "/srv/www/\xff.css")
		},
		"EARLY_HINT": func(dst []byte) []byte { return AppendEarlyHint(dst, 7, links) },
	}
	for name, appendFn := range hot {
		buf := make([]byte, 0, 16<<10)
		var f Frame
		run := func() {
			buf = appendFn(buf[:0])
			if err := f.Decode(buf[PrefixLen:]); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		run() // warm up: the Frame's header slices and string caches
		if n := testing.AllocsPerRun(100, run); n != 0 {
			t.Errorf("%s: %v allocs per append+decode", name, n)
		}
	}

	// The Reader allocates nothing per frame either.
	var stream []byte
	for i := 0; i < 100; i++ {
		stream = AppendResponseBody(stream, 1, body[:300], true)
	}
	br := bytes.NewReader(stream)
	rd := NewReader(br, DefaultMaxFrame)
	if n := testing.AllocsPerRun(100, func() {
		br.Reset(stream)
		for {
			if _, err := rd.Next(); err != nil {
				if err != io.EOF {
					t.Fatal(err)
				}
				break
			}
		}
		rd.err = nil // rewind the sticky EOF for the next run
	}); n != 0 {
		t.Errorf("Reader: %v allocs per 100 frames", n)
	}
}

func BenchmarkAppendHTTPRequest(b *testing.B) {
	req := realisticRequest()
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		buf, err = AppendHTTPRequest(buf[:0], 7, req)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkAppendResponseStart(b *testing.B) {
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendResponseStart(buf[:0], 7, 200, responseHeaders, 0, nil, true)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeResponseStart(b *testing.B) {
	frame := AppendResponseStart(nil, 7, 200, responseHeaders, 0, []byte(`{"id":42,"name":"x"}`), false)
	payload := frame[PrefixLen:]
	var f Frame
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if err := f.Decode(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeHTTPRequest(b *testing.B) {
	frame, _ := AppendHTTPRequest(nil, 7, realisticRequest())
	payload := frame[PrefixLen:]
	var f Frame
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if err := f.Decode(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeResponseBody(b *testing.B) {
	frame := AppendResponseBody(nil, 7, bytes.Repeat([]byte("x"), 16<<10), true)
	payload := frame[PrefixLen:]
	var f Frame
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if err := f.Decode(payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReader reads a mixed W→G stream (start, 2 bodies, end per stream) and decodes
// each frame; bytes/s is the stream rate.
func BenchmarkReader(b *testing.B) {
	var stream []byte
	body := bytes.Repeat([]byte("y"), 1024)
	frames := 0
	for sid := uint32(1); sid <= 200; sid++ {
		stream = AppendResponseStart(stream, sid, 200, responseHeaders, 0, nil, true)
		stream = AppendResponseBody(stream, sid, body, true)
		stream = AppendResponseBody(stream, sid, body[:100], false)
		stream = AppendEnd(stream, sid, OutcomeOK, "")
		frames += 4
	}
	br := bytes.NewReader(stream)
	rd := NewReader(br, DefaultMaxFrame)
	var f Frame
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		br.Reset(stream)
		rd.err = nil
		for n := 0; ; n++ {
			p, err := rd.Next()
			if err == io.EOF {
				if n != frames {
					b.Fatalf("%d frames", n)
				}
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if err := f.Decode(p); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/frame")
}

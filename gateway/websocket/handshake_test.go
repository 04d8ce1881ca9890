package websocket

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/asgi-gateway/asgi-gateway/gateway/http1"
)

const rfcKey = "dGhlIHNhbXBsZSBub25jZQ=="

func TestAcceptKey(t *testing.T) {
	// RFC 6455 section 1.3 (and base64(SHA-1(key+GUID)) computed by Python's
	// hashlib).
	if got := AcceptKey([]byte(rfcKey)); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("AcceptKey = %q", got)
	}
}

// parseRequest parses a request head given as lines joined by CRLF.
func parseRequest(t testing.TB, lines ...string) *http1.Request {
	t.Helper()
	buf := []byte(strings.Join(lines, "\r\n") + "\r\n\r\n")
	req := new(http1.Request)
	if _, err := http1.ParseHead(buf, req, nil); err != nil {
		t.Fatalf("ParseHead: %v", err)
	}
	return req
}

func upgradeRequest(t testing.TB, extra ...string) *http1.Request {
	lines := append([]string{
		"GET /chat HTTP/1.1",
		"Host: server.example.com",
		"Upgrade: websocket",
		"Connection: Upgrade",
		"Sec-WebSocket-Key: " + rfcKey,
		"Origin: http://example.com",
		"Sec-WebSocket-Version: 13",
	}, extra...)
	return parseRequest(t, lines...)
}

func TestIsUpgrade(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  bool
	}{
		{[]string{"GET / HTTP/1.1", "Host: a", "Upgrade: websocket", "Connection: Upgrade"}, true},
		{[]string{"GET / HTTP/1.1", "Host: a", "Upgrade: WebSocket", "Connection: keep-alive, upgrade"}, true},
		{[]string{"GET / HTTP/1.1", "Host: a", "Upgrade: h2c, websocket", "Connection: Upgrade"}, true},
		{[]string{"GET / HTTP/1.1", "Host: a", "Upgrade: h2c", "Connection: Upgrade"}, false},
		{[]string{"GET / HTTP/1.1", "Host: a", "Upgrade: websocket"}, false},
		{[]string{"GET / HTTP/1.1", "Host: a", "Connection: upgrade"}, false},
		{[]string{"GET / HTTP/1.1", "Host: a", "Upgrade: websocketx", "Connection: Upgrade"}, false},
		{[]string{"GET / HTTP/1.0", "Host: a", "Upgrade: websocket", "Connection: Upgrade"}, false},
		// Several Upgrade lines are one list (RFC 9110 §5.3).
		{[]string{"GET / HTTP/1.1", "Host: a", "Upgrade: foo", "Upgrade: websocket", "Connection: Upgrade"}, true},
		{[]string{"GET / HTTP/1.1", "Host: a", "Upgrade: foo", "Connection: Upgrade", "Upgrade: bar"}, false},
	} {
		if got := IsUpgrade(parseRequest(t, tc.lines...)); got != tc.want {
			t.Errorf("%q: IsUpgrade = %v", tc.lines, got)
		}
	}
}

func TestCheckHandshake(t *testing.T) {
	o, err := CheckHandshake(upgradeRequest(t), true)
	if err != nil {
		t.Fatal(err)
	}
	if string(o.Key) != rfcKey || o.Subprotocols != nil || o.Deflate {
		t.Fatalf("offer %+v", o)
	}
	o, err = CheckHandshake(upgradeRequest(t, "Sec-WebSocket-Protocol: chat, , superchat ", "Sec-WebSocket-Protocol: v2.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"chat", "superchat", "v2.json"}; !reflect.DeepEqual(o.Subprotocols, want) {
		t.Fatalf("subprotocols %q; want %q", o.Subprotocols, want)
	}
	if !o.HasSubprotocol("superchat") || o.HasSubprotocol("chat2") {
		t.Fatal("HasSubprotocol")
	}
}

func TestCheckHandshakeErrors(t *testing.T) {
	req := func(lines ...string) *http1.Request { return parseRequest(t, lines...) }
	base := func(drop string, extra ...string) *http1.Request {
		lines := []string{"GET / HTTP/1.1", "Host: a", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " + rfcKey, "Sec-WebSocket-Version: 13"}
		var keep []string
		for _, l := range lines {
			if drop == "" || !strings.HasPrefix(l, drop) {
				keep = append(keep, l)
			}
		}
		return req(append(keep, extra...)...)
	}
	http10 := base("")
	http10.Minor = 0
	post := req("POST / HTTP/1.1", "Host: a", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: "+rfcKey, "Sec-WebSocket-Version: 13")
	for _, tc := range []struct {
		name   string
		req    *http1.Request
		status int
	}{
		{"not upgrade", base("Upgrade"), 400},
		{"POST", post, 400},
		{"HTTP/1.0", http10, 400},
		{"no version", base("Sec-WebSocket-Version"), 426},
		{"version 8", base("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"), 426},
		{"version list", base("Sec-WebSocket-Version", "Sec-WebSocket-Version: 13, 8"), 426},
		{"two versions", base("", "Sec-WebSocket-Version: 13"), 426},
		{"no key", base("Sec-WebSocket-Key"), 400},
		{"two keys", base("", "Sec-WebSocket-Key: "+rfcKey), 400},
		{"short key", base("Sec-WebSocket-Key", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA="), 400},
		{"key of 15 bytes", base("Sec-WebSocket-Key", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA"), 400},
		{"key of 18 bytes", base("Sec-WebSocket-Key", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA"), 400},
		{"key not base64", base("Sec-WebSocket-Key", "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!=="), 400},
		{"key empty", base("Sec-WebSocket-Key", "Sec-WebSocket-Key:"), 400},
		{"subprotocol not token", base("", "Sec-WebSocket-Protocol: chat, a/b"), 400},
		{"subprotocol with space", base("", "Sec-WebSocket-Protocol: a b"), 400},
		{"content-length", base("", "Content-Length: 5"), 400},
		{"chunked", base("", "Transfer-Encoding: chunked"), 400},
	} {
		o, err := CheckHandshake(tc.req, true)
		var he *HandshakeError
		if !errors.As(err, &he) || he.Status != tc.status {
			t.Errorf("%s: %+v, %v; want status %d", tc.name, o, err, tc.status)
			continue
		}
		if tc.status == 426 && !reflect.DeepEqual(he.Header, [][2]string{{"Sec-WebSocket-Version", "13"}, {"Upgrade", "websocket"}, {"Connection", "Upgrade"}}) {
			t.Errorf("%s: header %q", tc.name, he.Header)
		}
		if !strings.HasPrefix(err.Error(), "websocket: 4") || o.Key != nil || o.Subprotocols != nil {
			t.Errorf("%s: %q, offer %+v", tc.name, err.Error(), o)
		}
	}
}

func TestCheckHandshakeDeflate(t *testing.T) {
	def := DeflateParams{ServerNoContextTakeover: true}
	for _, tc := range []struct {
		name   string
		fields []string
		ok     bool
		want   DeflateParams
	}{
		{"plain", []string{"permessage-deflate"}, true, def},
		{"browser", []string{"permessage-deflate; client_max_window_bits"}, true, def},
		{"case", []string{"Permessage-Deflate; Client_Max_Window_Bits"}, true, def},
		{"client window value", []string{"permessage-deflate; client_max_window_bits=10"}, true, def},
		{"all", []string{"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits"}, true,
			DeflateParams{ServerNoContextTakeover: true, ClientNoContextTakeover: true, ServerMaxWindowBits: 10}},
		{"spaces", []string{"permessage-deflate ;client_no_context_takeover ; server_max_window_bits = 15 "}, true,
			DeflateParams{ServerNoContextTakeover: true, ClientNoContextTakeover: true, ServerMaxWindowBits: 15}},
		{"quoted", []string{`permessage-deflate; server_max_window_bits="12"`}, true, DeflateParams{ServerNoContextTakeover: true, ServerMaxWindowBits: 12}},
		{"quoted escape", []string{`permessage-deflate; server_max_window_bits="1\2"`}, true, DeflateParams{ServerNoContextTakeover: true, ServerMaxWindowBits: 12}},
		{"window 8", []string{"permessage-deflate; server_max_window_bits=8"}, true, DeflateParams{ServerNoContextTakeover: true, ServerMaxWindowBits: 8}},
		{"other extension first", []string{"x-webkit-deflate-frame; no_context_takeover, permessage-deflate"}, true, def},
		{"second field", []string{"foo", "permessage-deflate; client_no_context_takeover"}, true, DeflateParams{ServerNoContextTakeover: true, ClientNoContextTakeover: true}},
		{"first acceptable offer", []string{"permessage-deflate; server_max_window_bits=7, permessage-deflate; server_max_window_bits=9, permessage-deflate"}, true,
			DeflateParams{ServerNoContextTakeover: true, ServerMaxWindowBits: 9}},
		{"empty elements", []string{", permessage-deflate ,"}, true, def},

		{"none", nil, false, DeflateParams{}},
		{"other only", []string{"x-webkit-deflate-frame"}, false, DeflateParams{}},
		{"unknown param", []string{"permessage-deflate; foo"}, false, DeflateParams{}},
		{"duplicate param", []string{"permessage-deflate; client_no_context_takeover; client_no_context_takeover"}, false, DeflateParams{}},
		{"server window without value", []string{"permessage-deflate; server_max_window_bits"}, false, DeflateParams{}},
		{"window 16", []string{"permessage-deflate; server_max_window_bits=16"}, false, DeflateParams{}},
		{"window 7", []string{"permessage-deflate; client_max_window_bits=7"}, false, DeflateParams{}},
		{"window leading zero", []string{"permessage-deflate; client_max_window_bits=09"}, false, DeflateParams{}},
		{"takeover with value", []string{"permessage-deflate; server_no_context_takeover=1"}, false, DeflateParams{}},
		{"syntax error declines all", []string{"permessage-deflate", "foo;;"}, false, DeflateParams{}},
		{"syntax error before", []string{"foo; =1, permessage-deflate"}, false, DeflateParams{}},
		{"unterminated quote", []string{`permessage-deflate; server_max_window_bits="12`}, false, DeflateParams{}},
		{"quoted non-token", []string{`permessage-deflate; server_max_window_bits="1 2"`}, false, DeflateParams{}},
	} {
		var extra []string
		for _, f := range tc.fields {
			extra = append(extra, "Sec-WebSocket-Extensions: "+f)
		}
		o, err := CheckHandshake(upgradeRequest(t, extra...), true)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if o.Deflate != tc.ok || o.DeflateParams != tc.want {
			t.Errorf("%s: Deflate %v %+v; want %v %+v", tc.name, o.Deflate, o.DeflateParams, tc.ok, tc.want)
		}
		if tc.ok {
			// Not allowed: not negotiated.
			if o, _ := CheckHandshake(upgradeRequest(t, extra...), false); o.Deflate || o.DeflateParams != (DeflateParams{}) {
				t.Errorf("%s: negotiated although not allowed", tc.name)
			}
		}
	}
}

func TestAppendAccept(t *testing.T) {
	o, err := CheckHandshake(upgradeRequest(t, "Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_max_window_bits=10"), true)
	if err != nil {
		t.Fatal(err)
	}
	got := AppendAccept([]byte("x"), &o, "chat", [][2][]byte{{[]byte("server"), []byte("asgi-gateway")}, {[]byte("date"), []byte("today")}})
	want := "x" +
		"HTTP/1.1 101 Switching Protocols\r\n" +
		"upgrade: websocket\r\n" +
		"connection: Upgrade\r\n" +
		"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" +
		"sec-websocket-protocol: chat\r\n" +
		"sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10\r\n" +
		"server: asgi-gateway\r\n" +
		"date: today\r\n" +
		"\r\n"
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}

	o.Deflate = false
	got = AppendAccept(nil, &o, "", nil)
	want = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	// RFC 9110 section 7.8: with "Expect: 100-continue", a 100 comes before the 101.
	o, err = CheckHandshake(upgradeRequest(t, "Content-Length: 0", "Expect: 100-continue"), true)
	if err != nil {
		t.Fatal(err)
	}
	if !o.ExpectContinue {
		t.Fatal("ExpectContinue not set")
	}
	got = AppendAccept(nil, &o, "", nil)
	want = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	p := DeflateParams{ClientMaxWindowBits: 12}
	if got := string(p.appendExtension(nil)); got != "permessage-deflate; client_max_window_bits=12" {
		t.Fatalf("appendExtension: %q", got)
	}
}

func TestAppendAcceptAllocs(t *testing.T) {
	o, _ := CheckHandshake(upgradeRequest(t, "Sec-WebSocket-Extensions: permessage-deflate"), true)
	dst := make([]byte, 0, 512)
	if allocs := testing.AllocsPerRun(100, func() { dst = AppendAccept(dst[:0], &o, "chat", nil) }); allocs != 0 {
		t.Errorf("AppendAccept allocates %v times", allocs)
	}
}

package gateway

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/asgi-gateway/asgi-gateway/gateway/websocket"
	"github.com/asgi-gateway/asgi-gateway/protocol"
)

func TestWireClose(t *testing.T) {
	for _, tc := range []struct {
		code, wantCode     int
		reason, wantReason string
	}{
		{1000, 1000, "bye", "bye"},
		{1003, 1003, "x", "x"},
		{1007, 1007, "x", "x"},
		{1014, 1014, "x", "x"},
		{3000, 3000, "x", "x"},
		{4999, 4999, "x", "x"},
		{1005, 0, "bye", ""}, // SPEC WS_CLOSE: a close frame without a code (and so without a reason)
		{1006, 1011, "bye", ""},
		{1004, 1011, "bye", ""},
		{1015, 1011, "bye", ""},
		{1016, 1011, "", ""},
		{999, 1011, "", ""},
		{0, 1011, "bye", ""},
		{2999, 1011, "", ""},
		{5000, 1011, "", ""},
		{65535, 1011, "", ""},
	} {
		code, reason := wireClose(tc.code, tc.reason)
		if code != tc.wantCode || reason != tc.wantReason {
			t.Errorf("wireClose(%d, %q) = %d, %q; want %d, %q", tc.code, tc.reason, code, reason, tc.wantCode, tc.wantReason)
		}
	}
	// Whatever the worker sends, the close frame is one an endpoint may send (RFC 6455 section 7.4).
	for c := 0; c <= protocol.MaxCloseCode; c++ {
		code, _ := wireClose(c, "")
		frame := websocket.AppendClose(nil, code, "")
		if len(frame) == 2 {
			if c != websocket.CloseNoStatus {
				t.Fatalf("wireClose(%d): an empty close frame", c)
			}
			continue
		}
		if sent := int(frame[2])<<8 | int(frame[3]); !websocket.ValidCloseCode(sent) {
			t.Fatalf("wireClose(%d): %d on the wire", c, sent)
		}
	}
}

func TestHandshakeRefusalHeaders(t *testing.T) {
	s := &Server{cfg: DefaultConfig()}
	out := s.appendSimpleResponseHeaders(nil, 426, false, [][2]string{{"Sec-WebSocket-Version", "13"}})
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
	if err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if resp.StatusCode != 426 || resp.Header.Get("Sec-WebSocket-Version") != "13" || !resp.Close {
		t.Errorf("%q", out)
	}
	if got := resp.Header.Values("Server"); len(got) != 1 || got[0] != "asgi-gateway" {
		t.Errorf("server %q in %q", got, out)
	}
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil || time.Since(date).Abs() > time.Minute || len(resp.Header.Values("Date")) != 1 {
		t.Errorf("date %q (%v) in %q", resp.Header.Values("Date"), err, out)
	}

	// RFC 9110 section 9.3.2: no content in the response to a HEAD request.
	out = s.appendSimpleResponseHeaders(nil, 400, true, nil)
	if !bytes.HasSuffix(out, []byte("content-length: 11\r\n\r\n")) {
		t.Errorf("HEAD: %q", out)
	}

	s.cfg.ServerHeader, s.cfg.DateHeader = false, false // --no-server-header, --no-date-header
	out = s.appendSimpleResponseHeaders(nil, 400, false, nil)
	if bytes.Contains(out, []byte("server:")) || bytes.Contains(out, []byte("date:")) {
		t.Errorf("%q", out)
	}
}

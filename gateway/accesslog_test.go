package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/asgi-gateway/asgi-gateway/protocol"
)

func TestAccessFormat(t *testing.T) {
	f, err := ParseAccessFormat(`%(client_addr)s - "%(request_line)s" %(status)s %(bytes)s %(duration_ms)sms w%(worker)s`)
	if err != nil {
		t.Fatal(err)
	}
	c := &h1conn{client: &protocol.Addr{Host: "10.0.0.1", Port: 5555, HasPort: true}}
	ex := &exchange{c: c, w: &workerConn{id: 2}, minor: 1, method: []byte("GET"), target: []byte("/a?b=1"), status: 200, bytesOut: 13}
	e := ex.accessEntry()
	got := string(f.append(nil, &e, 1500*time.Microsecond))
	want := `10.0.0.1:5555 - "GET /a?b=1 HTTP/1.1" 200 13 1.500ms w2`
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// An HTTP/1.0 request the gateway answered itself (no worker), from a Unix socket (no client).
	ex = &exchange{c: &h1conn{}, minor: 0, method: []byte("POST"), target: []byte("/"), status: 413}
	e = ex.accessEntry()
	if got, want := string(f.append(nil, &e, 0)), `- - "POST / HTTP/1.0" 413 0 0.000ms w-`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, bad := range []string{"%(nope)s", "%(client"} {
		if _, err := ParseAccessFormat(bad); err == nil || !strings.Contains(err.Error(), "--access-log-format") {
			t.Errorf("%q: got %v, want an error", bad, err)
		}
	}
}

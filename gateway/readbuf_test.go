package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Connections that wait for their clients hold no pooled read buffer: not when idle, not with an
// incomplete head (its bytes are parked in a small buffer of their own), not with a pipelined head
// waiting behind a slow response (it moves, parsed again). The parked bytes stay intact (the moved
// head's: integration_tests/test_it_connections.py).
func TestWaitingConnectionsHoldNoPooledBuffer(t *testing.T) {
	_, addr := startGateway(t, "ok", 1)
	before := readBufs.inUse()
	const n = 20
	var partial []net.Conn
	dial := func() net.Conn {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		return nc
	}
	for i := 0; i < n; i++ {
		nc := dial()
		io.WriteString(nc, "GET /partial HTTP/1.1\r\nHost: x\r\nX-Pad: "+strings.Repeat("p", 3000))
		partial = append(partial, nc)
		// (the fake worker never answers /slow: /behind waits, parsed)
		io.WriteString(dial(), "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /behind HTTP/1.1\r\nHost: x\r\n\r\n")
		dial() // idle
	}
	deadline := time.Now().Add(5 * time.Second)
	for readBufs.inUse() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := readBufs.inUse(); got > before {
		t.Fatalf("%d pooled read buffers held by %d waiting connections (%d before)", got, 3*n, before)
	}
	// The parked heads complete with their bytes intact.
	for i, nc := range partial {
		io.WriteString(nc, "q\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil {
			t.Fatalf("partial %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), "path=/partial ") {
			t.Fatalf("partial %d: %d %q", i, resp.StatusCode, b)
		}
	}
}

// A connection whose buffer of its own (here: as unpoolHead leaves it) has been processed to the
// end reads its next bytes into a pooled buffer again.
func TestEmptiedOwnBufferGoesBackToThePool(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := newH1Conn(&Server{}, nc, "http")
	c.rbuf, c.rpos, c.rend = make([]byte, 2*readBufStart), 100, 100
	io.WriteString(client, "GET / HTTP/1.1\r\n")
	if !c.fill(readBufBody) {
		t.Fatal("fill failed")
	}
	if !c.rbufPooled || string(c.rbuf[c.rpos:c.rend]) != "GET / HTTP/1.1\r\n" {
		t.Fatalf("pooled %v, buffered %q", c.rbufPooled, c.rbuf[c.rpos:c.rend])
	}
	c.rpos, c.rend = 0, 0
	c.releaseReadBuf()
}

package gateway

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
	"testing"

	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// A WS_DISCONNECT (a shutdown's 1012, from another goroutine) that comes while a client message is
// being queued for the worker goes after it: nothing follows WS_DISCONNECT for the stream (SPEC §4).
func TestWSDisconnectDuringDeliveryFollowsTheMessage(t *testing.T) {
	w := &workerConn{}
	c := &h1conn{}
	ex := &exchange{c: c, w: w, sid: 7, ws: &wsState{accepted: true}, reqCredit: 1 << 20}
	testHookWSDelivering = func(ex *exchange) {
		ex.c.mu.Lock()
		ex.wsDisconnectLocked(1012, "")
		ex.c.mu.Unlock()
	}
	defer func() { testHookWSDelivering = nil }()
	if !c.deliverWSMessage(ex, true, []byte("late")) {
		t.Fatal("deliverWSMessage: stop reading")
	}
	// A message after the disconnect is dropped.
	testHookWSDelivering = nil
	c.deliverWSMessage(ex, true, []byte("later"))

	var types []protocol.Type
	for _, f := range queuedFrames(t, w) {
		if f.Stream != 7 {
			t.Fatalf("stream %d", f.Stream)
		}
		types = append(types, f.Type)
	}
	want := []protocol.Type{protocol.TypeWSReceive, protocol.TypeWSDisconnect}
	if len(types) != len(want) || types[0] != want[0] || types[1] != want[1] {
		t.Fatalf("frames to the worker: %v, want %v", types, want)
	}
}

// The same for a request body: a DISCONNECT decided (the response's write found the client gone)
// while the connection's goroutine queues a body frame goes after that frame, and no more body
// follows it (probe 52: the worker took a REQUEST_BODY after DISCONNECT as a protocol error and
// dropped every stream it had).
func TestDisconnectDuringBodyQueueingFollowsTheFrame(t *testing.T) {
	w := &workerConn{maxPiece: 4}
	c := &h1conn{rbuf: make([]byte, readBufBody)}
	c.rend = copy(c.rbuf, "abcdefgh")
	ex := &exchange{c: c, w: w, sid: 9, reqCredit: 1 << 20, remaining: -1}
	testHookBodyQueueing = func(ex *exchange) {
		ex.c.mu.Lock()
		ex.clientGoneLocked()
		ex.c.mu.Unlock()
	}
	defer func() { testHookBodyQueueing = nil }()
	if c.pumpLength(ex, 8) {
		t.Fatal("pumpLength went on after the client was gone")
	}
	var got []string
	for _, f := range queuedFrames(t, w) {
		got = append(got, f.Type.String()+":"+string(f.Body))
	}
	want := []string{protocol.TypeRequestBody.String() + ":abcd", protocol.TypeDisconnect.String() + ":"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("frames to the worker: %v, want %v", got, want)
	}
	// A DISCONNECT goes at most once.
	c.mu.Lock()
	ex.lost = false
	ex.clientGoneLocked()
	c.mu.Unlock()
	if n := bytes.Count(w.wbuf, []byte{0x92, byte(protocol.TypeDisconnect)}); n != 1 {
		t.Fatalf("%d DISCONNECT frames", n)
	}
}

// queuedFrames decodes the frames queued for the worker (w.wbuf).
func queuedFrames(t *testing.T, w *workerConn) []protocol.Frame {
	t.Helper()
	var frames []protocol.Frame
	for b := w.wbuf; len(b) > 0; {
		n := int(binary.BigEndian.Uint32(b))
		var f protocol.Frame
		if err := f.Decode(b[4 : 4+n]); err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
		b = b[4+n:]
	}
	return frames
}

// frameTypes names the frames queued for the worker, a CREDIT with its increment.
func frameTypes(t *testing.T, w *workerConn) []string {
	t.Helper()
	var got []string
	for _, f := range queuedFrames(t, w) {
		s := f.Type.String()
		if f.Type == protocol.TypeCreditG2W {
			s += ":" + strconv.FormatUint(f.Increment, 10)
		}
		got = append(got, s)
	}
	return got
}

// Response bytes the app sends after the gateway stopped writing them are dropped and their window
// given back (the app must not stall), except after a DISCONNECT: nothing follows it for the sid
// (SPEC §3), and the app's send() raises from then on.
func TestDroppedResponseBytesCreditedUnlessDisconnected(t *testing.T) {
	const window = 1 << 16
	newEx := func() (*exchange, *workerConn) {
		w := &workerConn{window: window}
		ex := &exchange{c: &h1conn{}, w: w, sid: 5, started: true, respWindow: window, remaining: -1}
		return ex, w
	}
	// Dropped for a timeout (--timeout-request: CANCEL, no DISCONNECT): the window goes back.
	ex, w := newEx()
	ex.c.mu.Lock()
	ex.discard = true
	if err := ex.takeWindow(100); err != nil {
		t.Fatal(err)
	}
	ex.c.mu.Unlock()
	if got := strings.Join(frameTypes(t, w), " "); got != protocol.TypeCreditG2W.String()+":100" {
		t.Fatalf("frames to the worker: %q, want one CREDIT of 100", got)
	}
	// The client left: DISCONNECT, and nothing after it.
	ex, w = newEx()
	ex.c.mu.Lock()
	ex.clientGoneLocked()
	for range 2 { // (the whole window: what the worker may send before it learns of the DISCONNECT)
		if err := ex.takeWindow(window / 2); err != nil {
			t.Fatal(err)
		}
	}
	ex.c.mu.Unlock()
	if got := strings.Join(frameTypes(t, w), " "); got != protocol.TypeDisconnect.String() {
		t.Fatalf("frames to the worker: %q, want the DISCONNECT alone", got)
	}
}

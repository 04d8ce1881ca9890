package gateway

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// errWorkerGone is returned when a stream is opened on, or a frame sent to, a failed worker connection.
var errWorkerGone = errors.New("worker connection is closed")

// streamHandler receives one stream's frames from a worker connection's reader goroutine. The methods
// must not block: that goroutine serves every stream of the worker. An error return means the worker
// broke the protocol for this stream; the connection is then failed (and the worker replaced).
type streamHandler interface {
	responseStart(f *protocol.Frame) error
	responseBody(f *protocol.Frame) error
	credit(n uint64)
	end(outcome uint64, message []byte)
	trailers(f *protocol.Frame) error
	pathsend(f *protocol.Frame) error
	earlyHint(f *protocol.Frame) error
	wsAccept(f *protocol.Frame) error
	wsSend(f *protocol.Frame) error
	wsClose(f *protocol.Frame) error
	// workerLost is called once if the worker connection fails while the stream is open.
	workerLost()
	// flush is called at the end of a batch of frames, for handlers that asked for it (markDirty).
	flush()
	// goingAway closes the stream if it is an open WebSocket: the worker is being replaced.
	goingAway()
}

// workerConn is the gateway's end of one worker's socket. It has exactly one reader goroutine
// (readLoop: decodes frames and hands them to stream handlers) and one writer goroutine (writeLoop:
// writes the frames others queue, many per syscall). Nothing else touches the socket.
type workerConn struct {
	id       int
	pid      int
	nc       *net.UnixConn
	sock     *rawSock // nc's reads and writes (both goroutines')
	reader   *protocol.Reader
	window   int
	maxPiece int // largest body piece per frame
	// smallWindow: the worker's HELLO features has "small-window": it honours FlagSmallWindow.
	smallWindow bool

	// ring is the body ring when the worker uses one (SPEC §6), else nil: its G→W half is used under
	// wmu, its W→G half by the reader goroutine, which unmaps it when it ends.
	ring *bodyRing

	wmu    sync.Mutex
	wbuf   []byte // frames queued for the writer
	wspare []byte // the other buffer of the pair, while not being written
	wdead  bool
	wkick  chan struct{}

	smu       sync.Mutex
	streams   map[uint32]streamHandler
	lastSID   uint32
	sdead     bool
	inflight  atomic.Int64 // open streams: the pool routes to the least busy worker
	served    atomic.Int64 // streams ever opened
	maxServed int64        // after this many streams onLimit is called once (0: never)
	retiring  atomic.Bool  // past maxServed: routed to only when no other worker is ready
	stopping  atomic.Bool  // SHUTDOWN was sent: a stream that ends unanswered was cut by it (503)
	onLimit   func()

	lastPong atomic.Int64 // token (unix nanoseconds of its PING) of the last PONG
	pingSent int64        // health loop only: token of the outstanding PING, 0 if none

	dirty []streamHandler // reader goroutine only: handlers to flush at the end of the batch

	// Reader goroutine only: borrowing is set while a RESPONSE_BODY_RING's piece is dispatched
	// (HTTP/1.1 exchanges then write it from the ring instead of copying it); ringUnreleased is the
	// end of the last piece taken, released after the batch's flush (flushDirty).
	borrowing      bool
	ringUnreleased uint64

	done     chan struct{} // closed when the connection has failed
	failOnce sync.Once
	failErr  error
}

func newWorkerConn(id, pid int, nc *net.UnixConn, sock *rawSock, r *protocol.Reader, window, maxFrame int) *workerConn {
	piece := maxFrame - protocol.BodyOverhead
	if window < piece {
		piece = window
	}
	return &workerConn{
		id: id, pid: pid, nc: nc, sock: sock, reader: r, window: window, maxPiece: piece,
		wbuf:    make([]byte, 0, 64<<10),
		wspare:  make([]byte, 0, 64<<10),
		wkick:   make(chan struct{}, 1),
		streams: make(map[uint32]streamHandler),
		done:    make(chan struct{}),
	}
}

// start launches the reader and writer goroutines; they end when the connection fails.
func (w *workerConn) start() {
	go w.readLoop()
	go w.writeLoop()
}

// open registers h as a new stream and returns its id.
func (w *workerConn) open(h streamHandler) (uint32, error) {
	w.smu.Lock()
	defer w.smu.Unlock()
	if w.sdead {
		return 0, errWorkerGone
	}
	sid := w.lastSID
	for {
		sid++
		if sid == 0 {
			continue
		}
		if _, busy := w.streams[sid]; !busy {
			break
		}
	}
	w.lastSID = sid
	w.streams[sid] = h
	w.inflight.Add(1)
	if n := w.served.Add(1); n == w.maxServed && w.onLimit != nil {
		w.retiring.Store(true)
		w.onLimit()
	}
	return sid, nil
}

// lock and unlock bracket appending frames to the write buffer (w.wbuf) without a closure per frame;
// unlock wakes the writer.
func (w *workerConn) lock() bool {
	w.wmu.Lock()
	if w.wdead {
		w.wmu.Unlock()
		return false
	}
	return true
}

func (w *workerConn) unlock() {
	w.wmu.Unlock()
	select {
	case w.wkick <- struct{}{}:
	default:
	}
}

// goingAway closes the connection's open WebSockets (1012 to both sides): the worker is retiring.
func (w *workerConn) goingAway() {
	w.smu.Lock()
	handlers := make([]streamHandler, 0, len(w.streams))
	for _, h := range w.streams {
		handlers = append(handlers, h)
	}
	w.smu.Unlock()
	for _, h := range handlers { // (outside smu: a handler takes its connection's lock)
		h.goingAway()
	}
}

func (w *workerConn) sendHTTPRequest(sid uint32, r *protocol.HTTPRequest) error {
	if !w.lock() {
		return errWorkerGone
	}
	var buf []byte
	var err error
	if body := r.Body; w.ring != nil && len(body) >= ringMinPiece {
		// The first piece goes after the scope, as a body piece of its own (in the ring if it fits).
		more := r.MoreBody
		r.Body, r.MoreBody = nil, true
		buf, err = protocol.AppendHTTPRequest(w.wbuf, sid, r)
		r.Body, r.MoreBody = body, more
		if err == nil {
			buf = w.appendBodyLocked(buf, sid, body, more)
		}
	} else {
		buf, err = protocol.AppendHTTPRequest(w.wbuf, sid, r)
	}
	if err == nil {
		w.wbuf = buf
	}
	w.unlock()
	return err
}

func (w *workerConn) sendBody(sid uint32, body []byte, more bool) {
	if w.lock() {
		w.wbuf = w.appendBodyLocked(w.wbuf, sid, body, more)
		w.unlock()
	}
}

// appendBodyLocked appends a request-body piece: REQUEST_BODY_RING when it is large and the ring has
// room for it, REQUEST_BODY otherwise. The caller holds wmu.
func (w *workerConn) appendBodyLocked(dst []byte, sid uint32, body []byte, more bool) []byte {
	if w.ring != nil && len(body) >= ringMinPiece {
		if pos, ok := w.ring.put(body); ok {
			return protocol.AppendBodyRing(dst, protocol.TypeRequestBodyRing, sid, pos, uint64(len(body)), more)
		}
	}
	return protocol.AppendRequestBody(dst, sid, body, more)
}

func (w *workerConn) sendDisconnect(sid uint32) {
	if w.lock() {
		w.wbuf = protocol.AppendDisconnect(w.wbuf, sid)
		w.unlock()
	}
}

func (w *workerConn) sendCredit(sid uint32, n uint64) {
	if w.lock() {
		w.wbuf = protocol.AppendCredit(w.wbuf, protocol.TypeCreditG2W, sid, n)
		w.unlock()
	}
}

func (w *workerConn) sendWSConnect(sid uint32, c *protocol.WSConnect) error {
	if !w.lock() {
		return errWorkerGone
	}
	buf, err := protocol.AppendWSConnect(w.wbuf, sid, c)
	if err == nil {
		w.wbuf = buf
	}
	w.unlock()
	return err
}

func (w *workerConn) sendWSMessage(sid uint32, text bool, data []byte) {
	if w.lock() {
		w.wbuf = protocol.AppendWSMessage(w.wbuf, protocol.TypeWSReceive, sid, text, data)
		w.unlock()
	}
}

func (w *workerConn) sendWSClose(t protocol.Type, sid uint32, code int, reason string) {
	if w.lock() {
		w.wbuf = protocol.AppendWSClose(w.wbuf, t, sid, code, reason)
		w.unlock()
	}
}

func (w *workerConn) sendShutdown(grace time.Duration) {
	w.stopping.Store(true)
	if w.lock() {
		w.wbuf = protocol.AppendShutdown(w.wbuf, uint64(grace/time.Millisecond))
		w.unlock()
	}
}

func (w *workerConn) sendCancel(sid uint32) {
	if w.lock() {
		w.wbuf = protocol.AppendCancel(w.wbuf, sid)
		w.unlock()
	}
}

func (w *workerConn) sendPing(token uint64) {
	if w.lock() {
		w.wbuf = protocol.AppendPing(w.wbuf, protocol.TypePing, token)
		w.unlock()
	}
}

func (w *workerConn) writeLoop() {
	for {
		select {
		case <-w.wkick:
		case <-w.done:
			return
		}
		// Let the goroutines that are ready to queue frames do so first: one write (and one wake-up
		// of the worker) then carries them all.
		runtime.Gosched()
		w.wmu.Lock()
		buf := w.wbuf
		w.wbuf = w.wspare[:0]
		w.wspare = nil
		w.wmu.Unlock()
		if len(buf) > 0 {
			if _, err := w.sock.Write(buf); err != nil {
				w.fail(fmt.Errorf("write to worker %d: %w", w.id, err))
				return
			}
		}
		if cap(buf) > 4<<20 {
			buf = make([]byte, 0, 64<<10) // do not keep a burst's buffer forever
		}
		w.wmu.Lock()
		w.wspare = buf[:0]
		w.wmu.Unlock()
	}
}

func (w *workerConn) readLoop() {
	defer w.closeRing()
	var f protocol.Frame
	for {
		payload, err := w.reader.Next()
		if err != nil {
			w.flushDirty()
			w.fail(fmt.Errorf("read from worker %d: %w", w.id, err))
			return
		}
		if err := f.Decode(payload); err != nil {
			w.flushDirty()
			w.fail(fmt.Errorf("worker %d sent a bad frame: %w", w.id, err))
			return
		}
		if err := w.dispatch(&f); err != nil {
			w.flushDirty()
			w.fail(fmt.Errorf("worker %d broke the protocol: %w", w.id, err))
			return
		}
		if !w.reader.Ready() {
			w.flushDirty()
		}
	}
}

func (w *workerConn) dispatch(f *protocol.Frame) error {
	switch f.Type {
	case protocol.TypeResponseStart, protocol.TypeResponseBody, protocol.TypeCreditW2G, protocol.TypeEnd,
		protocol.TypeWSAccept, protocol.TypeWSSend, protocol.TypeWSClose,
		protocol.TypeResponseTrailers, protocol.TypeResponsePathsend, protocol.TypeEarlyHint:
	case protocol.TypeResponseBodyRing:
		return w.dispatchRingBody(f)
	case protocol.TypePong:
		w.lastPong.Store(int64(f.Token))
		return nil
	default:
		return fmt.Errorf("unexpected %s frame", f.Type)
	}
	w.smu.Lock()
	h := w.streams[f.Stream]
	if h != nil && f.Type == protocol.TypeEnd {
		delete(w.streams, f.Stream)
	}
	w.smu.Unlock()
	if h == nil {
		return fmt.Errorf("%s frame for stream %d, which is not open", f.Type, f.Stream)
	}
	switch f.Type {
	case protocol.TypeResponseStart:
		return h.responseStart(f)
	case protocol.TypeResponseBody:
		return h.responseBody(f)
	case protocol.TypeCreditW2G:
		h.credit(f.Increment)
	case protocol.TypeEnd:
		w.inflight.Add(-1)
		h.end(f.Outcome, f.Message)
	case protocol.TypeResponseTrailers:
		return h.trailers(f)
	case protocol.TypeResponsePathsend:
		return h.pathsend(f)
	case protocol.TypeEarlyHint:
		return h.earlyHint(f)
	case protocol.TypeWSAccept:
		return h.wsAccept(f)
	case protocol.TypeWSSend:
		return h.wsSend(f)
	case protocol.TypeWSClose:
		return h.wsClose(f)
	}
	return nil
}

// dispatchRingBody handles a RESPONSE_BODY_RING as the RESPONSE_BODY it stands for. Its piece is
// released after the batch (flushDirty): an HTTP/1.1 exchange may hold it until its connection's
// flush (h1conn.borrowed); every other handler copies it before it returns.
func (w *workerConn) dispatchRingBody(f *protocol.Frame) error {
	if w.ring == nil {
		return errors.New("RESPONSE_BODY_RING frame, but the connection has no body ring")
	}
	body, err := w.ring.take(f.RingPos, f.RingLen, uint64(w.maxPiece))
	if err != nil {
		return err
	}
	f.Type, f.Body = protocol.TypeResponseBody, body
	w.borrowing = true
	err = w.dispatch(f)
	w.borrowing = false
	w.ringUnreleased = f.RingPos + f.RingLen // released by flushDirty, once the batch is written
	return err
}

// trimRing trims the body ring's G→W area if it is idle (bodyRing.trimIfIdle); the pool's watch
// loop calls it about once a second.
func (w *workerConn) trimRing() {
	w.wmu.Lock()
	if w.ring != nil && !w.wdead {
		w.ring.trimIfIdle()
	}
	w.wmu.Unlock()
}

// closeRing unmaps the body ring when the reader ends (after fail: wdead is set, so no sender
// touches the ring any more).
func (w *workerConn) closeRing() {
	w.wmu.Lock()
	if w.ring != nil {
		w.ring.close()
		w.ring = nil
	}
	w.wmu.Unlock()
}

// markDirty asks for h.flush at the end of the current batch. Reader goroutine only.
func (w *workerConn) markDirty(h streamHandler) {
	w.dirty = append(w.dirty, h)
}

func (w *workerConn) flushDirty() {
	for i, h := range w.dirty {
		h.flush()
		w.dirty[i] = nil
	}
	w.dirty = w.dirty[:0]
	// Every borrowed ring piece has been written or copied by the flushes: the ring may have them.
	if r := w.ring; r != nil && w.ringUnreleased > r.released {
		r.release(w.ringUnreleased)
	}
}

// abandon ends a stream whose HTTP_REQUEST could not be encoded (a str field that is no UTF-8):
// the worker never heard of it, so the stream is closed here and its handler told as if this
// worker were lost to it alone (502), rather than failing the connection and every stream on it.
// Any goroutine may call it (workerLost flushes by itself; end is the reader goroutine's).
func (w *workerConn) abandon(sid uint32, h streamHandler) {
	w.smu.Lock()
	_, open := w.streams[sid]
	delete(w.streams, sid)
	w.smu.Unlock()
	if open { // (else the connection failed meanwhile, and told it)
		w.inflight.Add(-1)
		h.workerLost()
	}
}

// fail closes the connection once, and tells every open stream that its worker is gone.
func (w *workerConn) fail(err error) {
	w.failOnce.Do(func() {
		w.failErr = err
		w.wmu.Lock()
		w.wdead = true
		w.wmu.Unlock()
		w.smu.Lock()
		w.sdead = true
		lost := make([]streamHandler, 0, len(w.streams))
		for sid, h := range w.streams {
			lost = append(lost, h)
			delete(w.streams, sid)
		}
		w.inflight.Store(0)
		w.smu.Unlock()
		w.nc.Close()
		close(w.done)
		for _, h := range lost {
			h.workerLost()
		}
	})
}

// err returns why the connection failed (nil while it is up).
func (w *workerConn) err() error {
	select {
	case <-w.done:
		return w.failErr
	default:
		return nil
	}
}

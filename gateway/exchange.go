package gateway

import (
	"errors"
	"fmt"
	"time"

	"github.com/asgi-gateway/asgi-gateway/gateway/http1"
	"github.com/asgi-gateway/asgi-gateway/gateway/websocket"
	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// exchange is one HTTP/1.1 request and its response, bridged to one protocol stream of a worker.
// Its methods as a streamHandler run on the worker's reader goroutine; everything mutable is
// guarded by the connection's mutex (c.mu).
//
// States of the response side, in order:
//
//	waiting   dispatched, no RESPONSE_START yet            (!started)
//	streaming head written, body flowing                   (started && !complete)
//	complete  the final body byte is queued for the client (complete)
//
// Orthogonal to those: ended (the worker sent END: the app task finished), lost (the client went away
// or the connection was closed: nothing more is written), and on the request side reqDone (the whole
// request body has been sent to the worker).
type exchange struct {
	c   *h1conn
	w   *workerConn
	sid uint32

	// Fixed at dispatch.
	minor       int
	head        bool // a HEAD request: the response has no body
	keepAlive   bool // the request allows the connection to be reused
	expect      bool // Expect: 100-continue
	startTime   time.Time
	bytesIn     int64         // request-body bytes sent to the worker
	proxied     bool          // the scope's client came from a proxy header: proxyClient
	proxyClient protocol.Addr // (the connection's own client otherwise), for the access log
	method      []byte        // copies for the access log
	target      []byte

	// Guarded by c.mu.
	reqCredit    int64 // request-body bytes the gateway may still send
	reqDone      bool
	continued    bool // 100 Continue written
	started      bool
	headHeld     bool // the head is in c.out, not yet written: it waits for the first body (responseStart)
	headFrom     int  // ... from this offset of c.out
	complete     bool
	ended        bool
	lost         bool
	disconnected bool // DISCONNECT decided (sent, or held by queueing): at most once (SPEC §5)
	// queueing: the connection's goroutine is queueing a frame for the stream outside c.mu (a
	// request-body piece, a WebSocket message: beginQueueLocked .. endQueue). A DISCONNECT or
	// WS_DISCONNECT decided meanwhile is held (held, heldCode, heldReason) and follows the frame:
	// nothing follows either for the stream (SPEC §4).
	queueing         bool
	held             protocol.Type // 0, TypeDisconnect or TypeWSDisconnect
	heldCode         int
	heldReason       string
	failed           bool        // the app's response was invalid; a 500 went out instead
	discard          bool        // the app's further output is dropped (it overran its content-length, or timed out)
	bodyDone         bool        // the final body (or the pathsend file) is queued
	sendingFile      bool        // the body is a pathsend file: queued (c.file) or being written by the drain goroutine
	trailersExpected bool        // the app announced trailers: the response completes with them
	sendTrailers     bool        // ... and they go to the client (chunked, and it sent TE: trailers)
	trailersDropped  bool        // ... but the app's were invalid: the rest are dropped
	teTrailers       bool        // the client sent TE: trailers
	timer            *time.Timer // --timeout-request
	status           int
	bodyAllowed      bool
	chunked          bool
	remaining        int64 // content-length bytes the app still owes; -1 without content-length
	closeAfter       bool  // the connection closes once this response is written
	respWindow       int64 // response-body bytes the worker may still send (checked, not trusted)
	widened          int64 // response window granted beyond W (window), counted in Server.widened until the stream ends
	queued           int64 // response-body bytes queued since the last write to the client
	uncredited       int64 // response-body bytes written but not yet credited back to the worker
	bytesOut         int64
	logPending       bool // the access-log line is due (takeLog)
	logDone          bool // ... and was taken: one line per exchange

	ws *wsState // non-nil for a WebSocket upgrade (ws.go)

	dirty bool // reader goroutine only: already in the worker's dirty list
}

var (
	errStartTwice   = errors.New("RESPONSE_START sent twice")
	errBodyNoStart  = errors.New("RESPONSE_BODY before RESPONSE_START")
	errBodyAfterEnd = errors.New("response body after the final body")
	errWindow       = errors.New("response body beyond the flow-control window")
)

func (ex *exchange) markDirty() {
	if !ex.dirty {
		ex.dirty = true
		ex.w.markDirty(ex)
	}
}

func (ex *exchange) flush() {
	ex.dirty = false
	c := ex.c
	c.mu.Lock()
	c.flushLocked()
	c.mu.Unlock()
}

func (ex *exchange) responseStart(f *protocol.Frame) error {
	c := ex.c
	c.mu.Lock()
	if ex.started {
		c.mu.Unlock()
		return errStartTwice
	}
	if ex.ws != nil && ex.ws.appClosed {
		c.mu.Unlock()
		return errWSState
	}
	if ex.discard { // timed out: a 504 went out instead
		ex.takeWindow(len(f.Body))
		c.mu.Unlock()
		return nil
	}
	ex.started = true
	if err := ex.takeWindow(len(f.Body)); err != nil {
		c.mu.Unlock()
		return err
	}
	ex.trailersExpected = f.Flags&protocol.FlagTrailers != 0
	if !ex.lost {
		from := len(c.out)
		if msg := ex.writeHeadLocked(f.Status, f.Headers); msg != "" {
			ex.failLocked(msg)
			ex.markDirty()
		} else if f.Flags&protocol.FlagNoBodyYet != 0 && len(f.Body) == 0 && f.MoreBody && !c.draining && len(c.borrowed) == 0 {
			// "The protocol server must not start sending the response to the client until it has
			// received at least one Response Body event" (www.rst): the head waits in c.out for the
			// next body frame (or END, which can still replace it: unstartLocked). (A drain
			// goroutine at work writes it anyway.)
			ex.headHeld, ex.headFrom = true, from
		} else {
			ex.bodyLocked(f.Body, f.MoreBody, false)
			ex.markDirty()
		}
	} else if !f.MoreBody {
		ex.complete = true
	}
	log := ex.takeLog()
	c.mu.Unlock()
	if log {
		c.srv.accessLog(ex)
	}
	return nil
}

func (ex *exchange) responseBody(f *protocol.Frame) error {
	c := ex.c
	c.mu.Lock()
	if !ex.started {
		c.mu.Unlock()
		return errBodyNoStart
	}
	if ex.complete && !ex.lost && !ex.failed && !ex.discard {
		c.mu.Unlock()
		return errBodyAfterEnd
	}
	if err := ex.takeWindow(len(f.Body)); err != nil {
		c.mu.Unlock()
		return err
	}
	if !ex.lost && !ex.failed && !ex.discard {
		ex.bodyLocked(f.Body, f.MoreBody, ex.w.borrowing)
		ex.markDirty()
	}
	log := ex.takeLog()
	c.mu.Unlock()
	if log {
		c.srv.accessLog(ex)
	}
	return nil
}

// takeWindow accounts n response-body bytes against the window the worker was given.
func (ex *exchange) takeWindow(n int) error {
	ex.respWindow -= int64(n)
	if ex.respWindow < 0 {
		return errWindow
	}
	if ex.lost || ex.failed || ex.discard {
		// Nobody will write these bytes: give the window straight back so that the app is not
		// stalled (unless the worker was told of a DISCONNECT: nothing follows it, and the app's
		// send() raises from then on).
		ex.uncredited += int64(n)
		ex.creditLocked(false)
	}
	return nil
}

// credit is the worker granting request-body window.
func (ex *exchange) credit(n uint64) {
	c := ex.c
	c.mu.Lock()
	ex.reqCredit += int64(n)
	c.mu.Unlock()
	c.wakeUp()
}

// end is the worker's END: the app's task is over.
func (ex *exchange) end(outcome uint64, message []byte) {
	c := ex.c
	c.srv.inflight.Add(-1)
	c.srv.metrics.InflightDec()
	c.mu.Lock()
	ex.ended = true
	ex.narrowLocked()
	if ex.ws != nil && ex.ws.accepted {
		code := websocket.CloseNormal
		if outcome != protocol.OutcomeOK {
			code = websocket.CloseInternal
		}
		ex.wsEndLocked(code)
		ex.markDirty()
	} else if !ex.lost && !ex.complete {
		if !ex.started || ex.unstartLocked() {
			// The app raised, or returned, before starting its response (or before its first body
			// message, the head still unwritten): 500; or its worker, being replaced, cancelled it
			// past the grace: 503, as the requests a shutdown cuts (Server.Shutdown).
			if ex.w.stopping.Load() {
				c.srv.log.Warn().Uint32("stream", ex.sid).Int("worker", ex.w.id).Bytes("error", message).
					Msg("the worker stopped before the app answered; answering 503")
				ex.gatewayResponseLocked(503)
			} else {
				c.srv.log.Error().Uint32("stream", ex.sid).Int("worker", ex.w.id).Bytes("error", message).
					Msg("the app did not send a response; answering 500")
				ex.gatewayResponseLocked(500)
			}
		} else if ex.sendingFile {
			// The pathsend file is on its way (the drain goroutine completes the response). (Not
			// c.file, which the drain goroutine empties as it starts writing the file: the END
			// that comes while it writes found the response cut.)
		} else {
			// The response is cut short (its body, or the trailers it announced: "the server must
			// wait until it receives" them, www.rst): the client must see an incomplete response,
			// not a truncated one that looks complete, as HTTP/2 resets the stream.
			c.srv.log.Error().Uint32("stream", ex.sid).Int("worker", ex.w.id).Bytes("error", message).
				Msg("the app did not complete its response; cutting the connection")
			ex.cutLocked()
		}
		ex.markDirty()
	}
	log := ex.takeLog()
	c.mu.Unlock()
	c.wakeUp()
	if log {
		c.srv.accessLog(ex)
	}
}

// workerLost: the worker connection failed with this stream open.
func (ex *exchange) workerLost() {
	c := ex.c
	c.srv.inflight.Add(-1)
	c.srv.metrics.InflightDec()
	c.mu.Lock()
	ex.ended = true
	ex.narrowLocked()
	if ex.ws != nil && ex.ws.accepted {
		ex.wsEndLocked(websocket.CloseInternal)
	} else if !ex.lost && !ex.complete {
		if !ex.started || ex.unstartLocked() {
			ex.gatewayResponseLocked(502)
		} else if ex.sendingFile {
			// The pathsend file does not need the worker.
		} else {
			ex.cutLocked()
		}
	}
	c.flushLocked()
	log := ex.takeLog()
	c.mu.Unlock()
	c.wakeUp()
	if log {
		c.srv.accessLog(ex)
	}
}

// unstartLocked takes back a response head that is still held (responseStart) and not written, so
// that the gateway's own response can replace it. False when there is none, or it went out.
func (ex *exchange) unstartLocked() bool {
	if !ex.headHeld || ex.complete {
		return false
	}
	ex.headHeld = false
	ex.c.out = ex.c.out[:ex.headFrom]
	ex.started = false
	return true
}

// writeHeadLocked writes the status line and headers. It returns a non-empty reason when the app's
// response head is invalid (nothing is written then).
func (ex *exchange) writeHeadLocked(status int, headers []protocol.Header) string {
	c := ex.c
	if status < 200 || status > 999 {
		return fmt.Sprintf("invalid status %d in http.response.start", status)
	}
	contentLength := int64(-1)
	hasServer, hasDate, appClose, appUpgrade := false, false, false, false
	for i := range headers {
		name, value := headers[i].Name, headers[i].Value
		if !http1.ValidHeaderName(name) {
			return fmt.Sprintf("invalid response header name %q", name)
		}
		if !http1.ValidHeaderValue(value) {
			return fmt.Sprintf("invalid value for response header %q", name)
		}
		switch {
		case http1.EqualFold(name, "content-length"):
			n, ok := parseContentLength(value)
			if !ok || (contentLength >= 0 && n != contentLength) {
				return fmt.Sprintf("invalid content-length %q in the response", value)
			}
			contentLength = n
		case http1.EqualFold(name, "server"):
			hasServer = true
		case http1.EqualFold(name, "date"):
			hasDate = true
		case http1.EqualFold(name, "connection"):
			if http1.HasToken(value, "close") {
				appClose = true
			}
		case http1.EqualFold(name, "upgrade"):
			appUpgrade = true
		}
	}
	ex.status = status
	// 205 Reset Content: no content, framed as such (RFC 9110 §15.3.6); the app's body is dropped.
	resetContent := status == 205
	ex.bodyAllowed = !resetContent && http1.BodyAllowed(status, ex.methodForBody())
	ex.remaining = -1
	keep := ex.keepAlive && !appClose && !c.srv.isShuttingDown()
	if ex.bodyAllowed {
		switch {
		case contentLength >= 0:
			ex.remaining = contentLength
		case ex.minor >= 1:
			ex.chunked = true
		default:
			keep = false // HTTP/1.0 without a length: the body ends when the connection does
		}
	}
	if !ex.reqDone {
		// The app answers before the request body is all in (it did not read it, or streams back
		// while reading): the connection closes after this response unless the body is then complete,
		// which cannot be known now, so the response says it will close (RFC 9110 §10.1.1 wants the
		// server to say; under Expect: 100-continue the client may still send a body never asked for).
		keep = false
	}
	ex.closeAfter = !keep
	ex.sendTrailers = ex.trailersExpected && ex.chunked && ex.teTrailers

	out := http1.AppendStatusLine(c.out, status)
	if !hasServer && c.srv.cfg.ServerHeader {
		out = append(out, "server: asgi-gateway\r\n"...)
	}
	if !hasDate && c.srv.cfg.DateHeader {
		out = append(out, c.srv.dateLine()...)
	}
	for _, h := range c.srv.extraHeaders {
		out = http1.AppendHeader(out, h.Name, h.Value)
	}
	sentLength := false
	for i := range headers {
		name := headers[i].Name
		if http1.EqualFold(name, "transfer-encoding") || http1.EqualFold(name, "connection") {
			continue // framing and the connection are the server's business (the app's close is honoured)
		}
		if http1.EqualFold(name, "content-length") {
			if status == 204 || resetContent || sentLength {
				// Never on a 204 (RFC 9110 §8.6); a 205 gets its own, 0, below. Equal lines (checked
				// above) go out once: repeated, they are the list "5, 5", which §8.6 forbids forwarding.
				continue
			}
			sentLength = true
		}
		out = http1.AppendHeader(out, name, headers[i].Value)
	}
	if ex.chunked {
		out = append(out, "transfer-encoding: chunked\r\n"...)
	}
	if resetContent {
		out = append(out, "content-length: 0\r\n"...)
	}
	// The connection field is the gateway's (the app's is dropped above, its close honoured); an
	// app's Upgrade gets the "upgrade" option RFC 9110 §7.8 requires beside it.
	var conn string
	if !keep && ex.minor >= 1 {
		conn = "close"
	} else if keep && ex.minor == 0 {
		conn = "keep-alive"
	}
	if appUpgrade {
		if conn == "" {
			conn = "upgrade"
		} else {
			conn += ", upgrade"
		}
	}
	if conn != "" {
		out = append(out, "connection: "...)
		out = append(out, conn...)
		out = append(out, "\r\n"...)
	}
	c.out = append(out, "\r\n"...)
	return ""
}

func (ex *exchange) methodForBody() []byte {
	if ex.head {
		return headMethod
	}
	return nil
}

// bodyLocked queues one http.response.body for the client.
// bodyLocked queues a piece of the response body. borrowed: data is in the worker's body ring,
// valid until the end of the reader's batch (see h1conn.borrowed); otherwise it is copied.
func (ex *exchange) bodyLocked(data []byte, more bool, borrowed bool) {
	c := ex.c
	ex.headHeld = false // a body event: the head goes with it
	if ex.complete {
		return
	}
	if !ex.bodyAllowed {
		// Dropped (HEAD, 204, 304): the window goes back as if written, or an app whose body is
		// larger than the window would wait for credit forever.
		ex.uncredited += int64(len(data))
		ex.creditLocked(false)
	} else if len(data) > 0 {
		if ex.remaining >= 0 && int64(len(data)) > ex.remaining {
			c.srv.log.Error().Uint32("stream", ex.sid).Int64("content_length_left", ex.remaining).Int("body", len(data)).
				Msg("the app sent more body than its content-length; dropping the excess and closing the connection")
			data = data[:ex.remaining]
			ex.closeAfter = true
			if more {
				// The app means to send more still: drop it, and let its send() raise.
				ex.discard = true
				if !ex.ended {
					ex.disconnectLocked()
				}
			}
			more = false
		}
		if ex.remaining >= 0 {
			ex.remaining -= int64(len(data))
		}
		switch {
		case !borrowed && ex.chunked:
			c.out = http1.AppendChunk(c.out, data)
		case !borrowed:
			c.out = append(c.out, data...)
		case ex.chunked:
			c.out = http1.AppendChunkHead(c.out, len(data))
			c.appendBorrowedLocked(data)
			c.out = append(c.out, '\r', '\n')
		default:
			c.appendBorrowedLocked(data)
		}
		ex.queued += int64(len(data))
		ex.bytesOut += int64(len(data))
	}
	if more {
		return
	}
	ex.bodyDone = true
	if ex.chunked {
		if ex.sendTrailers {
			c.out = append(c.out, "0\r\n"...) // the trailer fields and the final CRLF follow
		} else {
			c.out = http1.AppendLastChunk(c.out)
		}
	}
	if ex.bodyAllowed && ex.remaining > 0 {
		c.srv.log.Error().Uint32("stream", ex.sid).Int64("missing", ex.remaining).
			Msg("the app's body is shorter than its content-length; cutting the connection")
		ex.cutLocked()
		return
	}
	if ex.trailersExpected {
		return // complete with the last RESPONSE_TRAILERS
	}
	ex.completeLocked()
}

// logClient is the client the access log names: the scope's (a trusted proxy's header may have
// named it), or nil.
func (ex *exchange) logClient() *protocol.Addr {
	if ex.proxied {
		return &ex.proxyClient
	}
	return ex.c.client
}

// accessEntry is what the access log says of the exchange.
func (ex *exchange) accessEntry() accessEntry {
	e := accessEntry{client: ex.logClient(), method: ex.method, target: ex.target, version: "1.1",
		status: ex.status, bytes: ex.bytesOut, worker: -1}
	if ex.minor == 0 {
		e.version = "1.0"
	}
	if ex.w != nil {
		e.worker = ex.w.id
	}
	return e
}

// completeLocked: the last byte of the response is queued.
func (ex *exchange) completeLocked() {
	c := ex.c
	ex.complete = true
	ex.headHeld = false // (complete: what is queued goes out)
	if ex.timer != nil {
		ex.timer.Stop()
	}
	ex.logPending = true
	if c.cur == ex {
		c.cur = nil
	}
	if ex.closeAfter || !ex.reqDone {
		// A request body the app did not read makes the connection unusable for another request;
		// the client may still be sending it (a lingering close, see lingerClose).
		if !ex.reqDone {
			ex.closeAfter = true
			c.linger = true
		}
		c.closing = true
	} else {
		c.idleDeadline()
	}
	c.wakeUp() // (after idleDeadline: a watching reader's interruption replaces its deadline)
}

// gatewayResponseLocked answers with the gateway's own short response (500, 502, ...), which closes
// the connection when the request body was not consumed.
func (ex *exchange) gatewayResponseLocked(status int) {
	c := ex.c
	ex.started = true
	ex.status = status
	ex.bytesOut = simpleBodyLen(status, ex.head)
	ex.bodyAllowed = false
	ex.chunked = false
	ex.remaining = -1
	close := !ex.keepAlive || !ex.reqDone || c.srv.isShuttingDown()
	c.out = c.srv.appendSimpleResponse(c.out, ex.minor, status, ex.head, close)
	ex.closeAfter = close
	ex.completeLocked()
}

// failLocked replaces an invalid app response with a 500 and tells the worker the client is gone,
// so the app's further send() calls raise instead of stalling.
func (ex *exchange) failLocked(reason string) {
	ex.c.srv.log.Error().Uint32("stream", ex.sid).Int("worker", ex.w.id).Str("error", reason).Msg("invalid response from the app; answering 500")
	ex.failed = true
	ex.gatewayResponseLocked(500)
	if !ex.ended {
		ex.disconnectLocked()
	}
}

// cutLocked ends the connection abruptly after what is queued, so the client sees the response
// as incomplete.
func (ex *exchange) cutLocked() {
	c := ex.c
	ex.complete = true
	ex.logPending = true
	ex.closeAfter = true
	if ex.timer != nil {
		ex.timer.Stop()
	}
	if c.cur == ex {
		c.cur = nil
	}
	c.closing = true
	c.abort = true
	if !ex.ended && !ex.lost {
		ex.disconnectLocked()
	}
	c.wakeUp()
}

// respWindowGrowth: a response window grows (creditLocked) to this many times the HELLO window W.
const respWindowGrowth = 4

// wideningBudget bounds the window granted beyond W to all streams in flight together (64 wide
// streams with the default W), so that the growth cannot multiply the gateway's memory for clients
// that stall later. A variable for the tests.
var wideningBudget int64 = 48 << 20

// creditLocked returns written (or dropped) response bytes to the worker's window, in batches of
// half the window.
//
// grow: the client's socket took everything queued without blocking. The window then grows to
// respWindowGrowth × W (widenLocked), and the connection's next streams start there (dispatch): a
// client that keeps up gets more of a body through per round trip to the worker (with W = 256 KiB, a
// 1 MiB response goes out in one or two writes instead of four or more). A client whose socket did
// not take W/2 bytes at once stays at W; wideningBudget bounds the rest (SPEC.md §4).
//
// None after a DISCONNECT (SPEC.md §3: nothing else follows it for the sid).
func (ex *exchange) creditLocked(grow bool) {
	if ex.ended || ex.disconnected || (ex.complete && !ex.lost && !ex.failed && !ex.discard) {
		return
	}
	if ex.uncredited >= ex.window()/2 || (ex.uncredited > 0 && (ex.lost || ex.failed || ex.discard)) {
		n := ex.uncredited
		if grow {
			n += ex.widenLocked()
			ex.c.wideWindow = true
		}
		ex.respWindow += n
		ex.w.sendCredit(ex.sid, uint64(n))
		ex.uncredited = 0
	}
}

// widenLocked widens the response window to its limit, if the budget allows, and returns by how
// much (what the caller grants on top of what it returns).
func (ex *exchange) widenLocked() int64 {
	more := respWindowGrowth*int64(ex.w.window) - ex.window()
	if more <= 0 {
		return 0
	}
	srv := ex.c.srv
	if srv.widened.Add(more) > wideningBudget {
		srv.widened.Add(-more)
		return 0
	}
	ex.widened += more
	return more
}

// window is the stream's response window as granted so far: W, widened up to respWindowGrowth × W.
func (ex *exchange) window() int64 { return int64(ex.w.window) + ex.widened }

// narrowLocked returns the stream's widening to the budget: the stream has ended, the worker
// sends no more.
func (ex *exchange) narrowLocked() {
	if ex.widened > 0 {
		ex.c.srv.widened.Add(-ex.widened)
		ex.widened = 0
	}
}

// takeLog reports whether the access-log line is due now (under the connection's lock); the
// caller writes it after unlocking. It is due once per exchange.
func (ex *exchange) takeLog() bool {
	if ex.logPending && !ex.logDone {
		ex.logPending, ex.logDone = false, true
		return true
	}
	return false
}

// statusClientClosed is the status an access-log line (and the metrics) give a request whose
// client left before its response started: nginx's 499, "client closed request". None is sent.
const statusClientClosed = 499

// clientGoneLocked: the client went away; the worker learns it with DISCONNECT. A request whose
// response is not complete is due in the access log now (with its status if it started, else 499,
// and the bytes sent), not when the app ends, which may take long (a stream waiting for events).
func (ex *exchange) clientGoneLocked() {
	if ex.lost {
		return
	}
	if ex.ws != nil {
		ex.wsDisconnectLocked(websocket.CloseAbnormal, "")
		ex.lost = true
		if !ex.ws.accepted && !ex.complete { // (an accepted one was logged with its 101)
			if !ex.started {
				ex.status = statusClientClosed
			}
			ex.logPending = true
		}
		return
	}
	ex.lost = true
	if !ex.complete {
		if !ex.started {
			ex.status = statusClientClosed
		}
		ex.logPending = true
	}
	if !ex.ended && !ex.complete {
		ex.disconnectLocked()
	}
}

// disconnectLocked tells the worker the client is gone (DISCONNECT), at most once; after the frame
// being queued, if any (queueing).
func (ex *exchange) disconnectLocked() {
	if ex.disconnected {
		return
	}
	ex.disconnected = true
	if ex.queueing {
		ex.held = protocol.TypeDisconnect
		return
	}
	ex.w.sendDisconnect(ex.sid)
}

// beginQueueLocked: the connection's goroutine is about to queue a frame for the stream outside
// c.mu; endQueue, after it, sends what was held meanwhile.
func (ex *exchange) beginQueueLocked() { ex.queueing = true }

func (ex *exchange) endQueue() {
	c := ex.c
	c.mu.Lock()
	ex.queueing = false
	switch held := ex.held; {
	case held == protocol.TypeDisconnect && !ex.ended:
		ex.w.sendDisconnect(ex.sid)
	case held == protocol.TypeWSDisconnect && !ex.ended && !ex.ws.appClosed:
		ex.w.sendWSClose(protocol.TypeWSDisconnect, ex.sid, ex.heldCode, ex.heldReason)
	}
	ex.held, ex.heldReason = 0, ""
	c.mu.Unlock()
}

func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

var headMethod = []byte("HEAD")

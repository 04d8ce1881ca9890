package gateway

import (
	"bytes"
	"errors"
	"time"

	"github.com/asgi-gateway/asgi-gateway/gateway/http1"
	"github.com/asgi-gateway/asgi-gateway/gateway/websocket"
	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// closeHandshakeTimeout is how long the gateway waits for the client's close frame after sending its
// own, before it closes the TCP connection anyway.
const closeHandshakeTimeout = 5 * time.Second

// wsState is the WebSocket half of an exchange whose request was an upgrade. Fields are guarded by
// c.mu, except dec, which only the serve goroutine uses.
//
// States: connecting (WS_CONNECT sent, the app has not answered) → open (WS_ACCEPT: 101 written) →
// closing (a close frame was sent, waiting for the client's) → closed (TCP closed). A refusal
// (WS_CLOSE before accept → 403, an HTTP response, END → 500, a WS_ACCEPT the gateway refuses → 500)
// ends it in connecting.
type wsState struct {
	offer        websocket.Offer
	dec          websocket.Decoder
	comp         *websocket.Compressor
	accepted     bool
	refused      bool // the gateway refused the app's accept (500): the worker learns it by DISCONNECT
	closeSent    bool // our close frame is queued: no message goes out after it
	closeRecv    bool // the client's close frame arrived
	appClosed    bool // the app sent websocket.close, or its task ended
	disconnected bool // WS_DISCONNECT decided (sent, or held while a message is queued: exchange.queueing)
	pingPending  bool
	readPaused   bool // the serve goroutine stopped reading: the app's window is full
	timer        *time.Timer
}

var (
	errNotWebSocket = errors.New("WebSocket frame on an HTTP stream")
	errWSState      = errors.New("WebSocket frame out of order")
)

// dispatchWebSocket validates the upgrade, opens a WebSocket stream on a worker and serves it until
// the connection ends (a WebSocket connection never returns to HTTP).
func (c *h1conn) dispatchWebSocket(ex *exchange) bool {
	cfg := &c.srv.cfg
	offer, err := websocket.CheckHandshake(&c.req, cfg.WSPerMessageDeflate)
	if err != nil {
		var he *websocket.HandshakeError
		status := 400
		var extra [][2]string
		if errors.As(err, &he) {
			status, extra = he.Status, he.Header
		}
		c.srv.log.Debug().Err(err).Msg("bad WebSocket handshake")
		c.reject(ex, status, extra...) // (logged, as the gateway's other refusals)
		return false
	}
	// The key aliases the request head in rbuf, which the connection gives back to the pool of read
	// buffers while it waits for the app's accept (readIn): the 101 needs a copy.
	offer.Key = bytes.Clone(offer.Key)
	ws := &wsState{offer: offer}
	ws.dec.MaxMessage = int64(cfg.WSMaxSize)
	ex.ws = ws
	ex.keepAlive = false
	scheme := "ws" // from the connection, or from a trusted proxy's X-Forwarded-Proto
	if c.hr.Scheme == "https" || c.hr.Scheme == "wss" {
		scheme = "wss"
	}
	wc := &c.wsc
	wc.HTTPVersion, wc.Scheme = c.hr.HTTPVersion, scheme
	wc.Path, wc.RawPath, wc.QueryString, wc.RootPath = c.hr.Path, c.hr.RawPath, c.hr.QueryString, c.hr.RootPath
	wc.Headers, wc.Client, wc.Server, wc.TLS = c.hr.Headers, c.hr.Client, c.hr.Server, c.hr.TLS
	wc.Subprotocols = wc.Subprotocols[:0]
	for _, p := range offer.Subprotocols {
		wc.Subprotocols = append(wc.Subprotocols, []byte(p))
	}
	if limit := cfg.LimitConcurrency; limit > 0 && c.srv.inflight.Load() >= int64(limit) {
		// A WebSocket counts toward the limit while open, and a handshake is refused past it, as
		// a request is (and as uvicorn does).
		c.srv.metrics.Overloaded()
		c.reject(ex, 503)
		return false
	}
	w := c.srv.pool.pickWait(c.srv.cfg.AcquireTimeout)
	if w == nil {
		c.srv.metrics.Overloaded()
		c.reject(ex, 503)
		return false
	}
	ex.w = w
	ex.respWindow, ex.reqCredit = int64(w.window), int64(w.window)
	ex.reqDone = true
	sid, err := w.open(ex)
	if err != nil {
		c.reject(ex, 502)
		return false
	}
	ex.sid = sid
	c.srv.inflight.Add(1)
	c.srv.metrics.InflightInc()
	c.srv.openWS.Add(1)
	c.srv.metrics.WSOpened()
	defer func() {
		c.srv.openWS.Add(-1)
		c.srv.metrics.WSClosed()
	}()
	c.mu.Lock()
	c.cur = ex
	c.nc.SetReadDeadline(time.Time{})
	c.idleArmed, c.headArmed = false, false
	c.mu.Unlock()
	if err := w.sendWSConnect(sid, wc); err != nil {
		if !errors.Is(err, errWorkerGone) {
			w.fail(err)
		}
		c.waitIdle()
		return false
	}

	// The handshake is answered by the app: accept, close (403), its own response, or nothing (500).
	// A client that leaves meanwhile is noticed, and the app told (websocket.disconnect, 1006):
	// its receive() may be waiting for just that while it decides. Nothing reads the request head
	// after this (the key was copied): with nothing else buffered, the connection waits without its
	// read buffer (readIn).
	if c.rpos == c.rend {
		c.rpos, c.rend = 0, 0
	}
	if err := c.watchWhile(func() bool { return !ex.started && !ex.lost }); err != nil {
		c.clientGone()
		return false
	}
	c.mu.Lock()
	open := ws.accepted && !ex.lost && !c.closed
	c.mu.Unlock()
	if !open {
		c.waitIdle()
		return false
	}
	c.growForBody()
	for {
		n, ev, err := ws.dec.Next(c.rbuf[c.rpos:c.rend])
		c.rpos += n
		if err != nil {
			code := websocket.CloseProtocolError
			var pe *websocket.ProtocolError
			if errors.As(err, &pe) {
				code = pe.Code
			}
			c.srv.log.Debug().Err(err).Int("code", code).Msg("WebSocket protocol error from the client")
			c.mu.Lock()
			ex.wsDisconnectLocked(code, "")
			ex.wsCloseLocked(code, "")
			c.flushLocked()
			c.mu.Unlock()
			return false
		}
		switch ev.Kind {
		case websocket.EventNone:
			if !c.fill(cfg.WSMaxSize + 64<<10) {
				c.mu.Lock()
				ex.wsDisconnectLocked(websocket.CloseAbnormal, "")
				if ws.closeSent {
					// The closing handshake failed (closeBy passed, or the client went): a reset, as
					// an orderly close would queue our FIN behind output a client that reads nothing
					// never takes, and the connection would stay open on its side.
					c.abort = true
				}
				c.closeLocked()
				c.mu.Unlock()
				return false
			}
		case websocket.EventText, websocket.EventBinary:
			if !c.deliverWSMessage(ex, ev.Kind == websocket.EventText, ev.Data) {
				return false
			}
			if len(ev.Data) > readBufBody {
				ws.dec.Release()
			}
		case websocket.EventPing:
			c.mu.Lock()
			if !ws.closeSent {
				c.out = websocket.AppendPong(c.out, ev.Data)
				c.flushLocked()
				// A client that does not take its pongs gets no more read from it until it does:
				// each ping read would queue one more (RFC 6455 §5.5.3 does not ask for a pong per
				// ping), without bound.
				c.pauseReadsLocked(ws, func() bool { return c.draining && !c.closed })
			} else if !c.draining && len(c.out) == 0 {
				// After our close frame too (RFC 6455 §5.5.2: unless a close frame was received; a
				// pong is a control frame, which §5.5.1 allows after a close), but only while the
				// client takes what we write: reads go on, for its close frame or closeBy.
				c.out = websocket.AppendPong(c.out, ev.Data)
				c.flushLocked()
			}
			c.mu.Unlock()
		case websocket.EventPong:
			c.mu.Lock()
			if ws.pingPending {
				// Our ping is answered: the next one goes an interval from now (as the websockets
				// library's keepalive, which uvicorn uses). (An unsolicited pong changes nothing.)
				ws.pingPending = false
				if ws.timer != nil && c.srv.cfg.WSPingTimeout > 0 && !ws.closeSent {
					ws.timer.Reset(c.srv.cfg.WSPingInterval)
				}
			}
			c.mu.Unlock()
		case websocket.EventClose:
			c.mu.Lock()
			ws.closeRecv = true
			ex.wsDisconnectLocked(ev.Code, string(ev.Data))
			if ws.closeSent {
				c.closing = true
				c.cur = nil
			} else {
				code := ev.Code
				if code == websocket.CloseNoStatus {
					code = 0 // echo an empty close
				}
				ex.wsCloseLocked(code, "")
			}
			c.flushLocked()
			c.mu.Unlock()
			return false
		}
	}
}

// testHookWSDelivering, set by tests, runs between deliverWSMessage's decision and its queueing.
var testHookWSDelivering func(*exchange)

// deliverWSMessage sends a client's message to the app once its window is positive, or drops it
// (after the app closed, or after WS_DISCONNECT: see below). It returns whether to go on reading the
// client. The message is queued outside c.mu (the copy may be large, and the worker's reader takes
// c.mu to answer this connection); a WS_DISCONNECT meanwhile follows it (exchange.queueing).
func (c *h1conn) deliverWSMessage(ex *exchange, text bool, data []byte) bool {
	c.mu.Lock()
	ws := ex.ws
	// Backpressure: the app's window is full.
	c.pauseReadsLocked(ws, func() bool {
		return ex.reqCredit <= 0 && !ex.ended && !ex.lost && !c.closed && !ws.appClosed && !ws.disconnected
	})
	// After the app closed, or after the app was told the client is gone (WS_DISCONNECT: the
	// server's own close for a shutdown or a worker replacement, which the client's messages may
	// cross until its close frame), the client's messages are read (to reach its close frame) and
	// dropped: nothing follows WS_DISCONNECT for the stream (SPEC §4), and the worker grants no
	// window for them.
	ok := !ex.lost && !c.closed && (!ex.ended || ws.closeSent)
	deliver := ok && !ex.ended && !ws.appClosed && !ws.disconnected
	if deliver {
		ex.reqCredit -= int64(len(data))
		ex.bytesIn += int64(len(data))
		ex.reqDone = true
		ex.beginQueueLocked()
	}
	c.mu.Unlock()
	if !deliver {
		return ok
	}
	if testHookWSDelivering != nil {
		testHookWSDelivering(ex)
	}
	ex.w.sendWSMessage(ex.sid, text, data)
	ex.endQueue()
	return ok
}

// pauseReadsLocked waits (c.mu held) while waiting() holds, reading nothing from the client: its
// pongs cannot be seen meanwhile, so the ping timer does not count them (readPaused), and one may
// be waiting unread behind what it sent before (pingPending is cleared after).
func (c *h1conn) pauseReadsLocked(ws *wsState, waiting func() bool) {
	for waiting() {
		ws.readPaused = true
		c.mu.Unlock()
		<-c.wake
		c.mu.Lock()
	}
	if ws.readPaused {
		ws.readPaused = false
		ws.pingPending = false
	}
}

// wsDisconnectLocked tells the app the client is gone (once, and not after the app closed).
func (ex *exchange) wsDisconnectLocked(code int, reason string) {
	ws := ex.ws
	if ws.disconnected || ws.appClosed || ex.ended {
		return
	}
	ws.disconnected = true
	if ex.queueing {
		ex.held, ex.heldCode, ex.heldReason = protocol.TypeWSDisconnect, code, reason
		return
	}
	ex.w.sendWSClose(protocol.TypeWSDisconnect, ex.sid, code, reason)
}

// wsCloseLocked queues our close frame (once) and starts the closing handshake: the connection
// closes when the client's close frame arrives, or after closeHandshakeTimeout.
func (ex *exchange) wsCloseLocked(code int, reason string) {
	c, ws := ex.c, ex.ws
	if ws.timer != nil {
		ws.timer.Stop()
	}
	if !ws.closeSent {
		ws.closeSent = true
		c.out = websocket.AppendClose(c.out, code, reason)
	}
	if c.cur == ex {
		c.cur = nil
	}
	if ws.closeRecv {
		c.closing = true
	} else if c.closeBy.IsZero() {
		c.closeBy = time.Now().Add(closeHandshakeTimeout)
		c.setReadDeadline(c.closeBy) // (or endWatch sets it)
	}
	c.wakeUp()
}

func (ex *exchange) wsAccept(f *protocol.Frame) error {
	c, ws := ex.c, ex.ws
	if ws == nil {
		return errNotWebSocket
	}
	c.mu.Lock()
	if ex.started {
		c.mu.Unlock()
		return errWSState
	}
	ex.started, ex.status = true, 101
	sub := "" // none (nil, or "", which the worker treats as none too)
	if f.HasSubprotocol {
		sub = string(f.Subprotocol)
	}
	switch problem := acceptProblem(f, &ws.offer, sub); {
	case ex.lost:
		ws.accepted = true
	case problem != "":
		ex.failLocked(problem)
		ws.refused = true
		ex.markDirty()
	default:
		extra := make([][2][]byte, 0, len(f.Headers))
		for _, h := range f.Headers {
			if !acceptFieldOfTheApp(h.Name) {
				continue
			}
			extra = append(extra, [2][]byte{h.Name, h.Value})
		}
		c.out = websocket.AppendAccept(c.out, &ws.offer, sub, extra)
		ws.accepted = true
		if ws.offer.Deflate {
			ws.comp = websocket.NewCompressor(&ws.offer.DeflateParams)
			ws.dec.SetDeflate(&ws.offer.DeflateParams)
		}
		if iv := c.srv.cfg.WSPingInterval; iv > 0 {
			ws.timer = time.AfterFunc(iv, ex.pingTick)
		}
		ex.logPending = true
		ex.markDirty()
	}
	log := ex.takeLog()
	c.mu.Unlock()
	c.wakeUp()
	if log {
		c.srv.accessLog(ex)
	}
	return nil
}

// acceptProblem says why the app's websocket.accept (selecting subprotocol sub) must not be sent to
// the client, or "" when it may.
func acceptProblem(f *protocol.Frame, offer *websocket.Offer, sub string) string {
	switch {
	case !validHeaders(f.Headers):
		return "invalid header in websocket.accept"
	case sub != "" && !offer.HasSubprotocol(sub):
		// RFC 6455 section 4.2.2: the server selects one of the client's subprotocols, or none; a
		// client fails the connection on any other (section 4.1).
		return "websocket.accept subprotocol not offered by the client"
	case hasHeader(f.Headers, "sec-websocket-protocol"):
		// ASGI websocket.accept: headers "must not include a header named sec-websocket-protocol";
		// it would select a subprotocol past the check above, or repeat the one selected.
		return "websocket.accept headers include sec-websocket-protocol"
	}
	return ""
}

// acceptFieldOfTheApp reports whether a websocket.accept header may go out in the 101: the fields
// that frame the response or carry the handshake are the gateway's, as writeHeadLocked keeps an
// HTTP response's framing. A 101 has no content (RFC 9110 §8.6 and RFC 9112 §6.1: no
// Content-Length or Transfer-Encoding on a 1xx); Connection and Upgrade are already "Upgrade" and
// "websocket"; a second Sec-WebSocket-Accept, or a Sec-WebSocket-Extensions the gateway did not
// negotiate, would fail the client's handshake (RFC 6455 §4.1).
func acceptFieldOfTheApp(name []byte) bool {
	for _, owned := range [...]string{"content-length", "transfer-encoding", "connection", "upgrade",
		"keep-alive", "sec-websocket-accept", "sec-websocket-extensions"} {
		if http1.EqualFold(name, owned) {
			return false
		}
	}
	return true
}

// hasHeader reports whether hs has a field named name (lowercase), in any case.
func hasHeader(hs []protocol.Header, name string) bool {
	for i := range hs {
		if http1.EqualFold(hs[i].Name, name) {
			return true
		}
	}
	return false
}

// validHeaders checks headers an app gave for the client.
func validHeaders(hs []protocol.Header) bool {
	for i := range hs {
		if !http1.ValidHeaderName(hs[i].Name) || !http1.ValidHeaderValue(hs[i].Value) {
			return false
		}
	}
	return true
}

func (ex *exchange) wsSend(f *protocol.Frame) error {
	c, ws := ex.c, ex.ws
	if ws == nil {
		return errNotWebSocket
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if (!ws.accepted && !ws.refused) || ws.appClosed {
		return errWSState
	}
	if ex.respWindow <= 0 {
		return errWindow
	}
	ex.respWindow -= int64(len(f.Body))
	if ex.lost || ws.refused || ws.closeSent {
		// Dropped. (refused: the worker sent it before it read the DISCONNECT.)
		ex.uncredited += int64(len(f.Body))
		ex.respWindow += ex.uncredited
		ex.w.sendCredit(ex.sid, uint64(ex.uncredited))
		ex.uncredited = 0
		return nil
	}
	c.out = websocket.AppendMessage(c.out, f.Text, f.Body, ws.comp)
	ex.queued += int64(len(f.Body))
	ex.markDirty()
	return nil
}

func (ex *exchange) wsClose(f *protocol.Frame) error {
	c, ws := ex.c, ex.ws
	if ws == nil {
		return errNotWebSocket
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ws.appClosed {
		return errWSState
	}
	ws.appClosed = true
	switch {
	case !ex.started:
		// websocket.close before accept: the handshake is refused with 403.
		if !ex.lost {
			ex.gatewayResponseLocked(403)
			ex.markDirty()
		}
	case ws.accepted:
		if !ex.lost {
			code, reason := wireClose(f.Code, string(f.Message))
			if code == websocket.CloseInternal && f.Code != code {
				c.srv.log.Debug().Uint32("stream", ex.sid).Int("code", f.Code).
					Msg("the app's close code may not be sent in a close frame; sending 1011")
			}
			ex.wsCloseLocked(code, reason)
			ex.markDirty()
		}
	case ws.refused:
		// Sent before the worker read the DISCONNECT.
	default:
		return errWSState
	}
	return nil
}

// wireClose is the close frame to send for the app's websocket.close (code, reason): as given for a
// code an endpoint may send (websocket.ValidCloseCode); for 1005, a close frame without a code (code
// 0 for AppendClose), as SPEC's WS_CLOSE says; for any other, 1011 without a reason, which a worker
// that checks the app's messages never sends.
func wireClose(code int, reason string) (int, string) {
	switch {
	case websocket.ValidCloseCode(code):
		return code, reason
	case code == websocket.CloseNoStatus:
		return 0, ""
	}
	return websocket.CloseInternal, ""
}

// wsEndLocked: the app's task ended (or its worker died) on an open WebSocket; the client gets a close
// frame: 1000 after a normal return, 1011 after an error.
func (ex *exchange) wsEndLocked(code int) {
	ws := ex.ws
	ws.appClosed = true
	if !ex.lost && !ws.closeSent {
		ex.wsCloseLocked(code, "")
	}
}

// pingTick is the keepalive, as the websockets library's (which uvicorn uses): a ping an interval
// (WSPingInterval) after the last pong; a pong missing WSPingTimeout after its ping (0: never) fails
// the connection: a close frame 1011 "keepalive ping timeout" to the client (who may still read it),
// then TCP closed; the app sees 1006. The timer fires for the next ping, or for the pong's deadline.
func (ex *exchange) pingTick() {
	c, ws := ex.c, ex.ws
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || ws.closeSent || ex.lost {
		return
	}
	interval, timeout := c.srv.cfg.WSPingInterval, c.srv.cfg.WSPingTimeout
	if ws.readPaused {
		// We are not reading the client (the app is not receiving): its pong could not be seen.
		ws.pingPending = false
		ws.timer.Reset(interval)
		return
	}
	if ws.pingPending && timeout > 0 {
		c.srv.log.Debug().Uint32("stream", ex.sid).Msg("WebSocket ping timed out; closing")
		ex.wsDisconnectLocked(websocket.CloseAbnormal, "")
		ex.wsCloseLocked(websocket.CloseInternal, "keepalive ping timeout")
		ex.lost = true
		// Closed once the close frame is written: at once, or (over TLS, or to a full socket) by the
		// drain goroutine; a client that takes nothing is cut at closeBy by the reader's deadline.
		// (Closing here dropped the frame the drain goroutine had not written yet.)
		c.closing = true
		c.flushLocked()
		return
	}
	ws.pingPending = true
	c.out = websocket.AppendPing(c.out, nil)
	c.flushLocked()
	if timeout > 0 {
		ws.timer.Reset(timeout) // the pong's deadline (a pong resets the timer to the next ping)
	} else {
		ws.timer.Reset(interval)
	}
}

func (ex *exchange) goingAway() {
	ex.c.mu.Lock()
	ex.goingAwayLocked()
	ex.c.mu.Unlock()
}

// goingAway closes an open WebSocket for shutdown: 1012 (service restart) to both sides.
func (ex *exchange) goingAwayLocked() {
	ws := ex.ws
	if ws == nil || !ws.accepted || ws.closeSent || ex.lost {
		return
	}
	ex.wsDisconnectLocked(websocket.CloseServiceRestart, "")
	ex.wsCloseLocked(websocket.CloseServiceRestart, "")
	ex.c.flushLocked()
}

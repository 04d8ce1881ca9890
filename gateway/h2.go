package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"

	"github.com/asgi-gateway/asgi-gateway/gateway/http1"
	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// TLS and HTTP/2.
//
// With --ssl-certfile the listener is TLS and offers ALPN "h2" and "http/1.1". Each accepted
// connection is handshaken in its own goroutine (serveTLS); "h2" goes to golang.org/x/net/http2's
// server (ServeConn), everything else to the HTTP/1.1 engine (h1conn works on any net.Conn).
//
// The HTTP/2 server calls serveH2Stream, one goroutine per stream, which bridges the stream to one
// protocol stream of a worker. Its streamHandler side (h2stream) runs on the worker's reader goroutine
// and never blocks: it copies each response frame into a queue under h2stream.mu and wakes the stream's
// goroutine, which writes to the client and grants CREDIT afterwards. The queue holds at most the
// response window's bytes (the worker may not send more), plus one head.

const tlsHandshakeTimeout = 10 * time.Second

// tlsState is the server's TLS/HTTP/2 machinery; nil on a plain listener.
type tlsState struct {
	conf       *tls.Config
	hs         *http.Server  // BaseConfig for the HTTP/2 connections; only its Shutdown (GOAWAY) is used
	h2s        *http2.Server // configured with hs: it knows its connections, for the graceful GOAWAY
	serverCert string        // PEM of the certificate the listener sends, for the workers' HELLO; "" for h2c only

	mu    sync.Mutex
	conns map[net.Conn]struct{} // HTTP/2 connections being served
}

// setupTLS loads the certificates and prepares the HTTP/2 server when TLS is configured.
func (s *Server) setupTLS() error {
	if !s.cfg.TLS.Enabled() && !s.cfg.HTTP2Cleartext {
		return nil
	}
	var conf *tls.Config // nil: HTTP/2 over cleartext (h2c) only
	if s.cfg.TLS.Enabled() {
		var err error
		if conf, err = s.cfg.TLS.tlsConfig(); err != nil {
			return err
		}
	}
	hs := &http.Server{
		// x/net decodes no single field longer than its header list limit (MaxHeaderBytes plus
		// padding) and fails the whole connection (COMPRESSION_ERROR) on one: a 17 KB cookie would
		// reset every stream of the connection. It gets room for h2HeaderRoom times the limit, and
		// buildH2Scope answers a section over the limit with 431, for that stream alone.
		MaxHeaderBytes: s.cfg.Limits.MaxHeaderBytes * h2HeaderRoom,
		IdleTimeout:    s.cfg.idleTimeout(),
		ErrorLog:       log.New(h2LogWriter{s}, "", 0),
	}
	// IdleTimeout: with keep-alive off (0), x/net would read 0 as no limit; an HTTP/2 connection
	// cannot be limited to one request, so it gets the bound its first request has (idleTimeout).
	//
	// MaxConcurrentStreams: each stream may hold up to the worker window W (256 KiB) of response the
	// client has not taken (the worker sends within W whatever the client's own windows), so a
	// client that grants no window holds streams × W of gateway memory per connection: 100 streams
	// (nginx has 128, Apache 100; x/net's default is 250) bound that to 25 MiB.
	h2s := &http2.Server{IdleTimeout: s.cfg.idleTimeout(), MaxReadFrameSize: 16384, // RFC 9113's default frame size
		MaxConcurrentStreams: h2MaxStreams,
		WriteByteTimeout:     writeTimeout} // a client that takes no byte for this long is dropped, as over HTTP/1.1
	if err := http2.ConfigureServer(hs, h2s); err != nil {
		return err
	}
	s.tls = &tlsState{conf: conf, hs: hs, h2s: h2s, serverCert: serverCertPEM(conf), conns: make(map[net.Conn]struct{})}
	if conf != nil {
		s.scheme = "https"
	}
	return nil
}

// h2LogWriter sends the HTTP/2 server's own log lines (broken clients, mostly) to the debug log.
type h2LogWriter struct{ s *Server }

func (w h2LogWriter) Write(p []byte) (int, error) {
	w.s.log.Debug().Str("error", strings.TrimSpace(string(p))).Msg("http2 server")
	return len(p), nil
}

// h2ConnKey carries a connection's addresses in its HTTP/2 streams' contexts.
type h2ConnKey struct{}

type h2ConnInfo struct {
	client, server *protocol.Addr
	trustedPeer    bool              // the peer may set proxy headers
	tls            *protocol.TLSInfo // the TLS extension's data; nil for h2c
}

// serveTLS handshakes an accepted connection and serves it with HTTP/2 or HTTP/1.1.
func (s *Server) serveTLS(nc net.Conn) {
	tc := tls.Server(withRawIO(nc), s.tls.conf)
	tc.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		s.log.Debug().Err(err).Str("client", nc.RemoteAddr().String()).Msg("TLS handshake failed")
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		c := newH1Conn(s, tc, "https")
		c.tls = connTLSInfo(tc)
		if !s.track(c) {
			tc.Close()
			return
		}
		c.serve()
		return
	}
	s.serveH2Conn(tc, nc)
}

// serveH2Conn serves an HTTP/2 connection (over TLS, or h2c with prior knowledge) until it ends;
// raw is the underlying connection, for the peer's address.
func (s *Server) serveH2Conn(c, raw net.Conn) {
	if !s.trackH2(c) {
		c.Close()
		return
	}
	defer s.untrackH2(c)
	client, server := addrsOf(raw)
	info := &h2ConnInfo{client: client, server: server, trustedPeer: s.trusted.trustsPeer(raw), tls: connTLSInfo(c)}
	ctx := context.WithValue(context.Background(), h2ConnKey{}, info)
	s.tls.h2s.ServeConn(newH2Guard(c), &http2.ServeConnOpts{
		Context:    ctx,
		BaseConfig: s.tls.hs,
		Handler:    http.HandlerFunc(s.serveH2Stream),
	})
	c.Close()
}

// h2Preface opens every HTTP/2 connection (RFC 9113 §3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// replayConn is a connection whose first reads return bytes already read from it.
type replayConn struct {
	net.Conn
	pending []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

func (s *Server) trackH2(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting.Load() {
		return false
	}
	s.connWG.Add(1)
	s.tls.mu.Lock()
	s.tls.conns[nc] = struct{}{}
	s.tls.mu.Unlock()
	return true
}

func (s *Server) untrackH2(nc net.Conn) {
	s.tls.mu.Lock()
	delete(s.tls.conns, nc)
	s.tls.mu.Unlock()
	s.connWG.Done()
}

// shutdownTLS starts the graceful shutdown of the HTTP/2 connections: GOAWAY, so that clients open no
// new streams; each connection closes when its last stream is done.
func (s *Server) shutdownTLS() {
	if s.tls == nil {
		return
	}
	broadcast := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.tls.hs.Shutdown(ctx) // no listener or conn of its own: this runs the GOAWAY hook and returns
	}
	broadcast()
	// A connection tracked just before shutdown may register with the HTTP/2 server just after the
	// first GOAWAY broadcast: send it again.
	time.AfterFunc(100*time.Millisecond, broadcast)
}

// closeTLSConns closes the HTTP/2 connections that outlived the graceful shutdown timeout.
func (s *Server) closeTLSConns() {
	if s.tls == nil {
		return
	}
	s.tls.mu.Lock()
	for nc := range s.tls.conns {
		nc.Close()
	}
	s.tls.mu.Unlock()
}

var (
	errH2WebSocketFrame = errors.New("WebSocket frame on an HTTP/2 request stream")
	errH2Content        = errors.New("response body beyond its content-length")
)

// h2stream is one HTTP/2 request bridged to one worker stream. Its streamHandler methods run on the
// worker's reader goroutine; the stream's goroutine (serveH2Stream) and its request-body pump read
// what they leave under mu.
type h2stream struct {
	s   *Server
	w   *workerConn
	sid uint32
	// due: the end of --timeout-request (zero: none). The app's task is cancelled then if it still
	// runs, also after the client left (cancelLate).
	due time.Time

	wake chan struct{} // the stream goroutine's wake-up (capacity 1)
	cond sync.Cond     // on mu: the body pump waits for credit

	mu          sync.Mutex
	events      []h2event // response frames not yet written, in order
	reqCredit   int64     // request-body bytes the gateway may still send
	reqDone     bool      // the final request-body frame was sent
	started     bool      // RESPONSE_START received
	final       bool      // the final response-body piece received
	ended       bool      // END received, or the worker was lost: the sid is closed
	lost        bool      // the worker connection failed
	outcome     uint64
	message     string
	gone        bool  // nobody writes to the client any more (it left, or the response is over)
	trailersOK  bool  // the request advertised http.response.trailers (the client sent TE: trailers)
	trailing    bool  // the app announced trailers in http.response.start
	bodySeen    bool  // a response-body byte, or the final body message, came from the worker
	fileSent    bool  // a pathsend came (the whole body)
	trailed     bool  // the final trailers came
	readFailed  bool  // reading the request body failed (timeout, reset)
	tooLarge    bool  // the request body went over --limit-request-body
	discSent    bool  // DISCONNECT sent
	cancelSent  bool  // CANCEL sent (--timeout-request)
	completed   bool  // the response is complete (the handler returns without a cut)
	respWindow  int64 // response-body bytes the worker may still send (checked, not trusted)
	uncredited  int64 // response-body bytes written (or dropped) and not yet credited back
	windowBatch int64
	// windowSize is the stream's response window when all is credited: it starts at
	// protocol.SmallWindow (FlagSmallWindow) and doubles with each CREDIT up to the worker's W,
	// so that a client that takes nothing costs the gateway 32 KiB per stream, not W.
	windowSize int64
}

// h2event is one response frame, copied out of the worker's read buffer.
type h2event struct {
	kind    h2EventKind
	status  int
	headers []protocol.Header // the head's, or trailers
	body    []byte
	more    bool     // more body (body, start), more trailers (trailers)
	held    bool     // start: a start alone before the app's first body (FlagNoBodyYet): held until the next event
	links   [][]byte // early hint
	path    string   // pathsend
}

type h2EventKind uint8

const (
	h2Body h2EventKind = iota
	h2Start
	h2Trailers
	h2Pathsend
	h2EarlyHint
)

func (st *h2stream) signal() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
	st.cond.Broadcast()
}

// takeLocked accounts n response-body bytes against the window and reports whether they are to be
// queued (false: nobody will write them; their window is given straight back).
func (st *h2stream) takeLocked(n int, more bool) (bool, error) {
	st.respWindow -= int64(n)
	if st.respWindow < 0 {
		return false, errWindow
	}
	if !more {
		st.final = true
	}
	if st.gone {
		st.uncredited += int64(n)
		st.creditLocked(true)
		return false, nil
	}
	return true, nil
}

// creditLocked returns written or dropped response bytes to the worker in batches (all of them when
// now is set), never after the response body is complete, the sid closed, or a DISCONNECT (SPEC.md
// §3: nothing else follows it for the sid).
func (st *h2stream) creditLocked(now bool) {
	if st.ended || st.final || st.discSent || st.uncredited <= 0 {
		return
	}
	if now || st.uncredited >= st.windowBatch {
		credit := st.uncredited
		if grow := min(st.windowSize, int64(st.w.window)-st.windowSize); grow > 0 {
			// The client takes what it is sent: the window grows toward W.
			credit += grow
			st.windowSize += grow
			st.windowBatch = max(st.windowSize/2, 1)
		}
		st.respWindow += credit
		st.w.sendCredit(st.sid, uint64(credit))
		st.uncredited = 0
	}
}

func (st *h2stream) responseStart(f *protocol.Frame) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.started {
		return errStartTwice
	}
	st.started = true
	st.trailing = f.Flags&protocol.FlagTrailers != 0
	st.bodySeen = len(f.Body) > 0 || !f.MoreBody
	queue, err := st.takeLocked(len(f.Body), f.MoreBody)
	if err != nil || !queue {
		return err
	}
	hs, body := copyHeaders(f.Headers, f.Body)
	held := f.Flags&protocol.FlagNoBodyYet != 0 && len(f.Body) == 0 && f.MoreBody
	st.events = append(st.events, h2event{kind: h2Start, status: f.Status, headers: hs, body: body, more: f.MoreBody, held: held})
	st.signal()
	return nil
}

// copyHeaders copies headers (and extra bytes after them) out of the worker's read buffer, in one
// allocation.
func copyHeaders(headers []protocol.Header, extra []byte) ([]protocol.Header, []byte) {
	size := len(extra)
	for i := range headers {
		size += len(headers[i].Name) + len(headers[i].Value)
	}
	buf := make([]byte, 0, size)
	hs := make([]protocol.Header, len(headers))
	for i := range headers {
		n := len(buf)
		buf = append(buf, headers[i].Name...)
		hs[i].Name = buf[n:len(buf):len(buf)]
		n = len(buf)
		buf = append(buf, headers[i].Value...)
		hs[i].Value = buf[n:len(buf):len(buf)]
	}
	return hs, append(buf, extra...)[len(buf):]
}

func (st *h2stream) responseBody(f *protocol.Frame) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.started {
		return errBodyNoStart
	}
	if (st.final || st.fileSent) && !st.gone {
		return errBodyAfterEnd
	}
	if len(f.Body) > 0 || !f.MoreBody {
		st.bodySeen = true
	}
	queue, err := st.takeLocked(len(f.Body), f.MoreBody)
	if err != nil || !queue {
		return err
	}
	st.events = append(st.events, h2event{body: append([]byte(nil), f.Body...), more: f.MoreBody})
	st.signal()
	return nil
}

func (st *h2stream) credit(n uint64) {
	st.mu.Lock()
	st.reqCredit += int64(n)
	st.mu.Unlock()
	st.cond.Broadcast()
}

func (st *h2stream) end(outcome uint64, message []byte) {
	st.s.inflight.Add(-1)
	st.s.metrics.InflightDec()
	st.mu.Lock()
	st.ended = true
	st.outcome = outcome
	st.message = string(message)
	st.signal()
	st.mu.Unlock()
}

func (st *h2stream) workerLost() {
	st.s.inflight.Add(-1)
	st.s.metrics.InflightDec()
	st.mu.Lock()
	st.ended = true
	st.lost = true
	st.signal()
	st.mu.Unlock()
}

func (st *h2stream) wsAccept(*protocol.Frame) error { return errH2WebSocketFrame }
func (st *h2stream) wsSend(*protocol.Frame) error   { return errH2WebSocketFrame }
func (st *h2stream) wsClose(*protocol.Frame) error  { return errH2WebSocketFrame }
func (st *h2stream) flush()                         {}
func (st *h2stream) goingAway()                     {} // (no WebSockets over HTTP/2)

// trailers queues the app's http.response.trailers; they go out as a HEADERS frame ending the
// stream (net/http's Trailer: prefix) once the last one has come.
func (st *h2stream) trailers(f *protocol.Frame) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.trailing || !st.final || st.trailed {
		return errTrailersOrder
	}
	st.trailed = !f.MoreBody
	if st.gone {
		return nil
	}
	hs, _ := copyHeaders(f.Headers, nil)
	st.events = append(st.events, h2event{kind: h2Trailers, headers: hs, more: f.MoreBody})
	st.signal()
	return nil
}

// pathsend queues the app's http.response.pathsend: the stream goroutine sends the file as the body.
func (st *h2stream) pathsend(f *protocol.Frame) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.started || st.bodySeen {
		return errPathsendOrder
	}
	st.fileSent, st.bodySeen, st.final = true, true, true
	if st.gone {
		return nil
	}
	st.events = append(st.events, h2event{kind: h2Pathsend, path: string(f.Message)})
	st.signal()
	return nil
}

// earlyHint queues a 103 Early Hints response; one that comes after the final head is dropped.
func (st *h2stream) earlyHint(f *protocol.Frame) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.started || st.gone {
		return nil
	}
	links := make([][]byte, len(f.Links))
	for i, l := range f.Links {
		links[i] = append([]byte(nil), l...)
	}
	st.events = append(st.events, h2event{kind: h2EarlyHint, links: links})
	st.signal()
	return nil
}

// disconnectLocked tells the worker the client is gone, once, while the sid is open and the response
// incomplete; the queued bytes are dropped (their window is given back only if no DISCONNECT went).
func (st *h2stream) disconnectLocked() {
	st.gone = true
	for _, ev := range st.events {
		st.uncredited += int64(len(ev.body))
	}
	st.events = nil
	if !st.ended && !st.final && !st.discSent {
		st.discSent = true
		st.w.sendDisconnect(st.sid)
	}
	st.creditLocked(true)
	st.cond.Broadcast()
}

// wrote: n response-body bytes reached the client (or were dropped for HEAD, 204, 304).
func (st *h2stream) wrote(n int) {
	if n == 0 {
		return
	}
	st.mu.Lock()
	st.uncredited += int64(n)
	st.creditLocked(false)
	st.mu.Unlock()
}

// h2Response is what serveH2Stream knows about the response it writes.
type h2Response struct {
	status      int
	bodyAllowed bool
	remaining   int64          // content-length bytes still owed; -1 without content-length
	bytes       int64          // response body bytes written
	bytesIn     int64          // request body bytes sent to the worker (the body pump's, read after it ended)
	client      *protocol.Addr // the scope's client (a trusted proxy's header may have named it)
	worker      int            // the worker's id, for the access log; -1: none (the gateway answered)
}

// h2MaxStreams is the SETTINGS_MAX_CONCURRENT_STREAMS the gateway advertises (setupTLS).
const h2MaxStreams = 100

// serveH2Stream is the http.Handler of every HTTP/2 stream.
func (s *Server) serveH2Stream(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	res := h2Response{remaining: -1, worker: -1}
	var sent *h2stream // the stream, once its request went to a worker
	defer func() {
		// Last, after the access-log line: a stream whose response did not complete (reset by the
		// client, the client gone, a timeout) keeps its handler until the app's task has ended.
		// x/net counts running handlers against MAX_CONCURRENT_STREAMS, and queues, then refuses,
		// a connection's streams past it: a client that opens and resets streams (rapid reset,
		// CVE-2023-44487) cannot keep more of its tasks running in the worker than that. (The app
		// was told: http.disconnect; --timeout-request still cancels it.)
		if st := sent; st != nil {
			st.mu.Lock()
			for !st.ended && !st.completed {
				st.cond.Wait()
			}
			st.mu.Unlock()
		}
	}()
	defer func() {
		if res.status == 0 {
			res.status = statusClientClosed // the client reset the stream before any response
		}
		if s.cfg.AccessLog {
			s.h2AccessLog(r, &res, start)
		}
		s.metrics.ObserveRequest([]byte(r.Method), res.status, res.bytesIn, res.bytes, time.Since(start))
	}()
	var info *h2ConnInfo
	if v, ok := r.Context().Value(h2ConnKey{}).(*h2ConnInfo); ok {
		info = v
	} else {
		info = &h2ConnInfo{}
	}
	var hr protocol.HTTPRequest
	res.client = info.client
	if http1.HasLower(r.Method) {
		s.h2SimpleResponse(w, r, &res, 501) // case-sensitive, as over HTTP/1.1 (http1's errMethodCase)
		return
	}
	if status := s.buildH2Scope(r, info, &hr); status != 0 {
		s.h2SimpleResponse(w, r, &res, status)
		return
	}
	res.client = hr.Client
	if max := s.cfg.MaxBodySize; max > 0 && r.ContentLength > max {
		s.h2SimpleResponse(w, r, &res, 413) // refused from the header, before a byte of the body is read
		return
	}
	for i := range s.cfg.Static {
		if name, ok := s.cfg.Static[i].match(hr.Path[len(hr.RootPath):]); ok {
			s.serveStaticH2(w, r, &res, &s.cfg.Static[i], name)
			return
		}
	}
	if limit := s.cfg.LimitConcurrency; limit > 0 && s.inflight.Load() >= int64(limit) {
		s.metrics.Overloaded() // (counted as over HTTP/1.1)
		s.h2SimpleResponse(w, r, &res, 503)
		return
	}
	wc := s.pool.pickWait(s.cfg.AcquireTimeout)
	if wc == nil {
		s.metrics.Overloaded()
		s.h2SimpleResponse(w, r, &res, 503)
		return
	}
	res.worker = wc.id
	st := &h2stream{s: s, w: wc, wake: make(chan struct{}, 1)}
	st.cond.L = &st.mu
	st.windowSize = int64(wc.window)
	if wc.smallWindow {
		hr.Flags |= protocol.FlagSmallWindow
		st.windowSize = int64(min(wc.window, protocol.SmallWindow))
	}
	st.respWindow = st.windowSize
	st.reqCredit = int64(wc.window)
	st.windowBatch = max(st.windowSize/2, 1)
	st.trailersOK = hr.Flags&protocol.FlagTrailersAllowed != 0
	hasBody := r.ContentLength != 0 // x/net: 0 when the HEADERS frame ended the stream, -1 unknown length
	hr.MoreBody = hasBody
	st.reqDone = !hasBody
	sid, err := wc.open(st)
	if err != nil {
		s.h2SimpleResponse(w, r, &res, 502)
		return
	}
	st.sid = sid
	sent = st
	s.inflight.Add(1)
	s.metrics.InflightInc()
	if err := wc.sendHTTPRequest(sid, &hr); err != nil && !errors.Is(err, errWorkerGone) {
		s.log.Error().Err(err).Msg("cannot encode the request for the worker")
		wc.abandon(sid, st) // this request alone fails (502)
	}
	var pumpDone chan struct{}
	if hasBody {
		pumpDone = make(chan struct{})
		go st.pumpBody(r.Body, http.NewResponseController(w), &res.bytesIn, pumpDone)
	}
	if t := s.cfg.RequestTimeout; t > 0 {
		st.due = time.Now().Add(t)
	}
	defer func() {
		// The handler is over (response complete, client gone, or the stream is reset): whatever the
		// worker still sends is dropped; the body must not be read after ServeHTTP returns.
		st.mu.Lock()
		if !st.due.IsZero() && !st.ended && !st.completed {
			// The app still runs, its response not complete (the client left, the stream was
			// reset): --timeout-request still bounds it. (After a complete response it may run on,
			// as a background task does, as over HTTP/1.1.)
			time.AfterFunc(time.Until(st.due), st.cancelLate)
		}
		st.gone = true
		for _, ev := range st.events {
			st.uncredited += int64(len(ev.body))
		}
		st.events = nil
		st.creditLocked(true)
		st.mu.Unlock()
		st.cond.Broadcast()
		if pumpDone != nil {
			r.Body.Close() // unblocks a pending Read
			<-pumpDone
		}
	}()
	st.run(w, r, &res)
}

// cancelLate cancels the app's task at --timeout-request if it still runs after its handler
// returned (the client left); the worker answers with END.
func (st *h2stream) cancelLate() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.ended && !st.cancelSent {
		st.cancelSent = true
		st.s.log.Warn().Uint32("stream", st.sid).Int("worker", st.w.id).Dur("timeout", st.s.cfg.RequestTimeout).
			Msg("request timed out after its client left; cancelling the app's task")
		st.w.sendCancel(st.sid)
	}
}

// run writes the worker's response to the client until it is complete, cut, or the client leaves.
func (st *h2stream) run(w http.ResponseWriter, r *http.Request, res *h2Response) {
	s := st.s
	ctx := r.Context()
	var timeout <-chan time.Time // --timeout-request
	if !st.due.IsZero() {
		timer := time.NewTimer(time.Until(st.due))
		defer timer.Stop()
		timeout = timer.C
	}
	// A write the client holds back (it does not read, or grants no window) is watched: after
	// writeTimeout without progress, or at --timeout-request, the stream is reset (writeWatch).
	ww := st.watchWrites(w)
	defer ww.stop()
	w = ww
	flusher, _ := w.(http.Flusher)
	var batch []h2event
	// A start alone, before the app's first body (www.rst: the head waits for it), is held here
	// until the next event; an END instead replaces it with 500, a timeout with 504.
	var held h2event
	holding := false
	// release writes the held head; false: it was invalid, and a 500 went out instead.
	release := func() bool {
		holding = false
		ok := st.writeHead(w, r, res, &held)
		held = h2event{}
		return ok
	}
	for {
		st.mu.Lock()
		for len(st.events) == 0 && !st.ended && !st.tooLarge && !st.readFailed {
			st.mu.Unlock()
			select {
			case <-st.wake:
			case <-ctx.Done():
				st.mu.Lock()
				st.disconnectLocked()
				st.mu.Unlock()
				return
			case <-timeout:
				st.timedOut(w, r, res)
				return
			}
			st.mu.Lock()
		}
		select {
		case <-timeout: // a response that keeps streaming past the timeout
			st.mu.Unlock()
			st.timedOut(w, r, res)
			return
		default:
		}
		batch, st.events = st.events, batch[:0]
		ended, lost, outcome, message := st.ended, st.lost, st.outcome, st.message
		trailing := st.trailing
		if st.readFailed {
			// The client stopped sending the body (--timeout-request-body) or broke its stream: the
			// app was told (DISCONNECT); the stream is reset.
			st.disconnectLocked()
			st.mu.Unlock()
			panic(http.ErrAbortHandler)
		}
		if st.tooLarge && len(batch) == 0 {
			st.disconnectLocked()
			st.mu.Unlock()
			if res.status != 0 { // (a head went out: no other response can follow)
				panic(http.ErrAbortHandler)
			}
			s.h2SimpleResponse(w, r, res, 413)
			return
		}
		st.mu.Unlock()

		written := 0
		headOut := false // a head without body went out: flushed (the app sent an empty body to that end)
		complete := false
	events:
		for i := range batch {
			ev := &batch[i]
			if holding && ev.kind != h2EarlyHint && ev.kind != h2Pathsend {
				if !release() {
					return
				}
				headOut = true // (if this event is an empty body, the head goes out alone now)
			}
			switch ev.kind {
			case h2EarlyHint:
				if res.status == 0 {
					s.writeH2EarlyHint(w, st.sid, ev.links)
				}
				*ev = h2event{}
				continue
			case h2Trailers:
				if st.trailersOK {
					s.addH2Trailers(w, st.sid, ev.headers)
				}
				last := !ev.more
				*ev = h2event{}
				if last {
					if st.trailersOK && flusher != nil {
						// The head and body go out before the handler returns: x/net would give a
						// response complete at the return a content-length, and clients that stop
						// reading at that length (curl) never see the trailers after it.
						flusher.Flush()
					}
					complete = true
					break events
				}
				continue
			case h2Pathsend:
				path := ev.path
				*ev = h2event{}
				file, size, err := openPathsend(path)
				if err != nil && holding {
					s.log.Error().Err(err).Uint32("stream", st.sid).Msg("http.response.pathsend: cannot send the file; answering 500")
					s.h2SimpleResponse(w, r, res, 500)
					return
				}
				if holding && !release() { // (the file opened: its head goes out)
					file.Close()
					return
				}
				if err == nil {
					err = st.sendFile(w, file, size, res)
				}
				if err != nil {
					s.log.Error().Err(err).Uint32("stream", st.sid).Msg("http.response.pathsend: cannot send the file; resetting the stream")
					st.cut()
				}
				if !trailing {
					complete = true
					break events
				}
				continue
			case h2Start:
				if ev.held {
					held, holding = *ev, true
					*ev = h2event{}
					continue
				}
				if !st.writeHead(w, r, res, ev) {
					return
				}
				headOut = len(ev.body) == 0
			}
			more := ev.more
			n, err := st.writeBody(w, ev.body, res)
			written += n
			*ev = h2event{} // let the copied bytes go
			if err != nil {
				if errors.Is(err, errH2Content) {
					s.log.Error().Uint32("stream", st.sid).Msg("the app sent more body than its content-length; dropping the excess")
					complete = true
					break
				}
				st.mu.Lock()
				st.disconnectLocked()
				st.mu.Unlock()
				return
			}
			if !more && !trailing {
				complete = true
				break
			}
		}
		if (written > 0 || headOut) && flusher != nil && !complete {
			flusher.Flush()
		}
		st.wrote(written)
		if complete {
			if res.bodyAllowed && res.remaining > 0 {
				s.log.Error().Uint32("stream", st.sid).Int64("missing", res.remaining).
					Msg("the app's body is shorter than its content-length; resetting the stream")
				st.cut()
			}
			st.mu.Lock()
			if !st.final {
				// Body beyond the content-length: the rest of the app's response is not wanted.
				st.disconnectLocked()
			}
			st.completed = true
			st.mu.Unlock()
			if !st.due.IsZero() {
				// What x/net still holds (up to 4 KiB) would go out after the handler returns,
				// beyond the watch: with --timeout-request it goes now, watched.
				ww.Flush()
			}
			return // the handler's return ends the stream (END_STREAM)
		}
		if ended {
			st.mu.Lock()
			pending := len(st.events) > 0
			st.mu.Unlock()
			if pending {
				continue // cannot happen (END is the worker's last frame), but do not lose bytes
			}
			if res.status == 0 { // nothing written: no start, or a held one (with END in its batch)
				status := 500
				if lost {
					status = 502
				} else if st.w.stopping.Load() {
					status = 503 // its worker, being replaced, cancelled it past the grace
					s.log.Warn().Uint32("stream", st.sid).Int("worker", st.w.id).Str("error", message).
						Msg("the worker stopped before the app answered; answering 503")
				} else {
					s.log.Error().Uint32("stream", st.sid).Int("worker", st.w.id).Str("error", message).Uint64("outcome", outcome).
						Msg("the app did not send a response; answering 500")
				}
				s.h2SimpleResponse(w, r, res, status)
				return
			}
			if !lost {
				s.log.Error().Uint32("stream", st.sid).Int("worker", st.w.id).Str("error", message).
					Msg("the app did not complete its response; resetting the stream")
			}
			st.cut()
		}
	}
}

// writeWatch is the ResponseWriter a stream's response goes through: it times each write (in pieces
// of writeChunk, so that progress counts) and each flush, and resets the stream when one has waited
// writeTimeout, or past --timeout-request (x/net's own write deadline is a timer that progress does
// not push back, and that fires whether or not a write waits). stop, before the handler returns,
// ends the watch: the ResponseWriter is x/net's only until then.
type writeWatch struct {
	http.ResponseWriter
	st      *h2stream
	reset   func(time.Time) error // x/net's SetWriteDeadline
	mu      sync.Mutex            // orders the timer's reset with stop
	stopped bool
	since   atomic.Int64 // when the pending write began (unix ns); 0: none
	timer   *time.Timer
}

func (st *h2stream) watchWrites(w http.ResponseWriter) *writeWatch {
	ww := &writeWatch{ResponseWriter: w, st: st}
	if d, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		ww.reset = d.SetWriteDeadline
	}
	return ww
}

func (ww *writeWatch) begin() {
	now := time.Now()
	ww.since.Store(now.UnixNano())
	wait := writeTimeout
	if due := ww.st.due; due.After(now) {
		wait = min(wait, due.Sub(now))
	} // (a write begun past --timeout-request is the gateway's 504, or a cut: writeTimeout bounds it)
	if ww.timer == nil {
		ww.timer = time.AfterFunc(wait, ww.check)
	} else {
		ww.timer.Reset(wait)
	}
}

func (ww *writeWatch) end() { ww.since.Store(0) }

// check runs on the timer: a write still waiting past its bound resets the stream (the write then
// fails, and the stream goroutine ends the exchange).
func (ww *writeWatch) check() {
	ww.mu.Lock()
	defer ww.mu.Unlock()
	since := ww.since.Load()
	if ww.stopped || since == 0 || ww.reset == nil {
		return
	}
	now, began := time.Now(), time.Unix(0, since)
	waited := now.Sub(began)
	due := ww.st.due
	if !due.After(began) {
		due = time.Time{} // (see begin)
	}
	if waited < writeTimeout && (due.IsZero() || now.Before(due)) {
		left := writeTimeout - waited
		if !due.IsZero() {
			left = min(left, due.Sub(now))
		}
		ww.timer.Reset(left) // (a write began after this timer was set)
		return
	}
	ww.st.s.log.Debug().Uint32("stream", ww.st.sid).Dur("waited", waited).Msg("the client does not take the response; resetting the stream")
	ww.reset(aLongTimeAgo) // a past deadline: x/net resets the stream at once
}

func (ww *writeWatch) stop() {
	ww.mu.Lock()
	ww.stopped = true
	ww.mu.Unlock()
	if ww.timer != nil {
		ww.timer.Stop()
	}
}

func (ww *writeWatch) Write(b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		n := min(len(b), writeChunk)
		ww.begin()
		m, err := ww.ResponseWriter.Write(b[:n])
		ww.end()
		total += m
		if err != nil {
			return total, err
		}
		b = b[n:]
	}
	return total, nil
}

func (ww *writeWatch) Flush() {
	if f, ok := ww.ResponseWriter.(http.Flusher); ok {
		ww.begin()
		f.Flush()
		ww.end()
	}
}

// writeHead writes the head of the app's start event; false when it was invalid and a 500 went
// out instead (the stream is then over).
func (st *h2stream) writeHead(w http.ResponseWriter, r *http.Request, res *h2Response, ev *h2event) bool {
	s := st.s
	if reason := s.writeH2Head(w, r, ev.status, ev.headers, res); reason != "" {
		s.log.Error().Uint32("stream", st.sid).Int("worker", st.w.id).Str("error", reason).
			Msg("invalid response from the app; answering 500")
		st.mu.Lock()
		st.disconnectLocked()
		st.mu.Unlock()
		s.h2SimpleResponse(w, r, res, 500)
		return false
	}
	return true
}

// timedOut ends a stream past --timeout-request: 504 if the response has not started (the stream is
// reset if it has), and the worker cancels the app's task; what the app still sends is dropped.
func (st *h2stream) timedOut(w http.ResponseWriter, r *http.Request, res *h2Response) {
	s := st.s
	s.log.Warn().Uint32("stream", st.sid).Int("worker", st.w.id).Dur("timeout", s.cfg.RequestTimeout).
		Msg("request timed out; cancelling the app's task")
	st.mu.Lock()
	if !st.ended && !st.cancelSent {
		st.w.sendCancel(st.sid)
	}
	st.cancelSent = true
	st.discSent = true // CANCEL, not DISCONNECT: the app's task is cancelled
	st.disconnectLocked()
	st.mu.Unlock()
	if res.status != 0 {
		panic(http.ErrAbortHandler)
	}
	s.h2SimpleResponse(w, r, res, 504)
}

// writeH2EarlyHint sends a 103 Early Hints response with one Link field per link.
func (s *Server) writeH2EarlyHint(w http.ResponseWriter, sid uint32, links [][]byte) {
	values := make([]string, 0, len(links))
	for _, l := range links {
		if !http1.ValidHeaderValue(l) {
			s.log.Error().Uint32("stream", sid).Msg("invalid link in http.response.early_hint; dropped")
			return
		}
		values = append(values, string(http1.TrimOWS(l))) // no whitespace around HTTP/2 values (RFC 9113 §8.2.1)
	}
	h := w.Header()
	saved, had := h["Link"]
	h["Link"] = values
	w.WriteHeader(http.StatusEarlyHints) // sent at once; the header map stays for the final response
	if had {
		h["Link"] = saved
	} else {
		delete(h, "Link")
	}
}

// addH2Trailers sets the app's trailers, sent by the HTTP/2 server when the handler returns. An
// invalid one drops them all, as on HTTP/1.1.
func (s *Server) addH2Trailers(w http.ResponseWriter, sid uint32, trailers []protocol.Header) {
	if !validHeaders(trailers) {
		s.log.Error().Uint32("stream", sid).Msg("invalid trailer from the app; trailers dropped")
		return
	}
	h := w.Header()
	var order fieldOrder // (as in writeH2Head: x/net sorts trailers too)
	for _, t := range trailers {
		name := strings.ToLower(string(t.Name))
		if hopByHop[name] || name == "content-length" || name == h2FieldOrder || !httpguts.ValidTrailerHeader(name) {
			continue
		}
		key := http.TrailerPrefix + name
		h[key] = append(h[key], string(http1.TrimOWS(t.Value)))
		order.add(name)
	}
	order.set(h, http.TrailerPrefix+h2FieldOrder)
}

// sendFile writes the (opened) file of an http.response.pathsend as the body, within the app's
// content-length, and closes it.
func (st *h2stream) sendFile(w http.ResponseWriter, f *os.File, size int64, res *h2Response) error {
	defer f.Close()
	if !res.bodyAllowed {
		return nil
	}
	if res.remaining >= 0 && size != res.remaining {
		return fmt.Errorf("the file has %d bytes, the content-length says %d", size, res.remaining)
	}
	n, err := io.Copy(w, io.LimitReader(f, size))
	res.bytes += n
	if res.remaining >= 0 {
		res.remaining -= n
	}
	if err == nil && n != size {
		err = fmt.Errorf("%s: %d of %d bytes read (the file shrank)", f.Name(), n, size)
	}
	return err
}

// cut resets the stream, so that the client sees an incomplete response rather than a short one.
func (st *h2stream) cut() {
	st.mu.Lock()
	st.disconnectLocked()
	st.mu.Unlock()
	panic(http.ErrAbortHandler)
}

// writeBody writes one body piece, within the content-length the app declared.
func (st *h2stream) writeBody(w http.ResponseWriter, data []byte, res *h2Response) (int, error) {
	if len(data) == 0 {
		return 0, nil
	}
	if !res.bodyAllowed {
		return len(data), nil // dropped: HEAD, 204, 304 (their window is still given back)
	}
	var excess error
	if res.remaining >= 0 && int64(len(data)) > res.remaining {
		data, excess = data[:res.remaining], errH2Content
	}
	n, err := w.Write(data)
	res.bytes += int64(n)
	if res.remaining >= 0 {
		res.remaining -= int64(n)
	}
	if err != nil {
		return n, err
	}
	return n, excess
}

// hopByHop are the connection-specific headers HTTP/2 forbids (RFC 9113 §8.2.2); the app's are dropped.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "transfer-encoding": true, "upgrade": true, "te": true,
}

// writeH2Head validates the app's response head and writes it. It returns a non-empty reason when
// the head is invalid (nothing is written then).
func (s *Server) writeH2Head(w http.ResponseWriter, r *http.Request, status int, headers []protocol.Header, res *h2Response) string {
	if status < 200 || status > 999 {
		return "invalid status " + strconv.Itoa(status) + " in http.response.start"
	}
	contentLength := int64(-1)
	hasServer, hasDate, hasType := false, false, false
	for i := range headers {
		name, value := headers[i].Name, headers[i].Value
		if !http1.ValidHeaderName(name) {
			return "invalid response header name " + strconv.Quote(string(name))
		}
		if !http1.ValidHeaderValue(value) {
			return "invalid value for response header " + strconv.Quote(string(name))
		}
		switch {
		case http1.EqualFold(name, "content-length"):
			n, ok := parseContentLength(value)
			if !ok || (contentLength >= 0 && n != contentLength) {
				return "invalid content-length " + strconv.Quote(string(value)) + " in the response"
			}
			contentLength = n
		case http1.EqualFold(name, "server"):
			hasServer = true
		case http1.EqualFold(name, "date"):
			hasDate = true
		case http1.EqualFold(name, "content-type"):
			hasType = true
		}
	}
	h := w.Header()
	// The field order (h2FieldOrder, ",name" each) is HTTP/1.1's (writeHeadLocked): the gateway's
	// server and date, the --header fields, then the app's in its order.
	var order fieldOrder
	if !hasServer && s.cfg.ServerHeader {
		h["Server"] = []string{"asgi-gateway"}
		order.add("server")
	}
	if !hasDate && !s.cfg.DateHeader {
		h["Date"] = nil // suppresses the HTTP/2 server's own date
	} else if !hasDate {
		order.add("date") // (x/net's own, written last)
	}
	if !hasType {
		h["Content-Type"] = nil // no sniffing: the app said nothing, so nothing is sent
	}
	for _, eh := range s.extraHeaders {
		h.Add(string(eh.Name), string(eh.Value))
		order.add(strings.ToLower(string(eh.Name)))
	}
	seenCL := false
	for i := range headers {
		name := strings.ToLower(string(headers[i].Name))
		if hopByHop[name] || name == h2FieldOrder {
			continue
		}
		if name == "trailer" {
			// Under net/http's key "Trailer" it would declare trailers, whose values x/net would
			// then take from the header fields at the end of the stream (an unsolicited trailer
			// section repeating them): under the lowercase key x/net sends it as a field only (RFC
			// 9110 §6.6.2: a sender SHOULD). The app's trailers go out as http.response.trailers.
			h["trailer"] = append(h["trailer"], string(http1.TrimOWS(headers[i].Value)))
			order.add(name)
			continue
		}
		if name == "content-length" {
			if seenCL || status == 204 || status == 205 {
				continue // duplicates with the same value: send one; never on a 204 (RFC 9110 §8.6)
			}
			seenCL = true
		}
		// An HTTP/2 field value has no whitespace around it (RFC 9113 §8.2.1); HTTP/1.1's optional
		// whitespace is left out, as an HTTP/1.1 recipient would.
		h.Add(name, string(http1.TrimOWS(headers[i].Value)))
		order.add(name)
	}
	// x/net writes the fields sorted by name; the guard puts them back in this order (www.rst:
	// "Order must be preserved") and drops the order field (h2order.go).
	order.set(h, h2FieldOrder)
	if status == 205 {
		h["Content-Length"] = []string{"0"} // no content (RFC 9110 §15.3.6); the app's body is dropped
	}
	res.status = status
	res.bodyAllowed = status != 205 && http1.BodyAllowed(status, nil) && r.Method != http.MethodHead
	if res.bodyAllowed {
		res.remaining = contentLength
	}
	w.WriteHeader(status)
	return ""
}

// h2SimpleResponse answers with the gateway's own plain-text response, as appendSimpleResponse does.
func (s *Server) h2SimpleResponse(w http.ResponseWriter, r *http.Request, res *h2Response, status int, extra ...[2]string) {
	text := http.StatusText(status)
	if text == "" {
		text = "Error"
	}
	h := w.Header()
	clear(h)
	for _, x := range extra {
		h.Set(x[0], x[1])
	}
	if s.cfg.ServerHeader {
		h["Server"] = []string{"asgi-gateway"}
	}
	if !s.cfg.DateHeader {
		h["Date"] = nil
	}
	for _, x := range s.extraHeaders {
		h.Add(string(x.Name), string(x.Value))
	}
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["Content-Length"] = []string{strconv.Itoa(len(text))}
	w.WriteHeader(status)
	res.status = status
	if r.Method != http.MethodHead {
		n, _ := io.WriteString(w, text)
		res.bytes += int64(n)
	}
	// x/net would write it once the handler returns, within the client's window, unwatched: on a
	// stream's watched writer it goes now (a client that grants no window is then reset).
	if ww, ok := w.(*writeWatch); ok {
		ww.Flush()
	}
}

// pumpBody sends the request body to the worker within its credit, until the body is done, the
// stream is over, or the handler returns (which closes body, ending a pending Read).
func (st *h2stream) pumpBody(body io.Reader, rc *http.ResponseController, sent *int64, done chan<- struct{}) {
	defer close(done)
	bufp := h2BodyBufs.Get().(*[]byte)
	defer h2BodyBufs.Put(bufp)
	buf := *bufp
	limit := st.s.cfg.MaxBodySize
	var total int64
	for {
		st.mu.Lock()
		for st.reqCredit <= 0 && !st.ended && !st.gone && !st.discSent {
			st.cond.Wait()
		}
		if st.ended || st.gone || st.discSent {
			st.mu.Unlock()
			return
		}
		n := int(min(st.reqCredit, int64(len(buf)), int64(st.w.maxPiece)))
		st.mu.Unlock()

		// --timeout-request-body: the client must keep sending while the app wants the body.
		rc.SetReadDeadline(time.Now().Add(st.s.cfg.BodyTimeout()))
		k, err := body.Read(buf[:n])
		last := err == io.EOF
		if err != nil && !last {
			// The client was too slow, reset the stream or the connection broke: the app is told
			// (DISCONNECT) and the stream goroutine resets the stream.
			st.mu.Lock()
			st.readFailed = true
			st.signal()
			st.mu.Unlock()
			return
		}
		if k == 0 && !last {
			continue
		}
		st.mu.Lock()
		if st.ended || st.gone || st.discSent {
			st.mu.Unlock()
			return
		}
		// Sent under mu so that it can never follow the stream's END (its sid may be reused).
		if total += int64(k); limit > 0 && total > limit {
			st.tooLarge = true
			st.signal()
			st.mu.Unlock()
			return
		}
		*sent += int64(k)
		st.reqCredit -= int64(k)
		st.reqDone = last
		st.w.sendBody(st.sid, buf[:k], !last)
		st.mu.Unlock()
		if last {
			return
		}
	}
}

var h2BodyBufs = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}

// buildH2Scope fills hr with the ASGI http scope of an HTTP/2 request, as buildScope does for HTTP/1.1.
// It returns 0, or the status to answer when the request cannot be bridged.
//
// Header order: net/http keeps no order across header names, so the scope lists host (from
// :authority) first, then the other headers by name (sorted), each name's values in the order
// received. x/net merges several cookie headers into one ("; "-joined) and removes Expect.
func (s *Server) buildH2Scope(r *http.Request, info *h2ConnInfo, hr *protocol.HTTPRequest) int {
	if r.Method == http.MethodConnect {
		// Extended CONNECT (WebSocket over HTTP/2) is not offered; plain CONNECT is a proxy's. 501,
		// as HTTP/1.1 answers (RFC 9110 9.3.6: an origin server may; a 405 would need an Allow
		// field listing the app's methods, which only the app knows).
		return 501
	}
	if h2HeaderListSize(r) > s.cfg.Limits.MaxHeaderBytes+h2HeaderPadding {
		return 431 // RFC 9113 §10.5.1 (as HTTP/1.1 answers a head over the limit)
	}
	target := r.RequestURI // the :path pseudo-header as received
	rawPath, query, _ := strings.Cut(target, "?")
	if rawPath == "" || (rawPath[0] != '/' && rawPath != "*") {
		return 400
	}
	for i := 0; i < len(target); i++ {
		// absolute-path ["?" query] (RFC 9113 §8.3.1, RFC 3986): no fragment (RFC 9110 §7.1: it is
		// the client's), no space or control, no raw non-ASCII byte; as HTTP/1.1's request-target.
		if c := target[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return 400
		}
	}
	if !http1.ValidHost(r.Host) { // :authority (or Host), checked as HTTP/1.1 checks Host (RFC 9113 §8.3.1)
		return 400
	}
	hr.HTTPVersion = "2"
	hr.Method = []byte(r.Method)
	hr.Scheme = s.scheme
	root := s.cfg.RootPath
	hr.RootPath = root
	path, ok := http1.AppendUnescapedPath(append(make([]byte, 0, len(root)+len(rawPath)), root...), []byte(rawPath))
	if !ok {
		return 400
	}
	hr.Path = path
	hr.RawPath = []byte(root + rawPath)
	hr.QueryString = []byte(query)

	names := make([]string, 0, len(r.Header))
	count := 1
	for name, values := range r.Header {
		if name == "Host" || strings.HasPrefix(name, ":") {
			continue
		}
		names = append(names, name)
		count += len(values)
	}
	slices.Sort(names)
	hs := make([]protocol.Header, 0, count)
	if r.Host != "" {
		hs = append(hs, protocol.Header{Name: []byte("host"), Value: []byte(r.Host)})
	}
	for _, name := range names {
		lower := []byte(strings.ToLower(name))
		for _, v := range r.Header[name] {
			hs = append(hs, protocol.Header{Name: lower, Value: []byte(v)})
		}
	}
	if len(r.Trailer) > 0 {
		// x/net moves the request's Trailer field into r.Trailer's keys (the values come after the
		// body): the app sees the field as the client sent it, as over HTTP/1.1.
		keys := make([]string, 0, len(r.Trailer))
		for k := range r.Trailer {
			keys = append(keys, strings.ToLower(k))
		}
		slices.Sort(keys)
		hs = append(hs, protocol.Header{Name: []byte("trailer"), Value: []byte(strings.Join(keys, ", "))})
	}
	hr.Headers = hs
	hr.Client = info.client
	hr.Server = info.server
	hr.TLS = info.tls
	if s.cfg.ProxyHeaders && info.trustedPeer {
		s.applyProxyHeaders(hr, false, new(protocol.Addr))
	}
	hr.Body, hr.Flags = nil, protocol.FlagPathsend|protocol.FlagEarlyHints
	if hasTrailersTE(r.Header["Te"]) {
		hr.Flags |= protocol.FlagTrailersAllowed // HTTP/2 frames trailers always; the client asks for them
	}
	return 0
}

// The HTTP/2 header section limit: x/net decodes up to h2HeaderRoom × MaxHeaderBytes, the gateway
// takes MaxHeaderBytes plus x/net's own padding for ten fields' overhead (as x/net did with
// MaxHeaderBytes alone).
const (
	h2HeaderRoom    = 4
	h2HeaderPadding = 10 * 32
)

// h2HeaderListSize is the request's header list size as RFC 7541 §4.1 counts it (name, value and
// 32 per field), pseudo-header fields included.
func h2HeaderListSize(r *http.Request) int {
	n := len(":method") + len(r.Method) + len(":path") + len(r.RequestURI) + len(":authority") + len(r.Host) +
		len(":scheme") + len("https") + 4*32
	for name, values := range r.Header {
		for _, v := range values {
			n += len(name) + len(v) + 32
		}
	}
	return n
}

// hasTrailersTE reports whether the TE field values list "trailers" (the HTTP/2 server has refused
// any other TE).
func hasTrailersTE(values []string) bool {
	for _, v := range values {
		if http1.HasToken([]byte(v), "trailers") {
			return true
		}
	}
	return false
}

func (s *Server) h2AccessLog(r *http.Request, res *h2Response, start time.Time) {
	if f := s.cfg.AccessFormat; f != nil {
		e := accessEntry{client: res.client, method: []byte(r.Method), target: []byte(r.RequestURI), version: "2",
			status: res.status, bytes: res.bytes, worker: res.worker}
		s.log.Info().Msg(string(f.append(make([]byte, 0, 128), &e, time.Since(start))))
		return
	}
	host, port := "", 0
	if res.client != nil {
		host, port = res.client.Host, res.client.Port
	}
	s.log.Info().Str("client", host).Int("port", port).Str("method", r.Method).Str("path", r.RequestURI).
		Str("proto", "HTTP/2").Int("status", res.status).Int64("bytes", res.bytes).Dur("duration", time.Since(start)).
		Msg("request")
}

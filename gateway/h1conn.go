package gateway

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/asgi-gateway/asgi-gateway/gateway/http1"
	"github.com/asgi-gateway/asgi-gateway/gateway/websocket"
	"github.com/asgi-gateway/asgi-gateway/protocol"
	"golang.org/x/sys/unix"
)

const (
	readBufStart = 4 << 10 // an idle connection without a raw socket (TLS) holds this much
	// readBufBody: grown to this while a request body streams, and the size of the pooled read
	// buffers (readBufs). 64 KiB of body and a head of up to 16 KiB fit in one read, so a 64 KiB body
	// (a common size: clients' buffers) reaches the app as one piece rather than a large one and a
	// tail of a few hundred bytes.
	readBufBody  = 80 << 10
	writeChunk   = 64 << 10 // a slow client's writes go in pieces of this, each with its own deadline
	writeTimeout = 60 * time.Second
)

var continueLine = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// h1conn is one HTTP/1.1 client connection. Its goroutine (serve) owns the read side: it parses
// requests, dispatches each as an exchange, and pumps request bodies within the worker's credit.
// The write side is shared: whoever has response bytes (the worker's reader goroutine, the serve
// goroutine for its own error responses) appends them to out under mu and flushes with a
// non-blocking write; when the client does not take them all, a drain goroutine (one at a time,
// ending when out is empty) finishes the job with blocking writes.
type h1conn struct {
	srv    *Server
	nc     net.Conn
	rc     syscall.RawConn // nil when the connection has no file descriptor (TLS later)
	client *protocol.Addr
	server *protocol.Addr
	scheme string
	tls    *protocol.TLSInfo // the TLS extension's data, set once after the handshake; nil on plain TCP

	trustedPeer bool          // the peer is in --forwarded-allow-ips: proxy headers apply
	proxyClient protocol.Addr // the client a proxy header named, for the current request

	// Read side: the serve goroutine only. On a raw socket, rbuf is nil while nothing is buffered
	// and the client has sent nothing more: the connection waits without a buffer (readIn).
	rbuf       []byte
	rbufPooled bool // rbuf came from readBufs (and goes back to it)
	rpos, rend int
	headAt     int    // where the last parsed head starts in rbuf (c.req aliases it)
	park       []byte // readFd keeps a few unprocessed bytes here while the client is silent
	parked     bool   // rbuf is park (only while readIn waits, or after it failed)
	mayMove    bool   // readIn's caller lets readFd move the unprocessed bytes (park)
	rn         int    // readFd's outcome: bytes read,
	rerr       error  // ... or the error
	rawRead    func(fd uintptr) bool
	req        http1.Request
	hr         protocol.HTTPRequest
	wsc        protocol.WSConnect
	hdrs       []protocol.Header
	pathBuf    []byte
	rawBuf     []byte
	chunked    http1.ChunkedDecoder
	inBody     bool // reading a request body: a read deadline is the body timeout, never stale
	readEOF    bool // the client closed its side cleanly (FIN): maybe only half (see finish)

	mu  sync.Mutex
	cur *exchange // the exchange whose response is pending; nil when idle
	out []byte    // bytes for the client not yet written
	// borrowed are body pieces still in a worker's body ring, each to be written at its offset in
	// out (before out[at:]), so that they reach the client without a copy. They are valid until the
	// worker connection's reader releases them at the end of its batch, after flushing this
	// connection (flushLocked writes them, or copies what the socket did not take into out).
	borrowed []borrowedPiece
	spare    []byte
	draining bool // a drain goroutine owns the socket's writes
	// wideWindow: the client took a grown response window without blocking; the connection's next
	// streams start with it (exchange.creditLocked).
	wideWindow bool
	file       *fileSend // a pathsend body to write after out (by the drain goroutine)
	closing    bool      // close once out is written
	linger     bool      // close in stages (lingerClose): a response to a client that may still be sending
	abort      bool      // ... with a reset, so the client sees an incomplete response
	closed     bool
	staticBody bool // serveStatic is sending a file's body (closeIfIdle lets it finish)
	wake       chan struct{}

	// watchWhile's read, which wakeUp interrupts (watchMu orders that with endWatch).
	watchMu  sync.Mutex
	watching atomic.Bool
	// interrupting (under watchMu): wakeUp set a past read deadline that endWatch has not yet
	// replaced. Another deadline set meanwhile would take its place before the read sees it (the
	// read would then wait for the new one): setReadDeadline leaves it be.
	interrupting bool

	// The read deadline, kept lazily so that a keep-alive request costs no timer update: the
	// keep-alive deadline is armed once and left armed while requests come; when it fires, the
	// reader re-arms it from idleFrom, the end of the last response (see fill).
	idleFrom  time.Time // when the connection last went idle
	idleArmed bool      // the read deadline is idleFrom's keep-alive deadline or an earlier one
	headArmed bool      // the read deadline is a request head's (headDeadline)
	closeBy   time.Time // a WebSocket closing handshake's deadline (wsCloseLocked): no read clears it

	// Scratch for the non-blocking write (avoids a closure per write).
	wsrc      []byte
	wvec      [][]byte     // writev's pieces (flushBorrowedLocked)
	iovecs    []unix.Iovec // wvec as writev takes them (writevFd)
	wn        int
	werr      error
	rawWrite  func(fd uintptr) bool
	rawWritev func(fd uintptr) bool
}

func newH1Conn(srv *Server, nc net.Conn, scheme string) *h1conn {
	c := &h1conn{srv: srv, nc: nc, scheme: scheme, wake: make(chan struct{}, 1)}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.rc = rc
			c.rawWrite = c.writeFd
			c.rawRead = c.readFd
		}
	}
	if c.rc == nil {
		c.rbuf = make([]byte, readBufStart)
	}
	c.client, c.server = addrsOf(nc)
	c.trustedPeer = srv.cfg.ProxyHeaders && srv.trusted.trustsPeer(nc)
	return c
}

// serve runs the connection until the client leaves, an error, or shutdown.
func (c *h1conn) serve() {
	defer c.finish()
	defer func() {
		if r := recover(); r != nil {
			// A bug must cost one connection, not the server.
			c.srv.log.Error().Str("panic", fmt.Sprint(r)).Bytes("stack", debug.Stack()).Msg("connection handler panicked")
			c.mu.Lock()
			c.abort = true
			c.closeLocked()
			c.mu.Unlock()
		}
	}()
	c.mu.Lock()
	c.idleDeadline()
	c.mu.Unlock()
	for {
		if !c.readHead() {
			return
		}
		if !c.waitPipelined() {
			return
		}
		if !c.dispatch() {
			return
		}
	}
}

// readHead reads until c.req holds a complete request head. On a malformed head it answers with the
// parser's status and returns false.
func (c *h1conn) readHead() bool {
	partial := false
	scanned := 0 // bytes after rpos already searched for LF: parsing again is pointless until one arrives
	for {
		if bytes.IndexByte(c.rbuf[c.rpos+scanned:c.rend], '\n') < 0 && c.rend-c.rpos <= c.srv.cfg.Limits.RequestLine() {
			// No new line end yet and no limit reachable: a trickling client costs no re-parse.
			scanned = c.rend - c.rpos
			if c.rend > c.rpos && !partial {
				partial = true
				c.headDeadline()
			}
			if !c.fill(c.srv.cfg.Limits.MaxHeaderBytes + 1024) {
				return false
			}
			continue
		}
		scanned = c.rend - c.rpos
		n, err := http1.ParseHead(c.rbuf[c.rpos:c.rend], &c.req, &c.srv.cfg.Limits)
		if err == nil {
			c.headAt = c.rpos
			c.rpos += n
			return true
		}
		if err != http1.ErrNeedMore {
			var perr *http1.Error
			status := 400
			if errors.As(err, &perr) {
				status = perr.Status
			}
			if c.srv.cfg.HTTP2Cleartext && c.cur == nil && c.rpos == 0 && strings.HasPrefix(h2Preface, string(c.rbuf[:min(c.rend, len(h2Preface))])) {
				// HTTP/2 with prior knowledge (h2c, behind a proxy): the connection goes to the HTTP/2
				// server with the bytes read so far, without this engine's read deadline (keep-alive
				// or head): the HTTP/2 server keeps its own idle time, between streams only.
				c.srv.untrack(c)
				c.nc.SetReadDeadline(time.Time{})
				c.srv.serveH2Conn(&replayConn{Conn: withRawIO(c.nc), pending: append([]byte(nil), c.rbuf[:c.rend]...)}, c.nc)
				return false
			}
			c.srv.log.Debug().Err(err).Str("client", c.nc.RemoteAddr().String()).Msg("bad request")
			if !c.waitIdle() { // responses go out in request order
				return false
			}
			c.mu.Lock()
			// A HEAD request (its request-line parsed) gets no content, even refused (RFC 9110 9.3.2).
			c.out = c.srv.appendSimpleResponse(c.out, 1, status, string(c.req.Method) == "HEAD", true)
			c.closing, c.linger = true, true
			c.flushLocked()
			c.mu.Unlock()
			if c.srv.cfg.AccessLog || c.srv.metrics != nil {
				// A request too, answered by the gateway: logged and counted as its 413 is (with the
				// method and target if its request-line was parsed).
				ex := &exchange{c: c, minor: 1, status: status, startTime: time.Now(),
					bytesOut: simpleBodyLen(status, string(c.req.Method) == "HEAD")}
				if visibleASCII(c.req.Method) && visibleASCII(c.req.Target) {
					// (a refused request-line may hold any byte: none goes into the log unescaped)
					ex.method, ex.target, ex.minor = c.req.Method, c.req.Target, c.req.Minor
				}
				c.srv.accessLog(ex)
			}
			return false
		}
		if !partial && c.rend > c.rpos {
			partial = true
			c.headDeadline()
		}
		if !c.fill(c.srv.cfg.Limits.MaxHeaderBytes + 1024) {
			return false
		}
	}
}

// headDeadline: a request head has started; it must be complete within HeadTimeout (unless an
// exchange is still running, whose response completion sets the deadline).
func (c *h1conn) headDeadline() {
	c.mu.Lock()
	if c.cur == nil {
		c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.HeadTimeout))
		c.idleArmed, c.headArmed = false, true
	}
	c.mu.Unlock()
}

// fill reads more bytes from the client into rbuf, growing it up to max. False: the connection is
// over (EOF, error, idle timeout).
func (c *h1conn) fill(max int) bool {
	if c.rpos == c.rend {
		c.rpos, c.rend = 0, 0
		if c.rc != nil && !c.rbufPooled && len(c.rbuf) <= readBufBody {
			c.rbuf, c.parked = nil, false // (a buffer of its own, empty: back to the pooled ones)
		}
	} else if c.rpos > 0 && c.rend == len(c.rbuf) {
		c.rend = copy(c.rbuf, c.rbuf[c.rpos:c.rend])
		c.rpos = 0
	}
	if c.rbuf != nil && c.rend == len(c.rbuf) {
		size := 2 * len(c.rbuf)
		if size > max {
			size = max
		}
		if size <= len(c.rbuf) {
			// ParseHead reports limits before this; a full buffer here is a parser bug, not a hang.
			return false
		}
		nb := make([]byte, size)
		copy(nb, c.rbuf[:c.rend])
		c.setReadBuf(nb)
	}
	for {
		n, err := c.readIn(true)
		if n > 0 {
			c.rend += n
			return true
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && !c.inBody && c.deadlineStale() {
			continue
		}
		c.readEOF = err == io.EOF
		return false
	}
}

// readBufs holds the read buffers (readBufBody bytes) of raw-socket connections that have nothing
// buffered: such a connection waits for its client without one, and takes one when the client has
// sent something. Idle connections then cost no buffer, and a busy server reads into the few most
// recently used buffers (last in, first out), still in the CPU's cache, rather than one per
// connection. It keeps at most readBufsKept spare buffers.
var readBufs bufStack

const readBufsKept = 128

type bufStack struct {
	mu   sync.Mutex
	free [][]byte
	out  int // buffers handed out and not put back
}

func (s *bufStack) get() []byte {
	s.mu.Lock()
	s.out++
	if n := len(s.free); n > 0 {
		b := s.free[n-1]
		s.free = s.free[:n-1]
		s.mu.Unlock()
		return b
	}
	s.mu.Unlock()
	return make([]byte, readBufBody)
}

// inUse is how many pooled buffers connections hold now.
func (s *bufStack) inUse() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out
}

func (s *bufStack) put(b []byte) {
	s.mu.Lock()
	s.out--
	if len(s.free) < readBufsKept {
		s.free = append(s.free, b)
	}
	s.mu.Unlock()
}

// parkMax: readFd parks at most this many unprocessed bytes (an incomplete head, chunk line or
// WebSocket frame) in a buffer of the connection's own while the client is silent; with more, the
// connection keeps its pooled buffer.
const parkMax = 32 << 10

// readIn reads from the client into rbuf[rend:]. On a raw socket, with nothing buffered or in a
// pooled buffer, it reads with readFd, which gives the buffer back while the socket has nothing to
// read; move (the caller holds no slice of rbuf) lets it also park up to parkMax unprocessed bytes
// meanwhile, moved to the start of a buffer of the connection's own (rpos then changes).
func (c *h1conn) readIn(move bool) (int, error) {
	if c.rc == nil || c.rbuf != nil && !c.rbufPooled && !c.parked {
		return c.nc.Read(c.rbuf[c.rend:])
	}
	c.rn, c.rerr, c.mayMove = 0, nil, move
	if err := c.rc.Read(c.rawRead); err != nil {
		return 0, err
	}
	return c.rn, c.rerr
}

// readFd is readIn's non-blocking read into a pooled buffer; false (the socket has nothing to
// read) makes the runtime wait until it has, the buffer back in the pool meanwhile when it holds
// nothing, or parked bytes in it (see readIn).
func (c *h1conn) readFd(fd uintptr) bool {
	if c.rbuf == nil || c.parked {
		buf := readBufs.get()
		live := copy(buf, c.rbuf[c.rpos:c.rend])
		c.rbuf, c.rbufPooled, c.parked = buf, true, false
		c.rpos, c.rend = 0, live
	}
	for {
		n, err := readRaw(int(fd), c.rbuf[c.rend:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			switch live := c.rend - c.rpos; {
			case c.rend == 0:
				c.releaseReadBuf()
			case !c.mayMove:
				// The bytes before rpos may still be in use (a parsed head): the buffer stays.
			case live == 0:
				c.rpos, c.rend = 0, 0
				c.releaseReadBuf()
			case live <= parkMax:
				if cap(c.park) < live {
					c.park = make([]byte, max(readBufStart, (live+readBufStart-1)/readBufStart*readBufStart))
				}
				c.park = c.park[:cap(c.park)]
				copy(c.park, c.rbuf[c.rpos:c.rend])
				c.releaseReadBuf()
				c.rbuf, c.parked = c.park, true
				c.rpos, c.rend = 0, live
			}
			return false
		case err != nil:
			c.rerr = os.NewSyscallError("read", err)
		case n == 0:
			c.rerr = io.EOF
		default:
			c.rn = n
		}
		return true
	}
}

// releaseReadBuf gives a pooled rbuf, whose bytes nothing needs any more, back to readBufs.
func (c *h1conn) releaseReadBuf() {
	if c.rbufPooled {
		readBufs.put(c.rbuf)
		c.rbuf, c.rbufPooled = nil, false
	}
}

// setReadBuf replaces rbuf by a grown one (allocated, never pooled).
func (c *h1conn) setReadBuf(nb []byte) {
	c.releaseReadBuf()
	c.rbuf, c.parked = nb, false
}

// deadlineStale reports whether the read deadline that just passed is not a reason to close: it
// was the keep-alive deadline of an earlier idle period (while an exchange runs: cleared; after
// more requests: re-armed from the last one's end).
func (c *h1conn) deadlineStale() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	if c.cur != nil {
		c.nc.SetReadDeadline(time.Time{})
		c.idleArmed, c.headArmed = false, false
		return true
	}
	if c.idleArmed {
		if until := c.idleFrom.Add(c.srv.cfg.idleTimeout()); time.Now().Before(until) {
			c.nc.SetReadDeadline(until)
			return true
		}
	}
	return false
}

// fillBody reads more of a request body; a client that sends nothing for BodyReadTimeout is cut
// (false).
func (c *h1conn) fillBody() bool {
	c.mu.Lock()
	if c.closed { // (a lingering close may be reading: its deadline stays)
		c.mu.Unlock()
		return false
	}
	c.inBody = true
	c.idleArmed, c.headArmed = false, false
	c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.BodyTimeout()))
	c.mu.Unlock()
	ok := c.fill(len(c.rbuf))
	c.mu.Lock()
	// (idleDeadline ran meanwhile if the response completed: its deadline stays; so does a
	// lingering close's)
	if !c.idleArmed && !c.closed {
		c.nc.SetReadDeadline(time.Time{})
	}
	c.mu.Unlock()
	c.inBody = false
	return ok
}

// waitIdle waits until the previous response is complete (HTTP/1.1 pipelining keeps order).
func (c *h1conn) waitIdle() bool {
	c.mu.Lock()
	for c.busyLocked() && !c.closed && !c.closing {
		c.mu.Unlock()
		<-c.wake
		c.mu.Lock()
	}
	ok := !c.closed && !c.closing
	c.mu.Unlock()
	return ok
}

// visibleASCII reports whether b is all visible ASCII (no control byte, space or DEL).
func visibleASCII(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// busyLocked reports whether the connection is not ready for the next request: a response is in
// flight, or the last one is not yet all written to the socket (the drain goroutine has the rest).
// A pipelining client that does not read its responses then gets no more of its requests run, so
// that their responses do not pile up in memory (the response window bounds one response only).
func (c *h1conn) busyLocked() bool { return c.cur != nil || c.draining }

// waitPipelined is waitIdle for a request whose head is parsed while the one before it is still in
// flight (pipelined). It watches the client meanwhile (watchWhile), so that a client that leaves
// is noticed as it is behind a lone request (finish): the app in flight is told (http.disconnect)
// and the queued request is dropped. A clean EOF may be a half-close by a client that still reads:
// as in finish, the response in flight gets halfCloseGrace to complete, and the queued request is
// then served.
func (c *h1conn) waitPipelined() bool {
	c.mu.Lock()
	ex := c.cur // nil: the last response is complete, and its end is being written
	if !c.busyLocked() || c.closed || c.closing {
		ok := !c.closed && !c.closing
		c.mu.Unlock()
		return ok
	}
	c.mu.Unlock()
	c.unpoolHead()
	switch err := c.watchWhile(func() bool { return c.busyLocked() && !c.closing }); {
	case err == nil:
		return c.waitIdle()
	case err == io.EOF && ex == nil:
		c.readEOF = true
		return c.waitIdle()
	case err == io.EOF:
		c.readEOF = true
		c.awaitComplete(ex, halfCloseGrace)
		c.mu.Lock()
		if !ex.complete && !c.closed {
			ex.clientGoneLocked()
			c.closeLocked()
		}
		logged := c.curLogLocked()
		c.mu.Unlock()
		if logged != nil {
			c.srv.accessLog(logged)
		}
		return c.waitIdle()
	default:
		c.clientGone()
		return false
	}
}

// unpoolHead: the parsed head in a pooled buffer waits behind a response that may take long. It
// moves, with the bytes after it, to a buffer of the connection's own (with room to read more),
// where it is parsed again (c.req aliases it), and the pooled buffer goes back: a connection that
// pipelines behind a slow request holds what it sent, not a pooled buffer.
func (c *h1conn) unpoolHead() {
	if !c.rbufPooled {
		return
	}
	headLen := c.rpos - c.headAt
	nb := make([]byte, c.rend-c.headAt+readBufStart)
	n := copy(nb, c.rbuf[c.headAt:c.rend])
	var req http1.Request
	if m, err := http1.ParseHead(nb[:headLen], &req, &c.srv.cfg.Limits); err != nil || m != headLen {
		return // (cannot happen: the same bytes parsed before; the head then stays where it is)
	}
	c.releaseReadBuf()
	c.req = req
	c.rbuf, c.rpos, c.rend, c.headAt = nb, headLen, n, 0
}

// watchWhile waits while waiting() holds (checked under c.mu; wakeUp wakes it), reading the
// client meanwhile, so that one that leaves while the serve goroutine waits for the app is
// noticed. It returns nil once waiting() no longer holds (or the connection closed), else the
// client's io.EOF or read error. Bytes read meanwhile (pipelined requests, WebSocket frames) are
// kept; with the read buffer full (a parsed head in it may not move) it waits without reading.
// wakeUp ends the read with a past deadline, under watchMu, which orders it before endWatch
// clears the deadline.
func (c *h1conn) watchWhile(waiting func() bool) error {
	for {
		c.watchMu.Lock()
		c.watching.Store(true) // before the check: a wakeUp after it interrupts the read
		c.watchMu.Unlock()
		c.mu.Lock()
		wait := waiting() && !c.closed
		c.mu.Unlock()
		if !wait || c.rbuf != nil && c.rend == len(c.rbuf) {
			c.endWatch(false)
			c.mu.Lock()
			for waiting() && !c.closed {
				c.mu.Unlock()
				<-c.wake
				c.mu.Lock()
			}
			c.mu.Unlock()
			return nil
		}
		n, err := c.readIn(false) // (a parsed head may be in rbuf: nothing moves)
		c.rend += n
		fired := errors.Is(err, os.ErrDeadlineExceeded)
		c.endWatch(fired)
		if err != nil && !fired {
			return err
		}
	}
}

// endWatch ends watchWhile's read. A deadline wakeUp set, or an earlier keep-alive one that fired
// (stale while the app is at work, see deadlineStale), is cleared: the exchange's end arms the
// keep-alive deadline again. A WebSocket closing handshake's deadline (closeBy) stays.
func (c *h1conn) endWatch(fired bool) {
	c.watchMu.Lock()
	interrupted := !c.watching.Swap(false)
	c.watchMu.Unlock()
	if interrupted || fired {
		c.mu.Lock()
		if !c.closed {
			c.nc.SetReadDeadline(c.closeBy) // (zero: none)
		}
		c.idleArmed, c.headArmed = false, false
		c.watchMu.Lock()
		c.interrupting = false
		c.watchMu.Unlock()
		c.mu.Unlock()
	}
}

// aLongTimeAgo is a read deadline that has passed: it ends a pending read at once.
var aLongTimeAgo = time.Unix(1, 0)

// dispatch sends the parsed request to a worker, then pumps its body. False: stop serving.
func (c *h1conn) dispatch() bool {
	req := &c.req
	ex := &exchange{
		c:         c,
		minor:     req.Minor,
		head:      string(req.Method) == "HEAD",
		keepAlive: !req.Close && !c.srv.isShuttingDown() && c.srv.cfg.KeepAlive > 0,
		expect:    req.ExpectContinue,
	}
	if c.srv.cfg.AccessLog || c.srv.metrics != nil {
		ex.startTime = time.Now()
		ex.method = internMethod(req.Method)
		if c.srv.cfg.AccessLog {
			ex.target = append([]byte(nil), req.Target...)
		}
	}
	if !c.srv.buildScope(c, req, &c.hr) {
		c.reject(ex, 400)
		return false
	}
	if cl := c.hr.Client; cl != nil && cl != c.client {
		ex.proxied, ex.proxyClient = true, *cl
	}
	if websocket.IsUpgrade(req) {
		return c.dispatchWebSocket(ex)
	}
	for i := range c.srv.cfg.Static {
		if _, ok := c.srv.cfg.Static[i].match(c.hr.Path[len(c.hr.RootPath):]); ok {
			if m := string(req.Method); m != "GET" && m != "HEAD" {
				c.reject(ex, 405, staticAllow) // (RFC 9110 15.5.6: with the methods it has)
				return false
			}
			if req.Chunked || req.ContentLength > 0 {
				c.reject(ex, 400) // content in a GET: nothing would read it (RFC 9110 9.3.1)
				return false
			}
			return c.serveStatic(&c.srv.cfg.Static[i], ex)
		}
	}
	hasBody := req.Chunked || req.ContentLength > 0
	if max := c.srv.cfg.MaxBodySize; max > 0 && req.ContentLength > max {
		c.reject(ex, 413) // refused from the header, before a byte of the body is read
		return false
	}
	if limit := c.srv.cfg.LimitConcurrency; limit > 0 && c.srv.inflight.Load() >= int64(limit) {
		c.srv.metrics.Overloaded()
		c.reject(ex, 503) // overloaded: answer at once rather than queue without bound
		return false
	}
	w := c.srv.pool.pickWait(c.srv.cfg.AcquireTimeout)
	if w == nil {
		c.srv.metrics.Overloaded()
		c.reject(ex, 503)
		return false
	}
	ex.w = w
	ex.respWindow = int64(w.window)
	ex.reqCredit = int64(w.window)
	c.hr.Body, c.hr.MoreBody = nil, false
	var left int64 // content-length bytes not yet sent
	if !hasBody {
		ex.reqDone = true
	} else if ex.expect {
		ex.reqCredit = 0 // the worker grants window on the app's first receive(); then 100 Continue
		c.hr.MoreBody = true
		left = req.ContentLength
		if req.Chunked {
			c.chunked.Reset()
		}
	} else if req.Chunked {
		c.chunked.Reset()
		c.hr.MoreBody = true
	} else {
		left = req.ContentLength
		piece := c.rend - c.rpos
		if int64(piece) > left {
			piece = int(left)
		}
		if piece > w.maxPiece {
			piece = w.maxPiece
		}
		c.hr.Body = c.rbuf[c.rpos : c.rpos+piece]
		c.rpos += piece
		left -= int64(piece)
		ex.reqCredit -= int64(piece)
		ex.bytesIn = int64(piece)
		c.hr.MoreBody = left > 0
		ex.reqDone = left == 0
	}
	c.hr.Flags = extensionFlags(req)
	if ex.expect && c.hr.MoreBody {
		c.hr.Flags |= protocol.FlagExpectContinue
	}
	ex.teTrailers = http1.HasToken(headerValues(req.Headers, "te"), "trailers")
	sid, err := w.open(ex)
	if err != nil {
		c.reject(ex, 502)
		return false
	}
	ex.sid = sid
	c.srv.inflight.Add(1)
	c.srv.metrics.InflightInc()
	c.mu.Lock()
	c.cur = ex
	if t := c.srv.cfg.RequestTimeout; t > 0 {
		ex.timer = time.AfterFunc(t, ex.timeout)
	}
	if c.headArmed { // a request head's deadline; a keep-alive one may stay (see deadlineStale)
		c.nc.SetReadDeadline(time.Time{})
		c.headArmed = false
	}
	var wider int64 // the connection's wide response window (exchange.creditLocked), granted below
	if c.wideWindow && !ex.ended {
		wider = ex.widenLocked()
		ex.respWindow += wider
	}
	c.mu.Unlock()
	if err := w.sendHTTPRequest(sid, &c.hr); err != nil {
		// The worker went away between open and send: workerLost answers 502. Or the scope could not
		// be encoded (a str field that is no UTF-8): this request alone fails (502).
		if !errors.Is(err, errWorkerGone) {
			c.srv.log.Error().Err(err).Msg("cannot encode the request for the worker")
			w.abandon(sid, ex)
		}
		return c.waitIdle()
	}
	if wider > 0 {
		w.sendCredit(sid, uint64(wider)) // (ignored by the worker if the stream has ended meanwhile)
	}
	if ex.reqDone {
		return true
	}
	if req.Chunked {
		return c.pumpChunked(ex)
	}
	return c.pumpLength(ex, left)
}

// reject answers a request that never reached a worker (with extra header fields, if any), and
// closes the connection.
func (c *h1conn) reject(ex *exchange, status int, extra ...[2]string) {
	ex.status = status
	ex.bytesOut = simpleBodyLen(status, ex.head)
	c.mu.Lock()
	if len(extra) > 0 {
		c.out = c.srv.appendSimpleResponseHeaders(c.out, status, ex.head, extra)
	} else {
		c.out = c.srv.appendSimpleResponse(c.out, ex.minor, status, ex.head, true)
	}
	c.closing, c.linger = true, true
	c.flushLocked()
	c.mu.Unlock()
	c.srv.accessLog(ex)
}

// awaitCredit waits until the exchange may take more request body. It returns the credit, or 0 when
// the body is no longer wanted (the response is complete, the app ended, the client or the worker
// went away); the connection is then set to close.
func (c *h1conn) awaitCredit(ex *exchange) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ex.reqCredit <= 0 && !ex.ended && !ex.complete && !ex.lost && !c.closed {
		c.mu.Unlock()
		<-c.wake
		c.mu.Lock()
	}
	if ex.ended || ex.complete || ex.lost || c.closed {
		// The rest of the body will not be read: this connection cannot carry another request.
		c.closing = true
		if ex.complete && !c.pendingLocked() && !c.draining {
			c.closeLocked()
		}
		return 0
	}
	if ex.expect && !ex.continued {
		ex.continued = true
		// Interim responses come before the final one (RFC 9110 §15.2): once the app's response head
		// went out, the client is not told to continue (§10.1.1 lets the server omit it; the client
		// sends its body anyway after a while), and the body is read as it comes.
		if !ex.started {
			c.out = append(c.out, continueLine...)
			c.flushLocked()
		} else if ex.headHeld {
			// The app started its response, and reads the body before any of it: the final head
			// waits for that body (responseStart), the client for 100 or the final head. The
			// interim response goes out alone, before the held head.
			head := append([]byte(nil), c.out[ex.headFrom:]...)
			c.out = append(c.out[:ex.headFrom], continueLine...)
			c.flushLocked()
			ex.headFrom = len(c.out)
			c.out = append(c.out, head...)
			ex.headHeld = !c.draining && !c.closed
		}
	}
	return ex.reqCredit
}

// spend takes n bytes of request-body window before a body frame is queued; last marks the body
// as read (so that a response racing the frame sees it so). False: the worker was told the client
// is gone (DISCONNECT), and nothing may follow; the frame is not queued, and unless the client's
// body was all read the connection cannot carry another request. After a true, the caller queues
// the frame and calls ex.endQueue.
func (c *h1conn) spend(ex *exchange, n int, last bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ex.disconnected {
		if !last {
			c.closing = true
		}
		return false
	}
	ex.reqCredit -= int64(n)
	ex.bytesIn += int64(n)
	ex.reqDone = last
	ex.beginQueueLocked()
	return true
}

// bodyDone runs after the last body frame was queued: if the response already completed, the
// connection now goes idle (or closes).
func (c *h1conn) bodyDone(ex *exchange) bool {
	c.mu.Lock()
	if ex.complete {
		if ex.closeAfter {
			c.closing = true
		} else {
			c.idleDeadline()
		}
	}
	ok := !c.closed
	c.mu.Unlock()
	return ok
}

// testHookBodyQueueing, set by tests, runs between spend and the body frame's queueing.
var testHookBodyQueueing func(*exchange)

func (c *h1conn) pumpLength(ex *exchange, left int64) bool {
	c.growForBody()
	for left > 0 {
		credit := c.awaitCredit(ex)
		if credit == 0 {
			return false
		}
		if c.rpos == c.rend {
			ok := c.fillBody()
			if !ok {
				c.clientGone()
				return false
			}
		}
		piece := int64(c.rend - c.rpos)
		piece = min(piece, left, credit, int64(ex.w.maxPiece))
		data := c.rbuf[c.rpos : c.rpos+int(piece)]
		c.rpos += int(piece)
		left -= piece
		if !c.spend(ex, len(data), left == 0) {
			return false
		}
		if testHookBodyQueueing != nil {
			testHookBodyQueueing(ex)
		}
		ex.w.sendBody(ex.sid, data, left > 0)
		ex.endQueue()
	}
	return c.bodyDone(ex)
}

func (c *h1conn) pumpChunked(ex *exchange) bool {
	c.growForBody()
	if ex.expect && c.awaitCredit(ex) == 0 {
		return false // the client sends nothing before 100 Continue, which waits for the app
	}
	var pending []byte // decoded data not yet sent (aliases rbuf: no fill until it is sent)
	var total int64    // body bytes so far, for MaxBodySize
	done := false
	for {
		if len(pending) == 0 && !done {
			n, data, fin, err := c.chunked.Decode(c.rbuf[c.rpos:c.rend])
			if err != nil {
				c.srv.log.Debug().Err(err).Msg("bad chunked request body")
				c.badBody(ex, 400)
				return false
			}
			c.rpos += n
			pending, done = data, fin
			if n == 0 && len(data) == 0 && !fin {
				ok := c.fillBody()
				if !ok {
					c.clientGone()
					return false
				}
				continue
			}
			// The chunks already read go with this one, in one frame (and one http.request for the
			// app) up to a piece: a body of 1-byte chunks cost a frame and a receive() each, 6 bytes
			// on the wire making the worker wake a task. Each chunk's data moves left over the
			// framing already decoded (pending aliases rbuf; nothing right of rpos is touched).
			for !done && len(pending) > 0 && c.rpos < c.rend && len(pending)+c.rend-c.rpos <= ex.w.maxPiece {
				n, data, fin, err := c.chunked.Decode(c.rbuf[c.rpos:c.rend])
				if err != nil {
					c.srv.log.Debug().Err(err).Msg("bad chunked request body")
					c.badBody(ex, 400)
					return false
				}
				if n == 0 && len(data) == 0 && !fin {
					break // the rest of the next chunk is not here yet
				}
				c.rpos += n
				end := len(pending) // (never past a piece: the data comes from what is buffered)
				pending = pending[:end+len(data)]
				copy(pending[end:], data)
				done = fin
			}
			continue
		}
		if len(pending) == 0 && done {
			if c.awaitCreditOrEnd(ex) && c.spend(ex, 0, true) {
				ex.w.sendBody(ex.sid, nil, false)
				ex.endQueue()
			}
			return c.bodyDone(ex)
		}
		credit := c.awaitCredit(ex)
		if credit == 0 {
			return false
		}
		if max := c.srv.cfg.MaxBodySize; max > 0 {
			if total += int64(len(pending)); total > max {
				c.badBody(ex, 413)
				return false
			}
		}
		piece := min(int64(len(pending)), credit, int64(ex.w.maxPiece))
		if !c.spend(ex, int(piece), false) {
			return false
		}
		ex.w.sendBody(ex.sid, pending[:piece], true)
		ex.endQueue()
		pending = pending[piece:]
	}
}

// awaitCreditOrEnd is for the final, empty body frame, which needs no window: it only checks that
// the stream still wants it.
func (c *h1conn) awaitCreditOrEnd(ex *exchange) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !ex.ended && !ex.lost && !c.closed
}

func (c *h1conn) growForBody() {
	if c.rbuf != nil && len(c.rbuf) < readBufBody { // (nil: readIn takes a pooled one, of that size)
		nb := make([]byte, readBufBody)
		c.rend = copy(nb, c.rbuf[c.rpos:c.rend])
		c.rpos = 0
		c.setReadBuf(nb)
	}
}

// badBody: the client's chunked body is broken (400) or too large (413). The app learns of it as a
// disconnect; the client gets status if no response has started, and the connection closes.
func (c *h1conn) badBody(ex *exchange, status int) {
	c.mu.Lock()
	fresh := !ex.started || ex.unstartLocked() // (nothing of the response written yet)
	ex.clientGoneLocked()
	if fresh {
		ex.keepAlive = false // (the connection closes: the rest of the body is not read)
		ex.gatewayResponseLocked(status)
	}
	c.closing, c.linger = true, true
	c.flushLocked()
	if !c.draining {
		c.closeLocked()
	}
	c.mu.Unlock()
}

// clientGone: reading from the client failed while an exchange was running.
func (c *h1conn) clientGone() {
	c.mu.Lock()
	if ex := c.cur; ex != nil {
		ex.clientGoneLocked()
	}
	c.closeLocked()
	logged := c.curLogLocked()
	c.mu.Unlock()
	if logged != nil {
		c.srv.accessLog(logged)
	}
}

// curLogLocked returns the current exchange if its access-log line is due (its client left), for
// the caller to write once it has unlocked.
func (c *h1conn) curLogLocked() *exchange {
	if ex := c.cur; ex != nil && ex.takeLog() {
		return ex
	}
	return nil
}

// borrowedPiece is a body piece written from a worker's body ring; see h1conn.borrowed.
type borrowedPiece struct {
	at   int // offset in out before which the piece goes
	data []byte
}

// maxBorrowed bounds the pieces borrowed between two flushes (an iovec each, with the out parts
// between them); more are copied.
const maxBorrowed = 16

// pendingLocked reports whether bytes wait to be written to the client.
func (c *h1conn) pendingLocked() bool {
	return len(c.out) > 0 || len(c.borrowed) > 0
}

// appendBorrowedLocked queues data, a piece of a worker's body ring, without copying it if it can
// (it is written, or copied, by the next flushLocked, which the caller makes sure happens before
// the ring piece is released: workerConn.flushDirty).
func (c *h1conn) appendBorrowedLocked(data []byte) {
	if c.draining || c.closed || c.rc == nil || len(c.borrowed) == maxBorrowed {
		c.out = append(c.out, data...)
		return
	}
	c.borrowed = append(c.borrowed, borrowedPiece{at: len(c.out), data: data})
}

// ownBorrowedLocked replaces out and the borrowed pieces by one buffer holding their bytes from
// offset skip on (the part the socket has not taken yet).
func (c *h1conn) ownBorrowedLocked(skip int) {
	iov, size := c.iovLocked()
	// A new buffer: out's spare may be the drain goroutine's (slow path: a client that did not
	// take everything, or a drain or file under way).
	buf := make([]byte, 0, size-skip)
	for _, p := range iov {
		if skip >= len(p) {
			skip -= len(p)
			continue
		}
		buf = append(buf, p[skip:]...)
		skip = 0
	}
	clear(iov) // (no reference to ring memory may outlive the flush)
	clear(c.borrowed)
	c.out = buf
	c.borrowed = c.borrowed[:0]
}

// iovLocked returns out with the borrowed pieces in place, in write order (in c.wvec), and their
// total size.
func (c *h1conn) iovLocked() ([][]byte, int) {
	iov := c.wvec[:0]
	prev := 0 // offset in out
	for _, b := range c.borrowed {
		if b.at > prev {
			iov = append(iov, c.out[prev:b.at])
		}
		iov = append(iov, b.data)
		prev = b.at
	}
	if len(c.out) > prev {
		iov = append(iov, c.out[prev:])
	}
	c.wvec = iov
	size := len(c.out)
	for _, b := range c.borrowed {
		size += len(b.data)
	}
	return iov, size
}

// halfCloseGrace is how long a response may still take after the client closed its side of the
// connection (clean EOF) once its request was complete, before the client counts as gone.
const halfCloseGrace = 500 * time.Millisecond

// finish runs when serve returns: the client is gone or the connection is done.
//
// A clean EOF after a complete request may be a half-close (shutdown(SHUT_WR): HTTP/1.0-style
// clients, `nc -N`) by a client still reading, or a full close by one that gave up: the two look
// the same from here. The response gets halfCloseGrace to complete and is then written as usual
// (the connection closes after it); past that, the app is told the client is gone.
func (c *h1conn) finish() {
	c.mu.Lock()
	if ex := c.cur; ex != nil && !ex.complete && c.readEOF && ex.ws == nil && ex.reqDone {
		c.closing = true // no more requests: close once this response is out
		ex.keepAlive = false
		c.mu.Unlock()
		c.awaitComplete(ex, halfCloseGrace)
		c.mu.Lock()
	}
	if ex := c.cur; ex != nil && !ex.complete {
		ex.clientGoneLocked()
		if ex.ws == nil {
			c.abort = true // (a reset: the response cannot be complete, and must not look it)
		}
		c.closeLocked()
	} else if !c.pendingLocked() && !c.draining {
		c.closeLocked()
	} else {
		c.closing = true // the writer closes once the response is out
	}
	logged := c.curLogLocked() // (a client that left while the app ran, by whatever path)
	c.mu.Unlock()
	if logged != nil {
		c.srv.accessLog(logged)
	}
	c.rpos, c.rend, c.parked = 0, 0, false
	c.releaseReadBuf() // (nothing reads rbuf after serve)
	c.srv.untrack(c)
}

// awaitComplete waits until ex's response is complete or the connection closed, for at most d.
func (c *h1conn) awaitComplete(ex *exchange, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-c.wake:
			c.mu.Lock()
			done := ex.complete || c.closed
			c.mu.Unlock()
			if done {
				return
			}
		case <-timer.C:
			return
		}
	}
}

// idleDeadline starts the keep-alive period: the next request must start within it. The read
// deadline is only set when none is armed; one armed earlier is pushed back when it fires
// (deadlineStale). The caller holds c.mu.
func (c *h1conn) idleDeadline() {
	c.idleFrom = time.Now()
	if !c.idleArmed && c.setReadDeadline(c.idleFrom.Add(c.srv.cfg.idleTimeout())) {
		c.idleArmed, c.headArmed = true, false
	}
}

// setReadDeadline sets the read deadline from outside the serve goroutine, unless wakeUp's
// interruption of a read is pending (false): the read must see that past deadline first, and
// endWatch then sets the deadline anew (an exchange in flight, or its successor, arms the
// keep-alive one again when it completes).
func (c *h1conn) setReadDeadline(t time.Time) bool {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	if c.interrupting {
		return false
	}
	c.nc.SetReadDeadline(t)
	return true
}

func (c *h1conn) wakeUp() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
	if c.watching.Load() { // serve reads while it waits (watchWhile): end that read
		c.watchMu.Lock()
		if c.watching.Swap(false) {
			c.interrupting = true
			c.nc.SetReadDeadline(aLongTimeAgo)
		}
		c.watchMu.Unlock()
	}
}

// flushLocked writes what is queued without blocking; the rest goes to a drain goroutine.
func (c *h1conn) flushLocked() {
	if c.cur != nil {
		c.cur.headHeld = false // whatever is queued goes out now, a held head too
	}
	if c.closed {
		clear(c.borrowed)
		c.borrowed = c.borrowed[:0] // nothing will be written
		return
	}
	if len(c.borrowed) > 0 && (c.draining || c.file != nil) {
		c.ownBorrowedLocked(0) // (the drain goroutine writes out only)
	}
	if c.draining {
		return
	}
	if c.file != nil {
		c.draining = true // files always go through the drain goroutine (sendfile blocks)
		go c.drain()
		return
	}
	if len(c.borrowed) > 0 {
		// (It closes a closing connection itself once all is written; when the socket did not take
		// it all, the drain goroutine writes the rest and closes after it.)
		c.flushBorrowedLocked()
		return
	} else if len(c.out) > 0 {
		n, err := c.tryWrite(c.out)
		if err != nil {
			c.writeFailedLocked()
			return
		}
		if n < len(c.out) {
			rest := copy(c.out, c.out[n:])
			c.out = c.out[:rest]
			c.draining = true
			go c.drain()
			return
		}
		c.out = c.out[:0]
		c.wroteLocked(true)
	}
	if c.closing && c.cur == nil {
		c.closeLocked()
	}
}

// flushBorrowedLocked writes out with the borrowed pieces in place (one writev); what the socket
// does not take is copied, and the drain goroutine writes it.
func (c *h1conn) flushBorrowedLocked() {
	_, total := c.iovLocked()
	n, err := c.tryWritev()
	if err != nil {
		c.writeFailedLocked()
		return
	}
	if n < total {
		c.ownBorrowedLocked(n) // (it clears the iovec)
		c.draining = true
		go c.drain()
		return
	}
	clear(c.wvec) // (no reference to ring memory may outlive the flush)
	clear(c.borrowed)
	c.out = c.out[:0]
	c.borrowed = c.borrowed[:0]
	c.wroteLocked(true)
	if c.closing && c.cur == nil {
		c.closeLocked()
	}
}

// tryWritev writes as much of c.wvec as the socket takes now.
func (c *h1conn) tryWritev() (int, error) {
	if c.rawWritev == nil {
		c.rawWritev = c.writevFd // (made on first use: most connections never borrow)
	}
	if err := c.rc.Write(c.rawWritev); err != nil {
		return 0, err
	}
	return c.wn, c.werr
}

func (c *h1conn) writevFd(fd uintptr) bool {
	c.iovecs = appendIovecs(c.iovecs[:0], c.wvec)
	defer clear(c.iovecs) // (they point into ring memory)
	for {
		if n, err := writevRaw(int(fd), c.iovecs); c.wrote(n, err) {
			return true
		}
	}
}

// tryWrite writes as much of b as the socket takes now.
func (c *h1conn) tryWrite(b []byte) (int, error) {
	if c.rc == nil {
		return 0, nil
	}
	c.wsrc = b
	if err := c.rc.Write(c.rawWrite); err != nil {
		return 0, err
	}
	c.wsrc = nil
	return c.wn, c.werr
}

func (c *h1conn) writeFd(fd uintptr) bool {
	for {
		if n, err := writeRaw(int(fd), c.wsrc); c.wrote(n, err) {
			return true
		}
	}
}

// wrote records the outcome of one non-blocking write (writeFd, writevFd) in wn and werr: the bytes
// written, 0 when the socket is full (EAGAIN), or the error. False: interrupted, write again.
func (c *h1conn) wrote(n int, err error) bool {
	switch {
	case err == syscall.EINTR:
		return false
	case err == syscall.EAGAIN:
		c.wn, c.werr = 0, nil
	case err != nil:
		c.wn, c.werr = 0, err
	default:
		c.wn, c.werr = n, nil
	}
	return true
}

// drain finishes writing out (and a pathsend file after it) with blocking writes; it is the only
// writer while c.draining is set.
func (c *h1conn) drain() {
	c.mu.Lock()
	for (len(c.out) > 0 || c.file != nil) && !c.closed {
		if len(c.out) > 0 {
			buf := c.out
			c.out = c.spare[:0]
			c.mu.Unlock()
			var err error
			for len(buf) > 0 && err == nil {
				n := min(len(buf), writeChunk)
				c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
				n, err = c.nc.Write(buf[:n])
				buf = buf[n:]
			}
			c.mu.Lock()
			c.spare = buf[:0]
			if err != nil {
				c.draining = false
				c.writeFailedLocked()
				c.mu.Unlock()
				return
			}
			c.wroteLocked(false)
			continue // what was queued meanwhile goes before the file
		}
		fs := c.file
		c.file = nil
		c.mu.Unlock()
		err := c.sendFile(fs)
		c.mu.Lock()
		if err != nil {
			c.draining = false
			fs.ex.cutLocked()
			c.writeFailedLocked()
			c.mu.Unlock()
			return
		}
		fs.ex.bytesOut += fs.n
		fs.ex.completeLocked()
		if fs.ex.takeLog() {
			c.mu.Unlock()
			c.srv.accessLog(fs.ex)
			c.mu.Lock()
		}
	}
	c.draining = false
	c.wakeUp() // (a WebSocket reader waits for the client to take its pongs)
	if c.closing && c.cur == nil {
		c.closeLocked()
	}
	c.mu.Unlock()
}

// wroteLocked: everything queued so far reached the socket; return the window to the worker. fast:
// the socket took it at once (not the drain goroutine's blocking writes).
func (c *h1conn) wroteLocked(fast bool) {
	if !fast {
		c.wideWindow = false // a slow client: its next streams start at W again
	}
	if ex := c.cur; ex != nil && ex.queued > 0 {
		ex.uncredited += ex.queued
		ex.queued = 0
		ex.creditLocked(fast)
	}
}

func (c *h1conn) writeFailedLocked() {
	c.out = c.out[:0]
	clear(c.wvec)
	clear(c.borrowed)
	c.borrowed = c.borrowed[:0]
	if ex := c.cur; ex != nil {
		ex.clientGoneLocked()
	}
	c.closeLocked()
}

// closeLocked closes the socket (once). The serve goroutine's blocked read then fails and it ends.
//
// abort: a reset (a cut response must not look complete; over TLS no close_notify either).
// Otherwise a lingering close (lingerClose) when the client may still be sending: a body the app
// left unread (linger), or input not read yet (pipelined requests behind a closing one): closing
// with unread data makes the kernel reset the connection, and a reset can take the end of the
// response from a client still reading it.
func (c *h1conn) closeLocked() {
	if c.closed {
		return
	}
	c.closed = true
	switch {
	case c.abort:
		resetConn(c.nc)
	case c.linger || c.unreadInputLocked():
		// The serve goroutine reads no more once the connection is closed (it returns after an
		// error response; a body pump stops at its next read, fillBody), and a read of its still
		// pending ends by the lingering deadline: the lingering goroutine is the connection's last
		// reader, and closes it.
		go lingerClose(c.nc)
	default:
		c.nc.Close()
	}
	c.wakeUp()
}

// unreadInputLocked reports whether the socket holds bytes from the client not yet read (those
// are what a close turns into a reset; the read buffer belongs to the serve goroutine).
func (c *h1conn) unreadInputLocked() bool {
	rc := c.rc
	if tc, ok := c.nc.(*tls.Conn); ok && rc == nil {
		switch under := tc.NetConn().(type) {
		case *rawNetConn:
			rc = under.s.rc
		case syscall.Conn:
			rc, _ = under.SyscallConn()
		}
	}
	if rc == nil {
		return false
	}
	n := 0
	rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	return n > 0
}

// resetConn closes nc with a reset where it can (SO_LINGER 0 on TCP), and a TLS connection under
// its TLS layer, so that no close_notify makes the end look orderly.
func resetConn(nc net.Conn) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if rc, ok := nc.(*rawNetConn); ok {
		nc = rc.Conn
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	nc.Close()
}

type closeWriter interface{ CloseWrite() error }

// Lingering close (RFC 9112 §9.6): after an error response (400, 413, ...), or an app's response
// that left the request body unread, the client may still be sending; closing at once would reset
// the connection while its data is unread, and a reset can take the response away from a client still in its send. So the write
// side is shut first (the client sees the end of the response), and what the client still sends
// is read and dropped until it closes, for at most lingerTime and lingerBytes.
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 16 << 20
)

func lingerClose(nc net.Conn) {
	if !closeWrite(nc) {
		nc.Close()
		return
	}
	nc.SetReadDeadline(time.Now().Add(lingerTime))
	buf := make([]byte, 32<<10)
	for total := 0; total < lingerBytes; {
		n, err := nc.Read(buf)
		total += n
		if err != nil {
			break
		}
	}
	nc.Close()
}

// closeWrite shuts nc's write side: over TLS a close_notify, then the TCP half-close under it.
// False when it cannot (then nc is closed at once).
func closeWrite(nc net.Conn) bool {
	if tc, ok := nc.(*tls.Conn); ok {
		if tc.CloseWrite() != nil { // (a handshake not complete)
			return false
		}
		nc = tc.NetConn()
	}
	cw, ok := nc.(closeWriter)
	return ok && cw.CloseWrite() == nil
}

// closeIfIdle is shutdown's way in: close a connection that has no request in flight.
func (c *h1conn) closeIfIdle() {
	c.mu.Lock()
	if c.cur != nil && c.cur.ws != nil {
		c.cur.goingAwayLocked()
	}
	if c.cur == nil && !c.pendingLocked() && !c.draining && !c.staticBody {
		c.closeLocked()
	} else {
		c.closing = true
	}
	c.mu.Unlock()
}

func addrsOf(nc net.Conn) (client, server *protocol.Addr) {
	switch ra := nc.RemoteAddr().(type) {
	case *net.TCPAddr:
		client = &protocol.Addr{Host: ra.IP.String(), Port: ra.Port, HasPort: true}
	}
	switch la := nc.LocalAddr().(type) {
	case *net.TCPAddr:
		server = &protocol.Addr{Host: la.IP.String(), Port: la.Port, HasPort: true}
	case *net.UnixAddr:
		server = &protocol.Addr{Host: la.Name}
	}
	return client, server
}

package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/asgi-gateway/asgi-gateway/gateway/http1"
)

// Server is the gateway: a listener, its client connections, and the worker pool behind them.
type Server struct {
	cfg  Config
	log  zerolog.Logger
	pool *Pool

	ln           net.Listener
	scheme       string
	trusted      *TrustedProxies
	tls          *tlsState // nil unless --ssl-certfile: TLS, HTTP/2 (h2.go)
	extraHeaders []http1.Header

	metrics  *Metrics // nil when off: its methods do nothing then
	pool2    atomic.Pointer[Pool]
	inflight atomic.Int64 // requests dispatched to a worker whose app task has not ended
	openWS   atomic.Int64 // WebSocket connections being served
	// widened is the response window granted beyond W to the streams in flight (exchange.widenLocked),
	// at most wideningBudget.
	widened atomic.Int64

	mu       sync.Mutex
	conns    map[*h1conn]struct{}
	shutting atomic.Bool
	connWG   sync.WaitGroup

	dateSec  atomic.Int64
	dateBuf  atomic.Pointer[[]byte]
	accessMu sync.Mutex
}

// NewServer checks the configuration and finds the interpreter; Start does the rest.
func NewServer(cfg Config, log zerolog.Logger) (*Server, error) {
	if cfg.App == "" {
		return nil, errors.New("no app given: asgi-gateway run module:attribute")
	}
	s := &Server{cfg: cfg, log: log, scheme: "http", conns: make(map[*h1conn]struct{})}
	trusted, err := ParseTrustedProxies(cfg.ForwardedAllowIPs)
	if err != nil {
		return nil, err
	}
	s.trusted = trusted
	s.metrics = cfg.Metrics
	if err := s.setupTLS(); err != nil {
		return nil, err
	}
	for _, h := range cfg.ExtraHeaders {
		name, value := []byte(h[0]), []byte(h[1])
		if !http1.ValidHeaderName(name) || !http1.ValidHeaderValue(value) {
			return nil, fmt.Errorf("invalid --header %q: %q", h[0], h[1])
		}
		s.extraHeaders = append(s.extraHeaders, http1.Header{Name: name, Value: value})
		// A --header server or date takes the place of the gateway's own (as uvicorn does for
		// server): one field line each (RFC 9110 §5.3, neither is a list).
		if http1.EqualFold(name, "server") {
			s.cfg.ServerHeader = false
		} else if http1.EqualFold(name, "date") {
			s.cfg.DateHeader = false
		}
	}
	return s, nil
}

// Start spawns the workers, waits for all of them to be ready, then listens. It returns the
// listening address ("http://host:port" or "unix:path").
func (s *Server) Start() (string, error) {
	// The address is tried before the app is: a port in use fails in a moment, without running
	// the app's imports and lifespan startup first. Clients are still refused until the workers
	// are ready (the listener is opened again then).
	if err := s.tryListen(); err != nil {
		return "", err
	}
	python, err := FindPython(s.cfg.Python, s.log)
	if err != nil {
		return "", err
	}
	serverCert := ""
	if s.tls != nil {
		serverCert = s.tls.serverCert
	}
	pool, err := NewPool(&s.cfg, python, serverCert, s.log)
	if err != nil {
		return "", err
	}
	s.pool = pool
	s.pool2.Store(pool)
	if s.shutting.Load() {
		// Shutdown ran before the pool existed (a signal in the first moments): it could not stop
		// the pool, so no worker is started. (Either this sees it, or Shutdown sees the pool.)
		pool.Stop(0)
		return "", errStopped
	}
	if err := pool.Start(); err != nil {
		return "", err
	}
	ln, where, err := s.listen()
	if err != nil {
		pool.Stop(5 * time.Second)
		return "", err
	}
	s.ln = ln
	return where, nil
}

// maxUnixPath is the longest path a Unix socket can be bound to (sockaddr_un's sun_path, 108 bytes
// with its terminating NUL).
const maxUnixPath = 107

// errStopped is Start's error when Shutdown came first.
var errStopped = errors.New("stopped before the workers started")

// tryListen checks that the server can listen where it was asked to: a TCP address or Unix
// socket is listened on and closed again, an inherited descriptor must be a stream socket.
func (s *Server) tryListen() error {
	if s.cfg.FD >= 0 {
		typ, err := syscall.GetsockoptInt(s.cfg.FD, syscall.SOL_SOCKET, syscall.SO_TYPE)
		if err != nil {
			return fmt.Errorf("listen on file descriptor %d: not a socket: %w", s.cfg.FD, err)
		}
		if typ != syscall.SOCK_STREAM {
			return fmt.Errorf("listen on file descriptor %d: not a stream socket", s.cfg.FD)
		}
		return nil
	}
	ln, _, err := s.listen()
	if err != nil {
		return err
	}
	// (A Unix socket's file is removed by Close: net.Listen created it.)
	return ln.Close()
}

func (s *Server) listen() (net.Listener, string, error) {
	if s.cfg.FD >= 0 {
		// A socket that is bound but not listening yet is put in the listening state (listen(2)
		// on a listening socket only changes its backlog).
		if err := syscall.Listen(s.cfg.FD, max(s.cfg.Backlog, 1)); err != nil {
			return nil, "", fmt.Errorf("listen on file descriptor %d: %w", s.cfg.FD, err)
		}
		f := os.NewFile(uintptr(s.cfg.FD), "inherited listener")
		ln, err := net.FileListener(f)
		f.Close() // FileListener dups it
		if err != nil {
			return nil, "", fmt.Errorf("listen on file descriptor %d: %w", s.cfg.FD, err)
		}
		return ln, "fd:" + strconv.Itoa(s.cfg.FD) + " (" + ln.Addr().String() + ")", nil
	}
	if s.cfg.UDS != "" {
		if n := len(s.cfg.UDS); n > maxUnixPath {
			// (bind(2) would only say "invalid argument")
			return nil, "", fmt.Errorf("listen on %s: the path is %d bytes long; a Unix socket's path may have at most %d", s.cfg.UDS, n, maxUnixPath)
		}
		if fi, err := os.Lstat(s.cfg.UDS); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(s.cfg.UDS) // a stale socket from an earlier run
		}
		ln, err := net.Listen("unix", s.cfg.UDS)
		if err != nil {
			return nil, "", fmt.Errorf("listen on %s: %w", s.cfg.UDS, err)
		}
		// Anyone may connect (a proxy running as another user: nginx as www-data), as with uvicorn;
		// the directory's permissions restrict access where that is wanted.
		if err := os.Chmod(s.cfg.UDS, 0o666); err != nil {
			ln.Close()
			return nil, "", fmt.Errorf("set the permissions of %s: %w", s.cfg.UDS, err)
		}
		setBacklog(ln, s.cfg.Backlog)
		return ln, "unix:" + s.cfg.UDS, nil
	}
	addr := net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
	ln, err := net.Listen(TCPNetwork(s.cfg.Host), addr)
	if err != nil {
		return nil, "", fmt.Errorf("listen on %s: %w", addr, err)
	}
	setBacklog(ln, s.cfg.Backlog)
	return ln, s.scheme + "://" + ln.Addr().String(), nil
}

// Serve accepts connections until Shutdown.
func (s *Server) Serve() error {
	var delay time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if s.shutting.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscallEMFILE) {
				// Out of file descriptors or similar: back off instead of spinning.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Error().Err(err).Dur("retry_in", delay).Msg("accept failed")
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		delay = 0
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		if s.tls != nil && s.tls.conf != nil {
			go s.serveTLS(nc) // handshake, then HTTP/2 or HTTP/1.1 by ALPN
			continue
		}
		c := newH1Conn(s, nc, s.scheme)
		if !s.track(c) {
			nc.Close()
			continue
		}
		go c.serve()
	}
}

func (s *Server) track(c *h1conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	return true
}

func (s *Server) untrack(c *h1conn) {
	s.mu.Lock()
	if _, ok := s.conns[c]; ok {
		delete(s.conns, c)
		s.connWG.Done()
	}
	s.mu.Unlock()
}

func (s *Server) isShuttingDown() bool { return s.shutting.Load() }

// Shutdown stops accepting, closes idle connections, lets in-flight requests finish for up to
// cfg.GracefulTimeout, then stops the workers.
func (s *Server) Shutdown() {
	if s.shutting.Swap(true) {
		return
	}
	if s.ln != nil {
		s.ln.Close()
		if s.cfg.UDS != "" {
			os.Remove(s.cfg.UDS)
		}
	}
	s.mu.Lock()
	for c := range s.conns {
		c.closeIfIdle()
	}
	s.mu.Unlock()
	s.shutdownTLS()
	deadline := time.Now().Add(s.cfg.GracefulTimeout)
	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(s.cfg.GracefulTimeout):
		s.log.Warn().Msg("graceful shutdown timed out; closing the remaining connections")
		s.mu.Lock()
		for c := range s.conns {
			c.mu.Lock()
			var logged *exchange
			if ex := c.cur; ex != nil && ex.ws == nil && !ex.complete && !ex.lost && !ex.ended {
				// A response not started yet gets 503 rather than a cut connection (uvicorn answers
				// 500 from the cancelled app); a started one is cut.
				if ex.abandonLocked(503) {
					logged = ex
				}
			}
			c.closeLocked()
			c.mu.Unlock()
			if logged != nil {
				s.accessLog(logged)
			}
		}
		s.mu.Unlock()
		s.closeTLSConns()
	}
	// The workers get what is left of the grace period to finish, cancel the rest and run their
	// lifespan shutdown (SHUTDOWN), and are killed after a last few seconds.
	if p := s.pool2.Load(); p != nil {
		p.Stop(max(time.Until(deadline), 0))
	}
}

// WorkerPIDs lists the pids of the ready workers.
func (s *Server) WorkerPIDs() []int { return s.pool.Workers() }

// dateLine returns the "date: ...\r\n" header line for now, formatted once per second.
func (s *Server) dateLine() []byte {
	now := time.Now()
	sec := now.Unix()
	if s.dateSec.Load() == sec {
		if b := s.dateBuf.Load(); b != nil {
			return *b
		}
	}
	b := []byte("date: " + now.UTC().Format(http.TimeFormat) + "\r\n")
	s.dateBuf.Store(&b)
	s.dateSec.Store(sec)
	return b
}

// appendSimpleResponseHeaders is appendSimpleResponse with extra headers (426's version) and close;
// the text is left out for a HEAD request (head).
func (s *Server) appendSimpleResponseHeaders(dst []byte, status int, head bool, extra [][2]string) []byte {
	text := simpleText(status)
	dst = http1.AppendStatusLine(dst, status)
	dst = s.appendOwnHeaders(dst)
	for _, h := range extra {
		dst = append(append(append(append(dst, h[0]...), ": "...), h[1]...), "\r\n"...)
	}
	dst = append(dst, "content-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: "...)
	dst = strconv.AppendInt(dst, int64(len(text)), 10)
	dst = append(dst, "\r\n\r\n"...)
	if head {
		return dst
	}
	return append(dst, text...)
}

// simpleText is the body of the gateway's own response with status.
func simpleText(status int) string {
	if text := http.StatusText(status); text != "" {
		return text
	}
	return "Error"
}

// simpleBodyLen is the body length of the gateway's own response (the access log's bytes).
func simpleBodyLen(status int, head bool) int64 {
	if head {
		return 0
	}
	return int64(len(simpleText(status)))
}

// appendOwnHeaders appends the fields every response of the gateway's own has after its status
// line: server and date (unless turned off; RFC 9110 section 6.6.1 wants date), then the --header
// defaults.
func (s *Server) appendOwnHeaders(dst []byte) []byte {
	if s.cfg.ServerHeader {
		dst = append(dst, "server: asgi-gateway\r\n"...)
	}
	if s.cfg.DateHeader {
		dst = append(dst, s.dateLine()...)
	}
	for _, h := range s.extraHeaders {
		dst = http1.AppendHeader(dst, h.Name, h.Value)
	}
	return dst
}

// appendSimpleResponse appends the gateway's own plain-text response for status, to a request of
// HTTP/1.minor (an HTTP/1.0 client is told when the connection stays open).
func (s *Server) appendSimpleResponse(dst []byte, minor, status int, head, close bool) []byte {
	text := simpleText(status)
	dst = http1.AppendStatusLine(dst, status)
	dst = s.appendOwnHeaders(dst)
	dst = append(dst, "content-type: text/plain; charset=utf-8\r\ncontent-length: "...)
	dst = strconv.AppendInt(dst, int64(len(text)), 10)
	dst = append(dst, "\r\n"...)
	if close {
		dst = append(dst, "connection: close\r\n"...)
	} else if minor == 0 {
		dst = append(dst, "connection: keep-alive\r\n"...) // (an HTTP/1.0 client closes otherwise)
	}
	dst = append(dst, "\r\n"...)
	if !head {
		dst = append(dst, text...)
	}
	return dst
}

// accessLog writes the exchange's access-log line: one zerolog call, no other work.
func (s *Server) accessLog(ex *exchange) {
	if s.metrics != nil {
		s.metrics.ObserveRequest(ex.method, ex.status, ex.bytesIn, ex.bytesOut, time.Since(ex.startTime))
	}
	if !s.cfg.AccessLog {
		return
	}
	if f := s.cfg.AccessFormat; f != nil {
		e := ex.accessEntry()
		s.log.Info().Msg(string(f.append(make([]byte, 0, 128), &e, time.Since(ex.startTime))))
		return
	}
	host, port := "", 0
	if cl := ex.logClient(); cl != nil {
		host, port = cl.Host, cl.Port
	}
	s.log.Info().Str("client", host).Int("port", port).Bytes("method", ex.method).Bytes("path", ex.target).
		Int("status", ex.status).Int64("bytes", ex.bytesOut).Dur("duration", time.Since(ex.startTime)).Msg("request")
}

// Reload replaces every worker, one at a time, without failing a request (SIGHUP). Reload,
// AddWorker and RemoveWorker do nothing once the server is shutting down (reported false): the
// workers are on their way out, and a new one would only slow the shutdown down.
func (s *Server) Reload() bool {
	if s.isShuttingDown() {
		return false
	}
	s.pool.Reload()
	return true
}

// AddWorker and RemoveWorker grow and shrink the pool by one (SIGTTIN, SIGTTOU).
func (s *Server) AddWorker() bool {
	if s.isShuttingDown() {
		return false
	}
	s.pool.AddWorker()
	return true
}

func (s *Server) RemoveWorker() bool {
	if s.isShuttingDown() {
		return false
	}
	s.pool.RemoveWorker()
	return true
}

// TCPNetwork is the network to listen on at host: an IPv4 address (0.0.0.0 too) is IPv4 only, and
// an IPv6 address (:: too) IPv6 only, as with uvicorn; Go's "tcp" would make either wildcard
// dual-stack, serving the other family too. A name is resolved as "tcp" does.
func TCPNetwork(host string) string {
	if ip := net.ParseIP(host); ip != nil {
		if ip.To4() != nil {
			return "tcp4"
		}
		return "tcp6"
	}
	return "tcp"
}

// setBacklog applies --backlog: Go listens with the system maximum, and Linux lets a second
// listen(2) on the socket change the queue length.
func setBacklog(ln net.Listener, backlog int) {
	sc, ok := ln.(syscall.Conn)
	if !ok || backlog <= 0 {
		return
	}
	if rc, err := sc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { syscall.Listen(int(fd), backlog) })
	}
}

// ReadyWorkers counts the workers taking traffic (0 while starting or shutting down): /readyz.
func (s *Server) ReadyWorkers() int {
	p := s.pool2.Load()
	if p == nil || s.shutting.Load() {
		return 0
	}
	return len(*p.ready.Load())
}

// WorkerStates counts the workers by state for the metrics.
func (s *Server) WorkerStates() map[string]int {
	p := s.pool2.Load()
	if p == nil {
		return map[string]int{"ready": 0, "starting": 0, "draining": 0}
	}
	p.mu.Lock()
	slots := len(p.slots)
	p.mu.Unlock()
	ready := len(*p.ready.Load())
	return map[string]int{"ready": ready, "starting": max(slots-ready, 0), "draining": int(p.draining.Load())}
}

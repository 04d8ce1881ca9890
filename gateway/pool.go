package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// AppLoadError is a worker's report that the app could not be imported. It is final: respawning
// would fail the same way, so the gateway reports it and exits.
type AppLoadError struct {
	Message string
}

func (e *AppLoadError) Error() string { return "cannot load the app: " + e.Message }

// Pool spawns the worker processes, supervises them (a worker that dies or breaks the protocol is
// replaced, with backoff when it keeps dying), recycles them (max requests, memory, age, SIGHUP: the
// replacement is ready before the old one stops taking traffic) and routes each new stream to the
// least busy one.
type Pool struct {
	cfg        *Config
	python     string
	dir        string // private 0700 directory for the worker sockets
	log        zerolog.Logger
	serverCert string // PEM of the TLS listener's certificate, in every HELLO (the TLS extension); "" without TLS

	ready     atomic.Pointer[[]*workerConn] // workers taking traffic; replaced, never mutated
	mu        sync.Mutex
	changed   chan struct{} // closed and replaced whenever ready changes
	slots     []*slot
	nextSlot  int
	stopping  chan struct{}
	stopOnce  sync.Once
	supervise sync.WaitGroup
	restarts  atomic.Int64
	// lastAcquireWarn is when pickWait last logged that no worker was ready (unix ns).
	lastAcquireWarn atomic.Int64
	draining        atomic.Int64 // retired workers finishing their streams
}

// slot is one place in the pool, filled by successive worker processes. Its supervisor goroutine
// (run) owns it.
type slot struct {
	id      int
	gen     int
	recycle chan recycleRequest // ask the supervisor for a rolling replacement
	remove  chan struct{}       // closed: drain the worker and end the slot (SIGTTOU)

	mu  sync.Mutex
	cur *proc
}

type recycleRequest struct {
	reason string
	done   chan struct{} // closed when the replacement is serving (or it failed); may be nil
	pr     *proc         // the worker to replace (nil: the slot's current one, as for a reload)
}

// proc is one worker process and its connection.
type proc struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	conn    *workerConn
	started time.Time
	limit   int64 // requests after which it is recycled (0: never)
}

func (pr *proc) kill() {
	if pr.cmd.Process != nil {
		pr.cmd.Process.Kill()
	}
}

// NewPool prepares a pool; Start spawns the workers. serverCert is the PEM of the TLS listener's
// certificate, sent to every worker ("" without TLS).
func NewPool(cfg *Config, python, serverCert string, log zerolog.Logger) (*Pool, error) {
	removeStaleSocketDirs(log)
	dir, err := os.MkdirTemp("", fmt.Sprintf("asgi-gateway-%d-", os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("create the worker socket directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restrict the worker socket directory: %w", err)
	}
	if u := cfg.WorkerUser; u != nil {
		// Only the workers' user (and root) may enter the directory and connect.
		if err := os.Chown(dir, u.UID, u.GID); err != nil {
			return nil, fmt.Errorf("give the worker socket directory to %s: %w", u.Name, err)
		}
	}
	p := &Pool{cfg: cfg, python: python, dir: dir, log: log, serverCert: serverCert, changed: make(chan struct{}),
		stopping: make(chan struct{})}
	empty := []*workerConn{}
	p.ready.Store(&empty)
	return p, nil
}

// Start spawns every worker and returns once all are ready, or with the first error (an
// *AppLoadError when the app cannot be imported). On error the pool is stopped.
func (p *Pool) Start() error {
	n := max(p.cfg.Workers, 1)
	results := make(chan error, n)
	for i := 0; i < n; i++ {
		p.addSlot(results)
	}
	var first error
	for i := 0; i < n; i++ {
		if err := <-results; err != nil && first == nil {
			first = err
			p.Stop(0)
		}
	}
	if first == nil { // (also without health checks: it trims the body rings)
		p.supervise.Add(1)
		go p.watchLoop()
	}
	return first
}

func (p *Pool) addSlot(first chan<- error) {
	p.mu.Lock()
	s := &slot{id: p.nextSlot, recycle: make(chan recycleRequest, 1), remove: make(chan struct{})}
	p.nextSlot++
	p.slots = append(p.slots, s)
	p.mu.Unlock()
	p.supervise.Add(1)
	go p.run(s, first)
}

// AddWorker adds a worker (SIGTTIN).
func (p *Pool) AddWorker() {
	select {
	case <-p.stopping:
	default:
		p.addSlot(nil)
	}
}

// RemoveWorker drains and stops the newest worker, keeping at least one (SIGTTOU).
func (p *Pool) RemoveWorker() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.slots) <= 1 {
		p.log.Warn().Msg("not removing the last worker")
		return
	}
	s := p.slots[len(p.slots)-1]
	p.slots = p.slots[:len(p.slots)-1]
	close(s.remove)
}

// Reload replaces every worker, one at a time, each replacement ready before its old worker stops
// taking traffic (SIGHUP). New workers import the app afresh, so code changes take effect.
func (p *Pool) Reload() {
	p.mu.Lock()
	slots := append([]*slot(nil), p.slots...)
	p.mu.Unlock()
	for _, s := range slots {
		done := make(chan struct{})
		select {
		case s.recycle <- recycleRequest{reason: "reload", done: done}:
		case <-p.stopping:
			return
		case <-s.remove:
			continue
		}
		select {
		case <-done:
		case <-p.stopping:
			return
		}
	}
}

// run is a slot's supervisor: it keeps one worker serving in the slot until the pool stops or the
// slot is removed. The first start's outcome goes to first (when not nil).
func (p *Pool) run(s *slot, first chan<- error) {
	defer p.supervise.Done()
	backoff := 100 * time.Millisecond
	// A replacement that failed to start is tried again by the next request of the limit that asked
	// for it (each second); these keep a broken app from being started (and its traceback logged)
	// that often: from 1 s, doubling up to a minute. A reload (SIGHUP, --reload) does not wait.
	var retryAt time.Time
	retryWait := time.Second
	var cur *proc
	for {
		if cur == nil {
			pr, err := p.spawn(s)
			if err != nil && first != nil {
				first <- err
				return
			}
			if err != nil {
				if p.stopped() {
					return
				}
				p.cfg.Metrics.WorkerStartFailed()
				p.log.Error().Err(err).Int("worker", s.id).Dur("retry_in", backoff).Msg("worker failed to start")
				select {
				case <-time.After(backoff):
				case <-p.stopping:
					return
				case <-s.remove:
					return
				case req := <-s.recycle:
					// A reload of a slot without a worker (Reload waits for it): the next start is
					// the new worker, and it starts now (the code may be fixed).
					if req.done != nil {
						close(req.done)
					}
				}
				backoff = min(2*backoff, 10*time.Second)
				continue
			}
			cur = pr
			s.setCur(pr)
			p.publish(pr.conn, nil)
			p.log.Info().Int("worker", s.id).Int("pid", pr.conn.pid).Msg("worker ready")
			if first != nil {
				// Only once published: Start returns when every first worker takes traffic (and
				// Workers lists them all).
				first <- nil
				first = nil
			}
		}
		select {
		case <-cur.conn.done:
		case <-cur.exited:
			cur.conn.fail(errProcessExited)
		case <-p.stopping:
			return // Stop ends the processes
		case <-s.remove:
			p.publish(nil, cur.conn)
			p.drain(cur, "removed")
			return
		case req := <-s.recycle:
			if req.pr != nil && req.pr != cur {
				continue // about a worker already replaced (asked again while its replacement started)
			}
			if req.done == nil && time.Now().Before(retryAt) {
				continue // the last replacement failed to start a moment ago
			}
			next, err := p.spawn(s)
			if err != nil {
				p.cfg.Metrics.WorkerStartFailed()
				ev := p.log.Error().Err(err).Int("worker", s.id).Str("reason", req.reason)
				if req.done == nil {
					// (a limit asks again after retry_in; a reload is tried again by the next reload)
					ev = ev.Dur("retry_in", retryWait)
				}
				ev.Msg("replacement worker failed to start; keeping the old one")
				retryAt = time.Now().Add(retryWait)
				retryWait = min(2*retryWait, time.Minute)
			} else {
				retryAt, retryWait = time.Time{}, time.Second
				p.restarts.Add(1)
				p.cfg.Metrics.WorkerRestarted(req.reason)
				s.setCur(next)
				p.publish(next.conn, cur.conn) // the new one takes traffic before the old one leaves
				p.log.Info().Int("worker", s.id).Int("pid", next.conn.pid).Int("old_pid", cur.conn.pid).Str("reason", req.reason).Msg("worker replaced")
				old := cur
				cur = next
				p.supervise.Add(1)
				go func() {
					defer p.supervise.Done()
					p.drain(old, req.reason)
				}()
			}
			if req.done != nil {
				close(req.done)
			}
			continue
		}
		// The worker died (or broke the protocol, or failed its health check).
		p.publish(nil, cur.conn)
		if connClosed(cur.conn.err()) {
			// Its socket closed as it exits: its own exit status says why (describeExit), not
			// the SIGKILL that would beat it to the exit.
			select {
			case <-cur.exited:
			case <-time.After(2 * time.Second):
			}
		}
		cur.kill()
		<-cur.exited
		if p.stopped() {
			return
		}
		p.restarts.Add(1)
		reason := "died"
		if errors.Is(cur.conn.err(), errHealthCheck) {
			reason = "health"
		}
		p.cfg.Metrics.WorkerRestarted(reason)
		p.log.Error().Int("worker", s.id).Int("pid", cur.conn.pid).Str("reason", describeExit(cur.cmd, cur.conn.err())).Msg("worker died; starting a new one")
		if time.Since(cur.started) > 10*time.Second {
			backoff = 100 * time.Millisecond
		} else {
			select {
			case <-time.After(backoff):
			case <-p.stopping:
				return
			}
			backoff = min(2*backoff, 10*time.Second)
		}
		cur = nil
	}
}

func (p *Pool) stopped() bool {
	select {
	case <-p.stopping:
		return true
	default:
		return false
	}
}

func (s *slot) setCur(pr *proc) {
	s.mu.Lock()
	s.cur = pr
	s.mu.Unlock()
}

// drain retires a worker that no longer takes new streams: its WebSockets are closed (1012), its
// other streams get up to GracefulTimeout to finish, then it is asked to stop (SHUTDOWN: it cancels
// what still runs, runs the lifespan shutdown and exits), and killed if it does not.
func (p *Pool) drain(pr *proc, reason string) {
	p.draining.Add(1)
	defer p.draining.Add(-1)
	deadline := time.After(p.cfg.GracefulTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	// Its WebSockets would never end by themselves: closed at once, as at shutdown (1012 to the
	// client and the app).
	pr.conn.goingAway()
wait:
	for pr.conn.inflight.Load() > 0 {
		select {
		case <-tick.C:
		case <-deadline:
			break wait
		case <-pr.exited:
			break wait
		case <-p.stopping:
			break wait
		}
	}
	// What is still running is cancelled now (SHUTDOWN with no grace left); the worker runs its
	// lifespan shutdown and exits, or is killed (logged) a few seconds later.
	p.shutdown(pr, 0)
	p.log.Debug().Int("pid", pr.conn.pid).Str("reason", reason).Msg("old worker stopped")
}

// shutdown asks a worker to stop within grace (SHUTDOWN frame; SIGTERM when the connection is gone):
// its requests get grace, then its lifespan shutdown runs. lifespan.rst: "A server must wait for
// this message before terminating"; uvicorn waits without bound, hypercorn 60 s. Here the lifespan
// shutdown gets --timeout-lifespan-shutdown (10 s; 0: no bound) from when the worker's streams
// have ended or the grace has passed, whichever is first (it begins then), also when a worker is
// replaced (grace 0); a worker that has not exited by then is killed, logged. (10 s: time for a
// real cleanup, while a hung one holds neither a shutdown nor a reload's old worker for long;
// `docker stop` waits as long before its SIGKILL.)
func (p *Pool) shutdown(pr *proc, grace time.Duration) {
	if pr.conn.err() == nil {
		pr.conn.sendShutdown(grace)
	} else if pr.cmd.Process != nil {
		pr.cmd.Process.Signal(syscall.SIGTERM)
	}
	lifespan := p.cfg.LifespanTimeout
	if lifespan <= 0 {
		<-pr.exited
		pr.conn.fail(errors.New("worker stopped"))
		return
	}
	began := time.Now()
	graceOver := time.NewTimer(grace)
	defer graceOver.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
requests:
	for pr.conn.inflight.Load() > 0 {
		select {
		case <-pr.exited:
			pr.conn.fail(errors.New("worker stopped"))
			return
		case <-graceOver.C:
			break requests
		case <-tick.C:
		}
	}
	bound := time.NewTimer(lifespan)
	defer bound.Stop()
	select {
	case <-pr.exited:
	case <-bound.C:
		pid := 0
		if pr.cmd.Process != nil {
			pid = pr.cmd.Process.Pid
		}
		p.log.Warn().Int("pid", pid).Dur("waited", time.Since(began)).
			Msg("a worker did not exit: its lifespan shutdown (or a task that ignores cancellation) ran past --timeout-lifespan-shutdown; killed")
		pr.kill()
		<-pr.exited
	}
	pr.conn.fail(errors.New("worker stopped"))
}

// watchLoop pings every ready worker and kills one whose event loop has not answered within
// HealthTimeout (a blocked loop: a sync call, a CPU-bound handler, a deadlock); its supervisor then
// starts a replacement. It also asks for the soft recycling of workers past their memory or age limit.
func (p *Pool) watchLoop() {
	defer p.supervise.Done()
	period := time.Second
	if t := p.cfg.HealthTimeout; t > 0 {
		period = min(t/4, period)
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-p.stopping:
			return
		}
		now := time.Now().UnixNano()
		if timeout := p.cfg.HealthTimeout; timeout > 0 {
			for _, w := range *p.ready.Load() {
				if w.pingSent != 0 && w.lastPong.Load() != w.pingSent {
					if time.Duration(now-w.pingSent) > timeout {
						p.log.Error().Int("worker", w.id).Int("pid", w.pid).Dur("timeout", timeout).
							Msg("worker did not answer its health check (event loop blocked?); killing it")
						w.fail(fmt.Errorf("%w within %s", errHealthCheck, timeout))
					}
					continue
				}
				w.pingSent = now
				w.sendPing(uint64(now))
			}
		}
		p.mu.Lock()
		slots := append([]*slot(nil), p.slots...)
		p.mu.Unlock()
		for _, s := range slots {
			s.mu.Lock()
			pr := s.cur
			s.mu.Unlock()
			if pr == nil || pr.conn.err() != nil {
				continue
			}
			pr.conn.trimRing()
			reason := ""
			if pr.limit > 0 && pr.conn.served.Load() >= pr.limit {
				// (open asked at once when the limit was reached; this asks again if that
				// replacement failed to start)
				reason = "max-requests"
			} else if p.cfg.Lifetime > 0 && time.Since(pr.started) > p.cfg.Lifetime {
				reason = "lifetime"
			} else if p.cfg.MaxRSS > 0 {
				if rss, err := rssBytes(pr.cmd.Process.Pid); err == nil && rss > p.cfg.MaxRSS {
					reason = "max-rss"
				}
			}
			if reason != "" {
				select {
				case s.recycle <- recycleRequest{reason: reason, pr: pr}:
				default: // one already pending
				}
			}
		}
	}
}

// rssBytes reads a process's resident set size from /proc.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return 0, fmt.Errorf("unexpected statm %q", b)
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	return pages * int64(os.Getpagesize()), err
}

// connClosed reports whether a worker connection ended because the worker closed it (or exited),
// not because the gateway gave up on it (a protocol error, a failed health check).
func connClosed(err error) bool {
	return errors.Is(err, errProcessExited) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

func describeExit(cmd *exec.Cmd, connErr error) string {
	if connErr != nil && !connClosed(connErr) {
		return connErr.Error() // the gateway ended it: a protocol error, a failed health check
	}
	// The worker went away by itself (its socket closed as it exited): how it exited says why.
	if cmd != nil && cmd.ProcessState != nil {
		if st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return "killed by " + unix.SignalName(st.Signal()) + " (" + st.Signal().String() + ")"
		}
		return "exit status " + strconv.Itoa(cmd.ProcessState.ExitCode())
	}
	if connErr != nil {
		return connErr.Error()
	}
	return "unknown"
}

// publish adds add to, and removes remove from, the set of workers taking traffic, in one step.
func (p *Pool) publish(add, remove *workerConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.ready.Load()
	next := make([]*workerConn, 0, len(old)+1)
	for _, x := range old {
		if x != remove && x != add {
			next = append(next, x)
		}
	}
	if add != nil {
		next = append(next, add)
	}
	p.ready.Store(&next)
	close(p.changed)
	p.changed = make(chan struct{})
}

// pick returns the ready worker with the fewest open streams, or nil if none is ready. A worker past
// its --limit-max-requests (waiting for its replacement) is picked only when no other is ready.
func (p *Pool) pick() *workerConn {
	ws := *p.ready.Load()
	var best *workerConn
	var least int64
	bestRetiring := true
	for _, w := range ws {
		retiring := w.retiring.Load()
		n := w.inflight.Load()
		if best == nil || (bestRetiring && !retiring) || (retiring == bestRetiring && n < least) {
			best, least, bestRetiring = w, n, retiring
		}
	}
	return best
}

// pickWait is pick, waiting up to wait for a worker to become ready (while one is being replaced).
func (p *Pool) pickWait(wait time.Duration) *workerConn {
	if w := p.pick(); w != nil {
		return w
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		ch := p.changed
		p.mu.Unlock()
		if w := p.pick(); w != nil {
			return w
		}
		select {
		case <-ch:
		case <-deadline.C:
			// The access log shows the 503; this says why (at most once a second).
			now := time.Now().UnixNano()
			if last := p.lastAcquireWarn.Load(); now-last >= int64(time.Second) && p.lastAcquireWarn.CompareAndSwap(last, now) {
				p.log.Warn().Dur("waited", wait).
					Msg("no worker ready within --timeout-worker-acquire (starting, or failing to start): answering 503")
			}
			return nil
		case <-p.stopping:
			return nil
		}
	}
}

// spawn starts one worker process in slot s and waits for its HELLO.
func (p *Pool) spawn(s *slot) (*proc, error) {
	s.gen++
	sock := filepath.Join(p.dir, fmt.Sprintf("w%d.%d.sock", s.id, s.gen))
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on worker socket: %w", err)
	}
	defer ln.Close()
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(sock, 0o600); err != nil {
		return nil, fmt.Errorf("restrict worker socket: %w", err)
	}
	if u := p.cfg.WorkerUser; u != nil {
		if err := os.Chown(sock, u.UID, u.GID); err != nil {
			return nil, fmt.Errorf("give the worker socket to %s: %w", u.Name, err)
		}
	}

	args := []string{"-m", "python_worker", "--socket", sock, "--app", p.cfg.App,
		"--worker-id", strconv.Itoa(s.id), "--log-level", p.cfg.LogLevel}
	if p.cfg.AppDir != "" {
		args = append(args, "--app-dir", p.cfg.AppDir)
	}
	if p.cfg.Factory {
		args = append(args, "--factory")
	}
	if p.cfg.Interface != "" && p.cfg.Interface != "auto" { // auto is the worker's default
		args = append(args, "--interface", p.cfg.Interface)
	}
	if p.cfg.LogConfig != "" {
		args = append(args, "--log-config", p.cfg.LogConfig)
	}
	if p.cfg.Lifespan != "" && p.cfg.Lifespan != "auto" { // auto is the worker's default
		args = append(args, "--lifespan", p.cfg.Lifespan)
	}
	var ring *bodyRing
	if p.cfg.BodyRing > 0 {
		if ring, err = newBodyRing(p.cfg.BodyRing); err != nil {
			// Not fatal: bodies go through the socket instead.
			p.log.Warn().Err(err).Int("worker", s.id).Msg("no body ring for this worker")
		} else {
			args = append(args, "--ring-fd", strconv.Itoa(ringWorkerFD))
		}
	}
	cmd := exec.Command(p.python, args...)
	if ring != nil {
		cmd.ExtraFiles = []*os.File{ring.file} // the worker's descriptor 3
	}
	cmd.Env = append(append(os.Environ(), p.cfg.WorkerEnv...), "PYTHONUNBUFFERED=1")
	// Own process group (a terminal's Ctrl-C goes to the gateway only, which stops the workers in
	// order) and death with the gateway.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if u := p.cfg.WorkerUser; u != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID)}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("worker stdout: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("worker stderr: %w", err)
	}
	if err := cmd.Start(); err != nil {
		if ring != nil {
			ring.close()
		}
		return nil, fmt.Errorf("start %s: %w", p.python, err)
	}
	if ring != nil {
		ring.closeFile() // the worker has its own descriptor now
	}
	tail := &lineTail{}
	pr := &proc{cmd: cmd, exited: make(chan struct{}), started: time.Now()}
	var outputs sync.WaitGroup
	outputs.Add(2)
	go p.forward(stdout, s.id, "stdout", nil, &outputs)
	go p.forward(stderr, s.id, "stderr", tail, &outputs)
	go func() {
		outputs.Wait() // Wait may only run once the pipes are drained
		cmd.Wait()
		close(pr.exited)
	}()

	w, err := p.handshake(s, ln, pr.exited, ring)
	if err != nil {
		if ring != nil {
			ring.close()
		}
		pr.kill()
		<-pr.exited
		return nil, p.explain(err, cmd, tail)
	}
	pr.conn = w
	if n := p.cfg.MaxRequests; n > 0 {
		pr.limit = int64(n)
		if j := p.cfg.MaxRequestsJitter; j > 0 {
			pr.limit += rand.Int64N(int64(j) + 1)
		}
		w.maxServed = pr.limit
		w.onLimit = func() {
			select {
			case s.recycle <- recycleRequest{reason: "max-requests", pr: pr}:
			default:
			}
		}
	}
	w.start()
	return pr, nil
}

// handshake accepts the worker's connection and exchanges HELLOs.
// With a body ring, the gateway's HELLO offers it; the connection uses it if the worker's HELLO
// says it mapped it, and unmaps it otherwise.
func (p *Pool) handshake(s *slot, ln *net.UnixListener, exited <-chan struct{}, ring *bodyRing) (*workerConn, error) {
	var ringSize uint64
	if ring != nil {
		ringSize = ring.size
	}
	deadline := time.Now().Add(p.cfg.StartupTimeout)
	ln.SetDeadline(deadline)
	type accepted struct {
		c   *net.UnixConn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.AcceptUnix()
		ch <- accepted{c, err}
	}()
	var nc *net.UnixConn
	select {
	case a := <-ch:
		if a.err != nil {
			if errors.Is(a.err, os.ErrDeadlineExceeded) {
				return nil, fmt.Errorf("the worker was not ready within %s: the app's import or its lifespan startup did not finish (--timeout-worker-startup)", p.cfg.StartupTimeout)
			}
			return nil, fmt.Errorf("accept worker connection: %w", a.err)
		}
		nc = a.c
	case <-exited:
		ln.Close()
		return nil, errExitedEarly
	case <-p.stopping:
		ln.Close()
		return nil, errors.New("stopping")
	}
	nc.SetDeadline(deadline)
	hello := protocol.AppendGatewayHello(nil, &protocol.GatewayHello{
		Protocol: protocol.Version, PID: uint64(os.Getpid()),
		MaxFrame: uint64(p.cfg.frameLimit()), Window: uint64(p.cfg.Window), WorkerID: uint64(s.id),
		ServerCert: p.serverCert, Ring: ringSize,
	})
	// A write error is not final: a worker that failed to load the app sends its error HELLO and
	// exits without reading ours, and that HELLO is what to report.
	_, werr := nc.Write(hello)
	sock, err := newRawSock(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("worker socket: %w", err)
	}
	r := protocol.NewReader(sock, p.cfg.frameLimit())
	payload, err := r.Next()
	if err != nil {
		nc.Close()
		select {
		case <-exited:
			return nil, errExitedEarly
		case <-time.After(2 * time.Second):
		}
		if werr != nil {
			return nil, fmt.Errorf("send hello to worker: %w", werr)
		}
		return nil, fmt.Errorf("read the worker's hello: %w", err)
	}
	var f protocol.Frame
	if err := f.Decode(payload); err != nil || f.Type != protocol.TypeWorkerHello {
		nc.Close()
		return nil, fmt.Errorf("the worker's first frame is not a HELLO (%v)", err)
	}
	h := f.WorkerHello
	if h.Error != "" {
		nc.Close()
		return nil, &AppLoadError{Message: h.Error}
	}
	if h.Protocol != protocol.Version {
		nc.Close()
		return nil, fmt.Errorf("the worker speaks protocol version %d, the gateway %d: install the worker package from this release", h.Protocol, protocol.Version)
	}
	nc.SetDeadline(time.Time{})
	w := newWorkerConn(s.id, int(h.PID), nc, sock, r, p.cfg.Window, p.cfg.frameLimit())
	w.smallWindow = slices.Contains(h.Features, "small-window")
	if ring != nil {
		if slices.Contains(h.Features, "ring") {
			w.ring = ring
		} else {
			p.log.Debug().Int("worker", s.id).Msg("the worker does not use the body ring")
			ring.close()
		}
	}
	return w, nil
}

var (
	errExitedEarly   = errors.New("the worker exited before it was ready")
	errHealthCheck   = errors.New("no answer to the health check")
	errProcessExited = errors.New("worker process exited")
)

// IsAppStartFailure reports whether a failed Start is the app's doing (it did not import, its
// lifespan startup failed, its worker exited while starting), which a change to its code may mend.
func IsAppStartFailure(err error) bool {
	var appErr *AppLoadError
	return errors.As(err, &appErr) || errors.Is(err, errExitedEarly)
}

// explain turns a failed start into one message a person can act on.
func (p *Pool) explain(err error, cmd *exec.Cmd, tail *lineTail) error {
	var appErr *AppLoadError
	if errors.As(err, &appErr) {
		return err
	}
	if !errors.Is(err, errExitedEarly) {
		return err
	}
	out := tail.String()
	code := -1 // (also for a worker killed by a signal: described as such below)
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	how := describeExit(cmd, nil)
	switch {
	case strings.Contains(out, "No module named python_worker"):
		return fmt.Errorf("the worker package is not installed in %s: pip install the python_worker directory of asgi-gateway into that environment (or pass --python)", p.python)
	case code == 4 && strings.Contains(out, "msgpack") || strings.Contains(out, "No module named 'msgpack'"):
		// (the worker's own exit status for it, with its message: an app may exit 4 at import too)
		return fmt.Errorf("the Python package msgpack is not installed in %s (pip install msgpack)", p.python)
	case code == 3 && out != "":
		return &AppLoadError{Message: lastLines(out, 12)}
	}
	if out == "" {
		return fmt.Errorf("%w (%s)", errExitedEarly, how)
	}
	return fmt.Errorf("%w (%s):\n%s", errExitedEarly, how, lastLines(out, 12))
}

// forward copies a worker's output to the log, line by line, with the worker id; tail keeps the last
// lines for error messages. The lines are not filtered by --log-level: the worker's logging already
// applies it (or the app's --log-config decides), and the rest is the app's own output (print(), a
// traceback it writes), which uvicorn never filters either. Each line is tagged with the level it
// names (stderrLevels), info on stdout. A line longer than maxLogLine is logged cut (its start and
// its last keptEnd bytes, where a logged traceback has its exception line), with its full length,
// and what follows it is still forwarded. It ends at EOF (the process exited).
func (p *Pool) forward(r io.Reader, id int, stream string, tail *lineTail, done *sync.WaitGroup) {
	defer done.Done()
	const maxLogLine = 64 << 10
	const keptEnd = 8 << 10
	br := bufio.NewReaderSize(r, maxLogLine)
	var levels stderrLevels
	out := p.log.Level(zerolog.TraceLevel)
	for {
		chunk, isPrefix, err := br.ReadLine()
		if len(chunk) > 0 || (err == nil && !isPrefix) {
			line := string(chunk)
			dropped := 0   // bytes after the first maxLogLine
			var end []byte // the line's last keptEnd bytes after its first maxLogLine
			for isPrefix && err == nil {
				var more []byte
				more, isPrefix, err = br.ReadLine()
				dropped += len(more)
				end = append(end, more...)
				if len(end) > 2*keptEnd {
					end = append(end[:0:0], end[len(end)-keptEnd:]...)
				}
			}
			if len(end) > keptEnd {
				end = end[len(end)-keptEnd:]
			}
			total, cut := len(chunk)+dropped, dropped-len(end)
			if cut > 0 {
				line += fmt.Sprintf(" [... %d bytes cut ...] ", cut)
			}
			line += string(end)
			ev := out.Info()
			if stream == "stderr" {
				ev = out.WithLevel(levels.of(line))
				if strings.IndexByte(line, '\r') >= 0 {
					line = strings.ReplaceAll(line, "\r", "\n") // one record's lines (OneLineFormatter)
				}
			}
			if tail != nil {
				tail.add(line)
			}
			if cut > 0 {
				ev = ev.Int("line_bytes", total).Bool("cut", true)
			}
			ev.Int("worker", id).Str("stream", stream).Msg(line)
		}
		if err != nil {
			return
		}
	}
}

// stderrLevels gives the lines of a worker's stderr their log levels: a logging record's own (its
// "LEVEL [logger] message" line holds the whole record, traceback included), and error for every
// line of a traceback written outside logging (sys.excepthook, traceback.print_exc(), an app's own
// handler), from its "Traceback" line through the exception line that ends it, and the lines that
// chain it to the next one.
type stderrLevels struct {
	inTraceback bool // after a "Traceback" line, until its exception line
	afterOne    bool // right after an exception line: a chained traceback may follow
}

func (s *stderrLevels) of(line string) zerolog.Level {
	chained := line == "" || strings.HasPrefix(line, "During handling of the above exception") ||
		strings.HasPrefix(line, "The above exception was the direct cause")
	switch {
	case strings.HasPrefix(line, "Traceback"):
		s.inTraceback, s.afterOne = true, false
		return zerolog.ErrorLevel
	case s.inTraceback:
		if line == "" || line[0] == ' ' || line[0] == '\t' || chained {
			return zerolog.ErrorLevel // its frames and source lines
		}
		s.inTraceback, s.afterOne = false, true
		return zerolog.ErrorLevel // the exception line
	case s.afterOne && chained:
		return zerolog.ErrorLevel
	}
	s.afterOne = false
	return pythonLevel(line)
}

// pythonLevel maps the worker's "LEVEL [logger] message" lines to log levels. A line in another
// format (an app's --log-config, such as "2006-01-02 15:04:05,000 - app - ERROR - message" or
// "[ERROR] message") gets the level named by one of its first few words, else info.
func pythonLevel(line string) zerolog.Level {
	switch {
	case strings.HasPrefix(line, "ERROR"), strings.HasPrefix(line, "CRITICAL"), strings.HasPrefix(line, "Traceback"):
		return zerolog.ErrorLevel
	case strings.HasPrefix(line, "WARNING"):
		return zerolog.WarnLevel
	case strings.HasPrefix(line, "DEBUG"):
		return zerolog.DebugLevel
	case strings.HasPrefix(line, "TRACE"):
		return zerolog.TraceLevel
	case strings.HasPrefix(line, "INFO"):
		return zerolog.InfoLevel
	}
	rest := line
	for range 6 {
		var word string
		word, rest, _ = strings.Cut(strings.TrimLeft(rest, " \t"), " ")
		switch strings.Trim(word, "[]():|-,") {
		case "ERROR", "CRITICAL", "FATAL":
			return zerolog.ErrorLevel
		case "WARNING", "WARN":
			return zerolog.WarnLevel
		case "INFO":
			return zerolog.InfoLevel
		case "DEBUG":
			return zerolog.DebugLevel
		case "TRACE":
			return zerolog.TraceLevel
		}
		if rest == "" {
			break
		}
	}
	return zerolog.InfoLevel
}

// lineTail keeps the last lines written to it.
type lineTail struct {
	mu    sync.Mutex
	lines []string
}

func (t *lineTail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > 40 {
		t.lines = t.lines[len(t.lines)-40:]
	}
}

func (t *lineTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Workers returns the pids of the ready workers (for logs and tests).
func (p *Pool) Workers() []int {
	var pids []int
	for _, w := range *p.ready.Load() {
		pids = append(pids, w.pid)
	}
	return pids
}

// Restarts counts worker replacements (deaths and recycling).
func (p *Pool) Restarts() int64 { return p.restarts.Load() }

// Stop stops taking traffic and ends every worker: SHUTDOWN with grace (each finishes its streams
// within it, cancels the rest and runs the lifespan shutdown), SIGTERM if its connection is gone, and
// SIGKILL when it has not exited once its lifespan shutdown has had its own allowance (shutdown).
func (p *Pool) Stop(grace time.Duration) {
	p.stopOnce.Do(func() {
		close(p.stopping)
		p.mu.Lock()
		slots := append([]*slot(nil), p.slots...)
		p.mu.Unlock()
		var wg sync.WaitGroup
		for _, s := range slots {
			s.mu.Lock()
			pr := s.cur
			s.mu.Unlock()
			if pr == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.shutdown(pr, grace)
			}()
		}
		wg.Wait()
		p.supervise.Wait()
		os.RemoveAll(p.dir)
	})
}

// removeStaleSocketDirs removes the socket directories of earlier gateways that died without
// cleaning up (the directory name carries the owner's pid; only ours, by uid, and only dead owners).
func removeStaleSocketDirs(log zerolog.Logger) {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), "asgi-gateway-*-*"))
	for _, dir := range matches {
		rest := strings.TrimPrefix(filepath.Base(dir), "asgi-gateway-")
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		fi, err := os.Stat(dir)
		if err != nil || !fi.IsDir() {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() && os.Getuid() != 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			if os.RemoveAll(dir) == nil {
				log.Debug().Str("dir", dir).Msg("removed the socket directory of a gateway that is gone")
			}
		}
	}
}

// WorkerUser is the account the workers run as (--worker-user).
type WorkerUser struct {
	Name     string
	UID, GID int
}

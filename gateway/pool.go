package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// AppLoadError is a worker's report that the app could not be imported. It is final: respawning
// would fail the same way, so the gateway reports it and exits.
type AppLoadError struct {
	Message string
}

func (e *AppLoadError) Error() string { return "cannot load the app: " + e.Message }

// Pool spawns the worker processes, supervises them (a worker that dies or breaks the protocol is
// replaced, with backoff when it keeps dying) and routes each new stream to the least busy one.
type Pool struct {
	cfg    *Config
	python string
	dir    string // private 0700 directory for the worker sockets
	log    zerolog.Logger

	ready     atomic.Pointer[[]*workerConn] // workers taking traffic; replaced, never mutated
	mu        sync.Mutex
	changed   chan struct{} // closed and replaced whenever ready changes
	slots     []*slot
	stopping  chan struct{}
	stopOnce  sync.Once
	supervise sync.WaitGroup
}

// slot is one place in the pool, filled by successive worker processes.
type slot struct {
	id  int
	gen int

	mu     sync.Mutex
	cmd    *exec.Cmd
	conn   *workerConn
	exited chan struct{}
}

// NewPool prepares a pool; Start spawns the workers.
func NewPool(cfg *Config, python string, log zerolog.Logger) (*Pool, error) {
	dir, err := os.MkdirTemp("", "asgi-gateway-")
	if err != nil {
		return nil, fmt.Errorf("create the worker socket directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restrict the worker socket directory: %w", err)
	}
	p := &Pool{cfg: cfg, python: python, dir: dir, log: log, changed: make(chan struct{}), stopping: make(chan struct{})}
	empty := []*workerConn{}
	p.ready.Store(&empty)
	return p, nil
}

// Start spawns every worker and returns once all are ready, or with the first error (an
// *AppLoadError when the app cannot be imported). On error the pool is stopped.
func (p *Pool) Start() error {
	n := p.cfg.Workers
	if n < 1 {
		n = 1
	}
	results := make(chan error, n)
	for i := 0; i < n; i++ {
		s := &slot{id: i}
		p.slots = append(p.slots, s)
		p.supervise.Add(1)
		go p.run(s, results)
	}
	var first error
	for i := 0; i < n; i++ {
		if err := <-results; err != nil && first == nil {
			first = err
			p.Stop(0)
		}
	}
	if first == nil && p.cfg.HealthTimeout > 0 {
		p.supervise.Add(1)
		go p.healthLoop()
	}
	return first
}

// healthLoop pings every ready worker and kills one whose event loop has not answered within
// HealthTimeout (a blocked loop: a sync call, a CPU-bound handler, a deadlock). Its supervisor then
// starts a replacement.
func (p *Pool) healthLoop() {
	defer p.supervise.Done()
	timeout := p.cfg.HealthTimeout
	tick := time.NewTicker(min(timeout/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-p.stopping:
			return
		}
		now := time.Now().UnixNano()
		for _, w := range *p.ready.Load() {
			if w.pingSent != 0 && w.lastPong.Load() != w.pingSent {
				if time.Duration(now-w.pingSent) > timeout {
					p.log.Error().Int("worker", w.id).Int("pid", w.pid).Dur("timeout", timeout).
						Msg("worker did not answer its health check (event loop blocked?); killing it")
					w.fail(fmt.Errorf("no answer to the health check within %s", timeout))
				}
				continue
			}
			w.pingSent = now
			w.sendPing(uint64(now))
		}
	}
}

// run is a slot's supervisor: it starts a worker, publishes it, waits for it to fail, and starts the
// next, until the pool stops. The first start's outcome goes to first.
func (p *Pool) run(s *slot, first chan<- error) {
	defer p.supervise.Done()
	backoff := 100 * time.Millisecond
	for {
		started := time.Now()
		w, err := p.spawn(s)
		if first != nil {
			first <- err
			first = nil
			if err != nil {
				return
			}
		}
		if err != nil {
			select {
			case <-p.stopping:
				return
			default:
			}
			p.log.Error().Err(err).Int("worker", s.id).Dur("retry_in", backoff).Msg("worker failed to start")
		} else {
			p.publish(w, true)
			p.log.Info().Int("worker", s.id).Int("pid", w.pid).Msg("worker ready")
			select {
			case <-w.done:
			case <-s.exited:
				w.fail(errors.New("worker process exited"))
			case <-p.stopping:
				p.publish(w, false)
				return
			}
			p.publish(w, false)
			s.kill()
			<-s.exited
			select {
			case <-p.stopping:
				return
			default:
			}
			p.log.Error().Int("worker", s.id).Int("pid", w.pid).Str("reason", describeExit(s.cmd, w.err())).Msg("worker died; starting a new one")
			if time.Since(started) > 10*time.Second {
				backoff = 100 * time.Millisecond
			}
		}
		select {
		case <-time.After(backoff):
		case <-p.stopping:
			return
		}
		if backoff < 10*time.Second {
			backoff *= 2
		}
	}
}

func describeExit(cmd *exec.Cmd, connErr error) string {
	if cmd != nil && cmd.ProcessState != nil {
		if st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return "killed by signal " + st.Signal().String()
		}
		return "exit status " + strconv.Itoa(cmd.ProcessState.ExitCode())
	}
	if connErr != nil {
		return connErr.Error()
	}
	return "unknown"
}

// publish adds w to, or removes it from, the set of workers taking traffic.
func (p *Pool) publish(w *workerConn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.ready.Load()
	next := make([]*workerConn, 0, len(old)+1)
	for _, x := range old {
		if x != w {
			next = append(next, x)
		}
	}
	if add {
		next = append(next, w)
	}
	p.ready.Store(&next)
	close(p.changed)
	p.changed = make(chan struct{})
}

// pick returns the ready worker with the fewest open streams, or nil if none is ready.
func (p *Pool) pick() *workerConn {
	ws := *p.ready.Load()
	var best *workerConn
	var least int64
	for _, w := range ws {
		if n := w.inflight.Load(); best == nil || n < least {
			best, least = w, n
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
			return nil
		case <-p.stopping:
			return nil
		}
	}
}

// spawn starts one worker process in slot s and waits for its HELLO.
func (p *Pool) spawn(s *slot) (*workerConn, error) {
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

	args := []string{"-m", "python_worker", "--socket", sock, "--app", p.cfg.App,
		"--worker-id", strconv.Itoa(s.id), "--log-level", p.cfg.LogLevel}
	if p.cfg.AppDir != "" {
		args = append(args, "--app-dir", p.cfg.AppDir)
	}
	if p.cfg.Factory {
		args = append(args, "--factory")
	}
	cmd := exec.Command(p.python, args...)
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1")
	// Own process group (a terminal's Ctrl-C goes to the gateway only, which stops the workers in
	// order) and death with the gateway.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("worker stdout: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("worker stderr: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.python, err)
	}
	tail := &lineTail{}
	exited := make(chan struct{})
	var outputs sync.WaitGroup
	outputs.Add(2)
	go p.forward(stdout, s.id, "stdout", nil, &outputs)
	go p.forward(stderr, s.id, "stderr", tail, &outputs)
	go func() {
		outputs.Wait() // Wait may only run once the pipes are drained
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	w, err := p.handshake(s, ln, exited)
	if err != nil {
		s.kill()
		<-exited
		return nil, p.explain(err, cmd, tail)
	}
	s.mu.Lock()
	s.conn = w
	s.mu.Unlock()
	w.start()
	return w, nil
}

// handshake accepts the worker's connection and exchanges HELLOs.
func (p *Pool) handshake(s *slot, ln *net.UnixListener, exited <-chan struct{}) (*workerConn, error) {
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
				return nil, fmt.Errorf("the worker did not connect within %s (is the app slow to import?)", p.cfg.StartupTimeout)
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
		MaxFrame: uint64(p.cfg.MaxFrame), Window: uint64(p.cfg.Window), WorkerID: uint64(s.id),
	})
	if _, err := nc.Write(hello); err != nil {
		nc.Close()
		return nil, fmt.Errorf("send hello to worker: %w", err)
	}
	r := protocol.NewReader(nc, p.cfg.MaxFrame)
	payload, err := r.Next()
	if err != nil {
		nc.Close()
		select {
		case <-exited:
			return nil, errExitedEarly
		case <-time.After(2 * time.Second):
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
	return newWorkerConn(s.id, int(h.PID), nc, r, p.cfg.Window, p.cfg.MaxFrame), nil
}

var errExitedEarly = errors.New("the worker exited before it was ready")

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
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	switch {
	case strings.Contains(out, "No module named python_worker"):
		return fmt.Errorf("the worker package is not installed in %s: pip install the python_worker directory of asgi-gateway into that environment (or pass --python)", p.python)
	case code == 4 || strings.Contains(out, "No module named 'msgpack'"):
		return fmt.Errorf("the Python package msgpack is not installed in %s (pip install msgpack)", p.python)
	case code == 3 && out != "":
		return &AppLoadError{Message: lastLines(out, 12)}
	}
	if out == "" {
		return fmt.Errorf("%w (exit status %d)", errExitedEarly, code)
	}
	return fmt.Errorf("%w (exit status %d):\n%s", errExitedEarly, code, lastLines(out, 12))
}

// forward copies a worker's output to the log, line by line, with the worker id; tail keeps the last
// lines for error messages. It ends at EOF (the process exited).
func (p *Pool) forward(r io.Reader, id int, stream string, tail *lineTail, done *sync.WaitGroup) {
	defer done.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if tail != nil {
			tail.add(line)
		}
		ev := p.log.Info()
		if stream == "stderr" {
			ev = p.log.WithLevel(pythonLevel(line))
		}
		ev.Int("worker", id).Str("stream", stream).Msg(line)
	}
	if err := sc.Err(); err != nil {
		// A line longer than 1 MiB: drain the rest so the worker never blocks on a full pipe.
		io.Copy(io.Discard, r)
	}
}

// pythonLevel maps the worker's "LEVEL [logger] message" lines to log levels.
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

// kill ends the slot's current process, if any.
func (s *slot) kill() {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		cmd.Process.Kill()
	}
}

// Workers returns the pids of the ready workers (for logs and tests).
func (p *Pool) Workers() []int {
	var pids []int
	for _, w := range *p.ready.Load() {
		pids = append(pids, w.pid)
	}
	return pids
}

// Stop stops taking traffic and ends every worker: SIGTERM, then SIGKILL after grace.
func (p *Pool) Stop(grace time.Duration) {
	p.stopOnce.Do(func() {
		close(p.stopping)
		for _, s := range p.slots {
			s.mu.Lock()
			cmd, exited := s.cmd, s.exited
			s.mu.Unlock()
			if cmd == nil || cmd.Process == nil {
				continue
			}
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(grace):
				cmd.Process.Kill()
				<-exited
			}
			if s.conn != nil {
				s.conn.fail(errors.New("the gateway is stopping"))
			}
		}
		p.supervise.Wait()
		os.RemoveAll(p.dir)
	})
}

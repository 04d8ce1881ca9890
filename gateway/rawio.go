package gateway

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readRaw, writeRaw and writevRaw are read(2), write(2) and writev(2) on a non-blocking descriptor,
// made without the runtime's system-call bookkeeping (syscall.RawSyscall, not syscall.Syscall).
//
// A Syscall marks the goroutine's P as in a system call; a P seen there on two ticks of the
// runtime's monitor thread (sysmon, 20 µs apart while busy) is handed to another thread, and
// entering one wakes that monitor if it slept. A non-blocking socket call never sleeps, but its
// thread can be preempted inside it by the process it wakes (a worker on the same core): then the
// P moved to another thread, and the work of one goroutine spread over several, each switch a
// futex wake and a context switch. RawSyscall keeps the P where it is, as for any other short
// piece of work. Only for descriptors in non-blocking mode: a call that may block must not hold
// the P.
func readRaw(fd int, p []byte) (int, error) { return rawIO(syscall.SYS_READ, fd, p) }

func writeRaw(fd int, p []byte) (int, error) { return rawIO(syscall.SYS_WRITE, fd, p) }

func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, errno := syscall.RawSyscall(trap, uintptr(fd), uintptr(ptr), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// writevRaw is writev(2) of iov (see readRaw).
func writevRaw(fd int, iov []unix.Iovec) (int, error) {
	if len(iov) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// appendIovecs appends an iovec per non-empty piece of bufs to iov.
func appendIovecs(iov []unix.Iovec, bufs [][]byte) []unix.Iovec {
	for _, b := range bufs {
		if len(b) > 0 {
			v := unix.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			iov = append(iov, v)
		}
	}
	return iov
}

// rawSock reads and writes a worker's socket with readRaw and writeRaw, waiting in the runtime's
// poller (syscall.RawConn) while it has nothing to read or no room: the io.Reader of its
// protocol.Reader and its writer goroutine's Write. One reader and one writer at a time (each
// half keeps its own state); deadlines and Close on the connection apply as to its own Read and
// Write.
type rawSock struct {
	rc syscall.RawConn

	rbuf   []byte
	rn     int
	rerr   error
	readFn func(uintptr) bool

	wbuf    []byte
	wn      int
	werr    error
	writeFn func(uintptr) bool
}

func newRawSock(c syscall.Conn) (*rawSock, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	s := &rawSock{rc: rc}
	s.readFn, s.writeFn = s.readFd, s.writeFd
	return s, nil
}

// Read reads what the socket has, at least one byte, waiting for it; io.EOF once the peer closed.
func (s *rawSock) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rbuf, s.rn, s.rerr = p, 0, nil
	err := s.rc.Read(s.readFn)
	s.rbuf = nil
	if err != nil {
		return 0, err
	}
	return s.rn, s.rerr
}

func (s *rawSock) readFd(fd uintptr) bool {
	for {
		n, err := readRaw(int(fd), s.rbuf)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			s.rerr = err
		case n == 0:
			s.rerr = io.EOF
		default:
			s.rn = n
		}
		return true
	}
}

// Write writes all of p, waiting for room as often as it takes.
func (s *rawSock) Write(p []byte) (int, error) {
	s.wbuf, s.wn, s.werr = p, 0, nil
	err := s.rc.Write(s.writeFn)
	s.wbuf = nil
	if err == nil {
		err = s.werr
	}
	return s.wn, err
}

func (s *rawSock) writeFd(fd uintptr) bool {
	for len(s.wbuf) > 0 {
		n, err := writeRaw(int(fd), s.wbuf)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			s.werr = err
			return true
		}
		s.wn += n
		s.wbuf = s.wbuf[n:]
	}
	return true
}

// rawNetConn is a client connection whose Read and Write are a rawSock's: the connection under
// crypto/tls (HTTPS, HTTP/2 over TLS) or x/net/http2 (h2c), which read and write it through
// net.Conn. Reads and writes are each serialized here (net.Conn allows concurrent calls); errors
// are *net.OpError, as the connection's own.
type rawNetConn struct {
	net.Conn
	s    *rawSock
	rmu  sync.Mutex
	wmu  sync.Mutex
	netw string
}

// withRawIO returns nc with raw system calls for its reads and writes, or nc itself when it has
// no file descriptor.
func withRawIO(nc net.Conn) net.Conn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nc
	}
	s, err := newRawSock(sc)
	if err != nil {
		return nc
	}
	return &rawNetConn{Conn: nc, s: s, netw: nc.LocalAddr().Network()}
}

// CloseWrite shuts the write side of the connection under it, when it has one (TCP, Unix).
func (c *rawNetConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (c *rawNetConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	n, err := c.s.Read(p)
	c.rmu.Unlock()
	if err != nil && err != io.EOF {
		err = c.opError("read", err)
	}
	return n, err
}

func (c *rawNetConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	n, err := c.s.Write(p)
	c.wmu.Unlock()
	if err != nil {
		err = c.opError("write", err)
	}
	return n, err
}

func (c *rawNetConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.netw, Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// unixPair returns both ends of a connected Unix stream socket, the first wrapped in a rawSock.
func unixPair(t *testing.T) (*rawSock, *net.UnixConn, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	uc, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close(); peer.Close() })
	sock, err := newRawSock(uc)
	if err != nil {
		t.Fatal(err)
	}
	return sock, uc, peer
}

func TestRawSockReadWaitsThenEOF(t *testing.T) {
	sock, _, peer := unixPair(t)
	go func() {
		time.Sleep(50 * time.Millisecond) // the first Read has to wait in the poller
		peer.Write([]byte("hello"))
		peer.Close()
	}()
	buf := make([]byte, 3)
	var got []byte
	for {
		n, err := sock.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if n == 0 {
			t.Fatal("Read returned 0 bytes and no error")
		}
	}
	if string(got) != "hello" {
		t.Fatalf("read %q, want %q", got, "hello")
	}
}

// A write larger than the socket buffer waits for room as often as it takes, and all of it
// arrives in order.
func TestRawSockWriteAllOfALargeBuffer(t *testing.T) {
	sock, _, peer := unixPair(t)
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	n, err := sock.Write(data)
	if err != nil || n != len(data) {
		t.Fatalf("write: %d, %v (want %d)", n, err, len(data))
	}
	sock.rc.Control(func(fd uintptr) { syscall.Shutdown(int(fd), syscall.SHUT_WR) })
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("the peer read %d bytes, not the %d written (or not the same)", len(b), len(data))
	}
}

func TestRawSockWriteToAClosedPeer(t *testing.T) {
	sock, _, peer := unixPair(t)
	peer.Close()
	var err error
	for i := 0; i < 100 && err == nil; i++ { // (the first writes may still be buffered)
		_, err = sock.Write(make([]byte, 64<<10))
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("write to a closed peer: %v, want EPIPE or ECONNRESET", err)
	}
}

// The connection's deadline and Close end a waiting Read, as they end the connection's own.
func TestRawSockDeadlineAndClose(t *testing.T) {
	sock, uc, _ := unixPair(t)
	uc.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if _, err := sock.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	uc.SetReadDeadline(time.Time{})
	go func() {
		time.Sleep(30 * time.Millisecond)
		uc.Close()
	}()
	if _, err := sock.Read(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read of a closed connection: %v", err)
	}
}

// writevRaw writes the pieces in order, leaving out empty ones (appendIovecs).
func TestWritevRaw(t *testing.T) {
	var fds [2]int
	if err := syscall.Pipe(fds[:]); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	iov := appendIovecs(nil, [][]byte{[]byte("ab"), nil, {}, []byte("cde")})
	if len(iov) != 2 {
		t.Fatalf("%d iovecs for 2 non-empty pieces", len(iov))
	}
	n, err := writevRaw(fds[1], iov)
	if err != nil || n != 5 {
		t.Fatalf("writev: %d, %v", n, err)
	}
	if n, err := writevRaw(fds[1], appendIovecs(nil, [][]byte{nil})); n != 0 || err != nil {
		t.Fatalf("writev of nothing: %d, %v", n, err)
	}
	buf := make([]byte, 10)
	n, err = readRaw(fds[0], buf)
	if err != nil || string(buf[:n]) != "abcde" {
		t.Fatalf("read back %q, %v", buf[:n], err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	if _, err := readRaw(fds[0], buf); err != syscall.EAGAIN {
		t.Fatalf("read of an empty non-blocking pipe: %v, want EAGAIN", err)
	}
}

// rawNetConn: each Write goes out whole even when others run at once (net.Conn allows concurrent
// calls); errors are *net.OpError as net.Conn's own, a deadline's a timeout, the peer's close io.EOF.
func TestRawNetConn(t *testing.T) {
	_, uc, peer := unixPair(t)
	c := withRawIO(uc)
	if _, ok := c.(*rawNetConn); !ok {
		t.Fatalf("withRawIO gave a %T", c)
	}
	const writers, size = 4, 1 << 20
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	done := make(chan error, writers)
	for i := 0; i < writers; i++ {
		go func(b byte) {
			_, err := c.Write(bytes.Repeat([]byte{b}, size))
			done <- err
		}(byte('a' + i))
	}
	for i := 0; i < writers; i++ {
		if err := <-done; err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	uc.CloseWrite()
	b := <-got
	if len(b) != writers*size {
		t.Fatalf("the peer read %d bytes, want %d", len(b), writers*size)
	}
	for i := 0; i < writers; i++ { // each write is one run of its byte
		run := b[i*size : (i+1)*size]
		if bytes.Count(run, run[:1]) != size {
			t.Fatalf("write %d was interleaved with another", i)
		}
	}

	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(make([]byte, 8))
	var ne net.Error
	var op *net.OpError
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.As(err, &op) || op.Op != "read" {
		t.Fatalf("read past the deadline: %#v, want a *net.OpError that is a timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	peer.Close()
	if _, err := c.Read(make([]byte, 8)); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want io.EOF", err)
	}
	c.Close()
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) || !errors.As(err, &op) {
		t.Fatalf("write after Close: %v, want a *net.OpError of net.ErrClosed", err)
	}
}

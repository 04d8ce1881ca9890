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

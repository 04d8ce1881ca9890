package main

// A minimal client-side WebSocket (RFC 6455): the handshake, masked frames out, unmasked
// frames in, fragments reassembled, pings answered. Enough to drive the benchmark's
// echo and idle workloads without a module dependency.

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

type wsConn struct {
	c   net.Conn
	br  *bufio.Reader
	out []byte // frame buffer reused by writes
	in  []byte // message buffer reused by reads
}

var errClosed = errors.New("websocket closed by server")

// dialWS opens a TCP connection (from laddr if non-nil) and performs the opening handshake.
func dialWS(u *url.URL, laddr net.Addr, timeout time.Duration) (*wsConn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: laddr}
	c, err := d.Dial("tcp", u.Host)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		c.Close()
		return nil, err
	}
	key := base64.StdEncoding.EncodeToString(nonce[:])
	path := u.RequestURI()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("handshake: status %d, want 101", resp.StatusCode)
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		c.Close()
		return nil, fmt.Errorf("handshake: Sec-WebSocket-Accept %q, want %q", got, want)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		c.Close()
		return nil, fmt.Errorf("handshake: Upgrade header %q", resp.Header.Get("Upgrade"))
	}
	c.SetDeadline(time.Time{})
	return &wsConn{c: c, br: br}, nil
}

// writeFrame sends one masked frame with FIN set.
func (w *wsConn) writeFrame(op byte, payload []byte) error {
	n := len(payload)
	buf := w.out[:0]
	buf = append(buf, 0x80|op)
	switch {
	case n < 126:
		buf = append(buf, 0x80|byte(n))
	case n <= 0xFFFF:
		buf = append(buf, 0x80|126, byte(n>>8), byte(n))
	default:
		buf = append(buf, 0x80|127)
		buf = binary.BigEndian.AppendUint64(buf, uint64(n))
	}
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], mrand.Uint32())
	buf = append(buf, mask[:]...)
	start := len(buf)
	buf = append(buf, payload...)
	for i := range payload {
		buf[start+i] ^= mask[i&3]
	}
	w.out = buf
	_, err := w.c.Write(buf)
	return err
}

// writeMessage sends a binary message.
func (w *wsConn) writeMessage(p []byte) error { return w.writeFrame(opBinary, p) }

// readMessage returns the next text or binary message (valid until the next call),
// answering pings on the way.
func (w *wsConn) readMessage() ([]byte, error) {
	msg := w.in[:0]
	inMessage := false
	for {
		var h [2]byte
		if _, err := io.ReadFull(w.br, h[:]); err != nil {
			return nil, err
		}
		fin := h[0]&0x80 != 0
		op := h[0] & 0x0F
		masked := h[1]&0x80 != 0
		n := uint64(h[1] & 0x7F)
		switch n {
		case 126:
			var ext [2]byte
			if _, err := io.ReadFull(w.br, ext[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(ext[:]))
		case 127:
			var ext [8]byte
			if _, err := io.ReadFull(w.br, ext[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(ext[:])
		}
		if n > 64<<20 {
			return nil, fmt.Errorf("frame of %d bytes", n)
		}
		var mask [4]byte
		if masked {
			if _, err := io.ReadFull(w.br, mask[:]); err != nil {
				return nil, err
			}
		}
		if op >= opClose { // control frame: read it whole, off to the side
			payload := make([]byte, n)
			if _, err := io.ReadFull(w.br, payload); err != nil {
				return nil, err
			}
			switch op {
			case opClose:
				w.writeFrame(opClose, nil)
				return nil, errClosed
			case opPing:
				if err := w.writeFrame(opPong, payload); err != nil {
					return nil, err
				}
			}
			continue
		}
		if (op == opContinuation) != inMessage {
			return nil, fmt.Errorf("bad fragment sequence (opcode %d)", op)
		}
		inMessage = true
		start := len(msg)
		msg = append(msg, make([]byte, n)...)
		if _, err := io.ReadFull(w.br, msg[start:]); err != nil {
			return nil, err
		}
		if masked {
			for i := range msg[start:] {
				msg[start+i] ^= mask[i&3]
			}
		}
		if fin {
			w.in = msg
			return msg, nil
		}
	}
}

// close sends a normal-closure frame and closes the socket without waiting for the reply.
func (w *wsConn) close() {
	w.c.SetWriteDeadline(time.Now().Add(time.Second))
	w.writeFrame(opClose, []byte{0x03, 0xE8})
	w.c.Close()
}

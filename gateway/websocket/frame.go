package websocket

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"
)

// Opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Frame header bits.
const (
	bitFin  = 0x80
	bitRsv1 = 0x40
	bitRsv2 = 0x20
	bitRsv3 = 0x10
	bitMask = 0x80
)

const (
	maxControlPayload = 125
	// MaxControlFrame is the size of the largest client control frame (a
	// 2-byte header, a 4-byte masking key and 125 bytes of payload). The
	// Decoder consumes control frames only whole, so the caller's buffer
	// must be able to hold this many unconsumed bytes; everything else
	// (frame headers of up to 14 bytes, data payloads) is consumed as it
	// arrives.
	MaxControlFrame = 2 + 4 + maxControlPayload
	// maxCloseReason is the longest close reason that fits a control frame.
	maxCloseReason = maxControlPayload - 2
)

// Close codes (RFC 6455 section 7.4.1 and the IANA registry).
const (
	CloseNormal         = 1000
	CloseGoingAway      = 1001
	CloseProtocolError  = 1002
	CloseUnsupported    = 1003
	CloseNoStatus       = 1005 // never on the wire: a close frame without a code
	CloseAbnormal       = 1006 // never on the wire: the connection dropped without a close frame
	CloseInvalidPayload = 1007
	ClosePolicy         = 1008
	CloseTooBig         = 1009
	CloseExtension      = 1010
	CloseInternal       = 1011
	CloseServiceRestart = 1012
	CloseTryAgainLater  = 1013
	CloseBadGateway     = 1014
)

// ValidCloseCode reports whether code may appear in a close frame on the
// wire: 1000-1003 and 1007-1014 (RFC 6455 section 7.4.1 and the IANA
// registry; 1004, 1005, 1006 and 1015 are reserved and 1016-2999 are
// unassigned), and 3000-4999 (registered and private use). The set is the
// same for the codes an endpoint sends and those it accepts from its peer.
func ValidCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// ProtocolError says how to fail the connection: the close Code to send
// (1002, 1007 or 1009) and a short Reason, which fits a close frame.
//
// The Decoder returns a small set of fixed *ProtocolError values; callers
// must not modify them.
type ProtocolError struct {
	Code   int
	Reason string
}

func (e *ProtocolError) Error() string {
	return "websocket: " + strconv.Itoa(e.Code) + " " + e.Reason
}

func protocolError(reason string) *ProtocolError {
	return &ProtocolError{Code: CloseProtocolError, Reason: reason}
}

// Decoder errors.
var (
	errUnmasked        = protocolError("client frame not masked")
	errRsv             = protocolError("reserved bits set")
	errRsv1            = protocolError("RSV1 set without a compressed message")
	errOpcode          = protocolError("unknown opcode")
	errControlFragment = protocolError("fragmented control frame")
	errControlTooLong  = protocolError("control frame payload over 125 bytes")
	errContinuation    = protocolError("continuation frame without a message")
	errInterleaved     = protocolError("new data frame inside a fragmented message")
	errLength          = protocolError("frame length has the most significant bit set")
	errCloseLength     = protocolError("close frame with a 1-byte payload")
	errCloseCode       = protocolError("invalid close code")

	errTooBig     = &ProtocolError{Code: CloseTooBig, Reason: "message too big"}
	errUTF8       = &ProtocolError{Code: CloseInvalidPayload, Reason: "invalid UTF-8 in text message"}
	errCloseUTF8  = &ProtocolError{Code: CloseInvalidPayload, Reason: "invalid UTF-8 in close reason"}
	errCompressed = &ProtocolError{Code: CloseInvalidPayload, Reason: "invalid compressed data"}
)

// maskBytes XORs b with the masking key, starting at key offset pos (0-3),
// and returns the key offset for the byte after b.
func maskBytes(key [4]byte, pos int, b []byte) int {
	end := (pos + len(b)) & 3
	// Up to a key boundary byte by byte.
	for len(b) > 0 && pos&3 != 0 {
		b[0] ^= key[pos&3]
		b = b[1:]
		pos++
	}
	if len(b) >= 8 {
		k32 := uint64(binary.LittleEndian.Uint32(key[:]))
		k := k32 | k32<<32
		for len(b) >= 32 {
			binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k)
			binary.LittleEndian.PutUint64(b[8:], binary.LittleEndian.Uint64(b[8:])^k)
			binary.LittleEndian.PutUint64(b[16:], binary.LittleEndian.Uint64(b[16:])^k)
			binary.LittleEndian.PutUint64(b[24:], binary.LittleEndian.Uint64(b[24:])^k)
			b = b[32:]
		}
		for len(b) >= 8 {
			binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k)
			b = b[8:]
		}
	}
	for i := range b {
		b[i] ^= key[(pos+i)&3]
	}
	return end
}

// checkUTF8 validates b, which may end in an incomplete but so far valid
// UTF-8 sequence. It returns the length of the prefix of b made of complete
// sequences (the rest must be checked again with the bytes that follow), and
// false if b cannot be the start of valid UTF-8.
func checkUTF8(b []byte) (int, bool) {
	j := len(b) - 1
	for j > 0 && j > len(b)-4 && b[j]&0xC0 == 0x80 {
		j--
	}
	if j >= 0 && !utf8.FullRune(b[j:]) {
		// A valid prefix of a multi-byte sequence (FullRune reports
		// invalid sequences as full).
		return j, utf8.Valid(b[:j])
	}
	return len(b), utf8.Valid(b)
}

// appendFrameHeader appends an unmasked frame header with the first byte b0
// and payload length n.
func appendFrameHeader(dst []byte, b0 byte, n int) []byte {
	switch {
	case n <= 125:
		return append(dst, b0, byte(n))
	case n <= 0xFFFF:
		return append(dst, b0, 126, byte(n>>8), byte(n))
	default:
		return append(dst, b0, 127,
			byte(uint64(n)>>56), byte(uint64(n)>>48), byte(uint64(n)>>40), byte(uint64(n)>>32),
			byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// frameHeaderLen is the length of an unmasked frame header for a payload of
// n bytes.
func frameHeaderLen(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xFFFF:
		return 4
	}
	return 10
}

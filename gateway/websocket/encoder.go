package websocket

import "unicode/utf8"

// AppendMessage appends data as one unfragmented, unmasked text or binary
// frame. With a non-nil Compressor, messages of 64 bytes or more (and no
// longer than a negotiated server_max_window_bits window) are compressed
// unless compression would not make them smaller; other messages are sent
// uncompressed (RSV1 clear), as RFC 7692 section 6.1 allows. Text is not
// validated.
func AppendMessage(dst []byte, text bool, data []byte, c *Compressor) []byte {
	var op byte = opBinary
	if text {
		op = opText
	}
	if c != nil && c.worth(len(data)) {
		return c.appendCompressed(dst, op, data)
	}
	dst = appendFrameHeader(dst, bitFin|op, len(data))
	return append(dst, data...)
}

// AppendClose appends a close frame. Code 0 gives an empty payload (and no
// reason); otherwise code should satisfy ValidCloseCode, and reason, which
// should be UTF-8, is cut to its longest prefix of at most 123 bytes that
// ends on a UTF-8 sequence boundary.
func AppendClose(dst []byte, code int, reason string) []byte {
	if code == 0 {
		return append(dst, bitFin|opClose, 0)
	}
	if len(reason) > maxCloseReason {
		cut := maxCloseReason
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	dst = append(dst, bitFin|opClose, byte(2+len(reason)), byte(code>>8), byte(code))
	return append(dst, reason...)
}

// AppendPing appends a ping frame; payload is cut to 125 bytes.
func AppendPing(dst, payload []byte) []byte { return appendControl(dst, opPing, payload) }

// AppendPong appends a pong frame; payload is cut to 125 bytes. To answer a
// ping, send its payload back.
func AppendPong(dst, payload []byte) []byte { return appendControl(dst, opPong, payload) }

func appendControl(dst []byte, op byte, payload []byte) []byte {
	if len(payload) > maxControlPayload {
		payload = payload[:maxControlPayload]
	}
	dst = append(dst, bitFin|op, byte(len(payload)))
	return append(dst, payload...)
}

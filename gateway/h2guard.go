package gateway

import (
	"crypto/tls"
	"encoding/binary"
	"net"

	"golang.org/x/net/http2/hpack"
)

// h2Guard sits between an HTTP/2 client connection and golang.org/x/net/http2's server, and
// rewrites these things in the client's frame stream where x/net's answer differs from RFC 9113:
//
//   - A SETTINGS frame that lists a setting more than once: RFC 9113 §6.5.3 says the values are
//     processed in order (the last one wins); x/net closes the connection instead. The guard
//     passes on the last value of each setting, which has the same effect — unless a value is
//     invalid, in which case the frame is cut after that value, so x/net reports the error that
//     processing in order would reach.
//   - A request that RFC 9113 makes malformed (a stream error of type PROTOCOL_ERROR, §8.1.1) and
//     that x/net serves, or answers with 400: a connection-specific field (Connection, Keep-Alive,
//     Proxy-Connection, Transfer-Encoding, Upgrade) or a TE other than "trailers" (§8.2.2); a
//     field value that starts or ends with SP or HTAB (§8.2.1); a content-length that is not a
//     number, or several that differ (RFC 9110 §8.6), or one above 0 when the HEADERS frame ends
//     the stream (§8.1.1: it must equal the DATA's length); a :path of "*" outside OPTIONS
//     (§8.3.1); an http or https request without :authority and host, or with either empty
//     (§8.3.1). The guard decodes every header block with its own HPACK decoder (kept in step
//     with x/net's, which sees the same blocks) and marks such a HEADERS frame as depending on its
//     own stream, which x/net resets with PROTOCOL_ERROR (RFC 9113 §5.3.1) before any handler
//     runs. The header block itself is passed on unchanged, so both HPACK decoders stay in step.
//   - The end of a request body that is malformed: fewer DATA bytes than the content-length
//     declared (x/net fails the handler's body read, and the handler's reset is INTERNAL_ERROR),
//     or trailers with a field that would make a header section malformed (x/net ignores them).
//     The guard counts each declared body's DATA bytes; such a last DATA frame loses its
//     END_STREAM flag and is followed by a PRIORITY frame making the stream depend on itself, and
//     such trailers lose their END_STREAM flag (trailers must end the stream, RFC 9113 §8.1):
//     either way x/net resets the stream with PROTOCOL_ERROR, and the app hears http.disconnect
//     rather than a complete body.
//
// Everything else — DATA in particular — is passed through as it arrives, without buffering. On
// anything the guard does not understand (no preface, a header block it cannot decode, a block
// larger than maxGuardBlock) it stops looking and passes the rest of the connection through, so
// x/net sees exactly what the client sent and answers as it would have.
//
// In the other direction (Write, h2order.go) the guard re-encodes every header block x/net writes,
// with the response's fields in the app's order.
type h2Guard struct {
	net.Conn

	in  []byte // bytes read from Conn, not yet parsed
	out []byte // parsed bytes ready for Read (a rewritten frame, or a passed-through header)

	outPos int    // out[:outPos] has been read
	inBuf  []byte // in's whole buffer

	preface  int  // bytes of the connection preface still to pass
	passLeft int  // bytes of the current frame's payload still to pass through unparsed
	off      bool // transparent for the rest of the connection

	block           []byte // a HEADERS frame and its CONTINUATIONs, held until END_HEADERS
	hdec            *hpack.Decoder
	request         bool // the block being decoded has a :method (a request, not trailers)
	bad             bool // ... and a field that makes it malformed
	method          string
	path            string
	scheme          string
	authority, host int8  // 0: absent; 1: present; -1: present and empty
	length          int64 // its content-length; -1: none

	owed  map[uint32]int64 // streams whose request declared a content-length: DATA bytes still to come
	after []byte           // a frame to pass on once the current frame's payload has passed

	wr h2Writer // the other direction: header blocks in the app's field order (h2order.go)
}

// h2GuardTLS is an h2Guard over a TLS connection: x/net reads the connection state from it.
type h2GuardTLS struct{ *h2Guard }

func (g h2GuardTLS) ConnectionState() tls.ConnectionState {
	return g.Conn.(*tls.Conn).ConnectionState()
}

const (
	h2FrameHeaderLen = 9
	h2Data           = 0x0
	h2Headers        = 0x1
	h2Priority       = 0x2
	h2RSTStream      = 0x3
	h2Settings       = 0x4
	h2PushPromise    = 0x5
	h2Continuation   = 0x9

	h2FlagEndStream  = 0x1
	h2FlagEndHeaders = 0x4
	h2FlagPadded     = 0x8
	h2FlagPriority   = 0x20
	h2FlagAck        = 0x1

	// maxGuardBlock bounds a held header block (x/net refuses far smaller header lists).
	maxGuardBlock = 1 << 20
	// maxGuardFrame is the largest frame x/net accepts from our clients (http2.Server's
	// MaxReadFrameSize in newTLSState).
	maxGuardFrame = 16384
	// maxGuardBodies bounds the declared bodies counted at once: x/net lets a client have 250
	// streams open; a stream whose response ended before its body did may stay counted until the
	// connection ends, so past the bound the oldest is forgotten (x/net's own checks remain).
	maxGuardBodies = 1024
)

func newH2Guard(c net.Conn) net.Conn {
	g := &h2Guard{Conn: c, preface: len(h2Preface)}
	g.hdec = hpack.NewDecoder(4096, g.field) // x/net's server decoder table size
	if _, ok := c.(*tls.Conn); ok {
		return h2GuardTLS{g}
	}
	return g
}

func (g *h2Guard) Read(p []byte) (int, error) {
	for {
		if g.outPos < len(g.out) {
			n := copy(p, g.out[g.outPos:])
			g.outPos += n
			if g.outPos == len(g.out) {
				g.out, g.outPos = g.out[:0], 0 // all read: the buffer is free again
			}
			return n, nil
		}
		if g.off || g.passLeft > 0 {
			// Pass-through: parsed input first, then straight from the connection into p.
			if len(g.in) > 0 {
				n := len(g.in)
				if !g.off && n > g.passLeft {
					n = g.passLeft
				}
				n = copy(p, g.in[:n])
				g.in = g.in[n:]
				if !g.off {
					g.passLeft -= n
				}
				return n, nil
			}
			if !g.off && len(p) > g.passLeft {
				p = p[:g.passLeft]
			}
			n, err := g.Conn.Read(p)
			if !g.off {
				g.passLeft -= n
			}
			return n, err
		}
		if g.step() {
			continue
		}
		// step needs more input.
		if err := g.fill(); err != nil {
			// Whatever was held goes to x/net before the error, as the client sent it.
			g.out = append(g.out, g.block...)
			g.out = append(g.out, g.in...)
			g.block, g.in = nil, nil
			if g.outPos < len(g.out) {
				g.off = true
				continue
			}
			return 0, err
		}
	}
}

func (g *h2Guard) fill() error {
	if len(g.in) == 0 {
		g.in = g.inBuf[:0] // all parsed: start over at the front of the buffer
	}
	if cap(g.in)-len(g.in) < 4096 {
		nb := make([]byte, len(g.in), len(g.in)+8192)
		copy(nb, g.in)
		g.in, g.inBuf = nb, nb[:0]
	}
	n, err := g.Conn.Read(g.in[len(g.in):cap(g.in)])
	g.in = g.in[:len(g.in)+n]
	if n > 0 {
		return nil
	}
	return err
}

// step parses what it can of g.in into g.out (or g.block). It reports whether it made progress.
func (g *h2Guard) step() bool {
	if g.after != nil {
		g.out = append(g.out, g.after...)
		g.after = nil
		return true
	}
	if g.preface > 0 {
		done := len(h2Preface) - g.preface
		n := min(g.preface, len(g.in))
		if n == 0 {
			return false
		}
		if string(g.in[:n]) != h2Preface[done:done+n] {
			g.giveUp()
			return true
		}
		g.out = append(g.out, g.in[:n]...)
		g.in = g.in[n:]
		g.preface -= n
		return true
	}
	if len(g.in) < h2FrameHeaderLen {
		return false
	}
	length := int(g.in[0])<<16 | int(g.in[1])<<8 | int(g.in[2])
	typ, flags := g.in[3], g.in[4]
	sid := binary.BigEndian.Uint32(g.in[5:9]) & 0x7fffffff
	held := g.block != nil
	switch {
	case held && typ != h2Continuation:
		// A protocol error (RFC 9113 §6.10) that x/net will report; let it see the frames.
		g.giveUp()
		return true
	case typ == h2Settings && flags&h2FlagAck == 0 && sid == 0 && length%6 == 0 && length <= 600,
		typ == h2Headers, held:
		if length > maxGuardFrame || len(g.block)+h2FrameHeaderLen+length > maxGuardBlock {
			// x/net refuses a frame over its limit (FRAME_SIZE_ERROR): nothing to hold for.
			g.giveUp()
			return true
		}
		if len(g.in) < h2FrameHeaderLen+length {
			return false // the whole frame is needed
		}
		frame := g.in[:h2FrameHeaderLen+length]
		g.in = g.in[len(frame):]
		switch {
		case typ == h2Settings:
			g.out = appendDedupedSettings(g.out, frame)
		default:
			g.block = append(g.block, frame...)
			if flags&h2FlagEndHeaders != 0 {
				g.endBlock()
			}
		}
		return true
	case typ == h2Data && flags&h2FlagPadded != 0 && length > 0 && len(g.in) == h2FrameHeaderLen && g.counting(sid):
		return false // the pad length is needed to count the data
	default:
		g.out = append(g.out, g.in[:h2FrameHeaderLen]...)
		switch typ {
		case h2Data:
			g.countData(sid, length, flags)
		case h2RSTStream:
			delete(g.owed, sid)
		}
		g.in = g.in[h2FrameHeaderLen:]
		g.passLeft = length
		return true
	}
}

// countData counts a DATA frame against its stream's declared content-length, its header just
// appended to g.out and the pad length (if any) in g.in. A frame that ends the body short of the
// declared length has END_STREAM cleared and a self-dependent PRIORITY frame after it: x/net
// resets the stream with PROTOCOL_ERROR (RFC 9113 §8.1.1, §5.3.1).
func (g *h2Guard) countData(sid uint32, length int, flags byte) {
	owed, ok := g.owed[sid]
	if !ok {
		return
	}
	n := length
	if flags&h2FlagPadded != 0 {
		if length == 0 {
			delete(g.owed, sid) // x/net refuses the frame
			return
		}
		n -= 1 + int(g.in[h2FrameHeaderLen])
	}
	owed -= int64(n)
	switch {
	case n < 0 || owed < 0:
		delete(g.owed, sid) // x/net refuses the frame, or resets the stream: more than declared
	case flags&h2FlagEndStream == 0:
		g.owed[sid] = owed
	default:
		delete(g.owed, sid)
		if owed > 0 {
			g.out[len(g.out)-h2FrameHeaderLen+4] &^= h2FlagEndStream
			g.after = selfDependentPriority(sid)
		}
	}
}

// counting reports whether the DATA of stream sid is counted against a declared content-length.
func (g *h2Guard) counting(sid uint32) bool {
	_, ok := g.owed[sid]
	return ok
}

// selfDependentPriority is a PRIORITY frame making stream sid depend on itself.
func selfDependentPriority(sid uint32) []byte {
	f := []byte{0, 0, 5, h2Priority, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15}
	binary.BigEndian.PutUint32(f[5:9], sid)
	binary.BigEndian.PutUint32(f[9:13], sid)
	return f
}

// giveUp makes the guard transparent: what it holds goes out unchanged, in order.
func (g *h2Guard) giveUp() {
	g.out = append(g.out, g.block...)
	g.out = append(g.out, g.in...)
	g.block, g.in = nil, nil
	g.off = true
}

// endBlock decodes the held HEADERS (+ CONTINUATION) frames' header block and passes them on,
// marked when the request is malformed.
func (g *h2Guard) endBlock() {
	block := g.block
	g.block = nil
	g.request, g.bad, g.method, g.path, g.scheme, g.authority, g.host, g.length = false, false, "", "", "", 0, 0, -1
	ok := true
	for p := 0; p < len(block) && ok; {
		length := int(block[p])<<16 | int(block[p+1])<<8 | int(block[p+2])
		typ, flags := block[p+3], block[p+4]
		payload := block[p+h2FrameHeaderLen : p+h2FrameHeaderLen+length]
		p += h2FrameHeaderLen + length
		if typ == h2Headers {
			var frag []byte
			if frag, ok = headersFragment(flags, payload); !ok {
				break
			}
			payload = frag
		}
		if _, err := g.hdec.Write(payload); err != nil {
			ok = false
		}
	}
	if ok && g.hdec.Close() != nil {
		ok = false
	}
	if !ok {
		// Our decoder is out of step with the client now: x/net will report the block's error.
		g.out = append(g.out, block...)
		g.off = true
		return
	}
	sid := binary.BigEndian.Uint32(block[5:9]) & 0x7fffffff
	endStream := block[4]&h2FlagEndStream != 0
	switch {
	case g.request:
		if (g.path == "*" && g.method != "OPTIONS") || (endStream && g.length > 0) {
			g.bad = true
		}
		if (g.scheme == "http" || g.scheme == "https") && g.method != "CONNECT" &&
			(g.authority < 0 || g.host < 0 || (g.authority == 0 && g.host == 0)) {
			// §8.3.1: such a request "MUST contain either an :authority pseudo-header field or a
			// Host header field. If these fields are present, they MUST NOT be empty."
			g.bad = true
		}
		if g.bad {
			block = markSelfDependent(block)
		} else if !endStream && g.length >= 0 {
			g.expectBody(sid, g.length)
		}
	case endStream:
		// Trailers (or a request without :method, which x/net refuses).
		owed, declared := g.owed[sid]
		delete(g.owed, sid)
		if g.bad || (declared && owed != 0) {
			block = append([]byte(nil), block...)
			block[4] &^= h2FlagEndStream
		}
	}
	g.out = append(g.out, block...)
}

// expectBody starts counting the DATA of stream sid against its declared content-length.
func (g *h2Guard) expectBody(sid uint32, length int64) {
	if g.owed == nil {
		g.owed = make(map[uint32]int64)
	}
	if len(g.owed) >= maxGuardBodies {
		oldest := sid
		for id := range g.owed {
			oldest = min(oldest, id)
		}
		delete(g.owed, oldest)
	}
	g.owed[sid] = length
}

// field is the HPACK decoder's callback for each field of the block being decoded.
func (g *h2Guard) field(f hpack.HeaderField) {
	switch f.Name {
	case ":method":
		g.request = true
		g.method = f.Value
	case ":path":
		g.path = f.Value
	case ":scheme":
		g.scheme = f.Value
	case ":authority":
		g.authority = presence(f.Value)
	case "host":
		g.host = presence(f.Value)
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		g.bad = true
	case "te":
		if f.Value != "trailers" {
			g.bad = true
		}
	case "content-length":
		n, ok := parseContentLength([]byte(f.Value))
		if !ok || (g.length >= 0 && n != g.length) {
			g.bad = true
		}
		g.length = n
	}
	if v := f.Value; v != "" && (isSPHT(v[0]) || isSPHT(v[len(v)-1])) {
		g.bad = true
	}
}

func isSPHT(c byte) bool { return c == ' ' || c == '\t' }

func presence(v string) int8 {
	if v == "" {
		return -1
	}
	return 1
}

// headersFragment is a HEADERS payload's field block fragment, without padding and priority.
func headersFragment(flags byte, payload []byte) ([]byte, bool) {
	pad := 0
	if flags&h2FlagPadded != 0 {
		if len(payload) < 1 {
			return nil, false
		}
		pad = int(payload[0])
		payload = payload[1:]
	}
	if flags&h2FlagPriority != 0 {
		if len(payload) < 5 {
			return nil, false
		}
		payload = payload[5:]
	}
	if pad > len(payload) {
		return nil, false
	}
	return payload[:len(payload)-pad], true
}

// markSelfDependent rewrites the HEADERS frame at the start of block to depend on its own stream
// (a stream error of type PROTOCOL_ERROR, RFC 9113 §5.3.1), leaving the field block unchanged.
// It returns block unchanged when the frame cannot take the priority fields.
func markSelfDependent(block []byte) []byte {
	length := int(block[0])<<16 | int(block[1])<<8 | int(block[2])
	flags := block[4]
	sid := block[5:9]
	prioAt := h2FrameHeaderLen
	if flags&h2FlagPadded != 0 {
		prioAt++
	}
	if flags&h2FlagPriority != 0 {
		out := append([]byte(nil), block...)
		copy(out[prioAt:prioAt+4], sid) // exclusive bit clear
		return out
	}
	if length+5 > maxGuardFrame {
		return block // x/net would refuse the bigger frame outright; leave the request as it is
	}
	out := make([]byte, 0, len(block)+5)
	out = append(out, block[:prioAt]...)
	out = append(out, sid...)
	out = append(out, 15) // weight 16, the default
	out = append(out, block[prioAt:]...)
	length += 5
	out[0], out[1], out[2] = byte(length>>16), byte(length>>8), byte(length)
	out[4] |= h2FlagPriority
	return out
}

// appendDedupedSettings appends a SETTINGS frame with, for each setting listed more than once,
// only its last value (in the position of that last value). If a value is invalid (RFC 9113
// §6.5.2), the frame ends with it: processing in order stops there with that error.
func appendDedupedSettings(dst, frame []byte) []byte {
	payload := frame[h2FrameHeaderLen:]
	n := len(payload) / 6
	dup := false
	end := n
	for i := 0; i < n && !dup; i++ {
		id := binary.BigEndian.Uint16(payload[6*i:])
		for j := i + 1; j < n; j++ {
			if binary.BigEndian.Uint16(payload[6*j:]) == id {
				dup = true
				break
			}
		}
	}
	if !dup {
		return append(dst, frame...)
	}
	for i := 0; i < n; i++ {
		if !validSetting(binary.BigEndian.Uint16(payload[6*i:]), binary.BigEndian.Uint32(payload[6*i+2:])) {
			end = i + 1
			break
		}
	}
	start := len(dst)
	dst = append(dst, frame[:h2FrameHeaderLen]...)
	for i := 0; i < end; i++ {
		id := binary.BigEndian.Uint16(payload[6*i:])
		later := false
		for j := i + 1; j < end; j++ {
			if binary.BigEndian.Uint16(payload[6*j:]) == id {
				later = true
				break
			}
		}
		if !later || i == end-1 {
			dst = append(dst, payload[6*i:6*i+6]...)
		}
	}
	length := len(dst) - start - h2FrameHeaderLen
	dst[start], dst[start+1], dst[start+2] = byte(length>>16), byte(length>>8), byte(length)
	return dst
}

// validSetting reports whether a SETTINGS value is allowed for its id (RFC 9113 §6.5.2).
func validSetting(id uint16, v uint32) bool {
	switch id {
	case 0x2: // ENABLE_PUSH
		return v <= 1
	case 0x4: // INITIAL_WINDOW_SIZE
		return v <= 1<<31-1
	case 0x5: // MAX_FRAME_SIZE
		return v >= 1<<14 && v <= 1<<24-1
	}
	return true
}

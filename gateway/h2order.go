package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"

	"golang.org/x/net/http2/hpack"
)

// The server-to-client direction of h2Guard: the app's field order in HTTP/2 responses.
//
// www.rst, Response Start: the headers' "Order must be preserved in the HTTP response". x/net's
// server writes a response's fields sorted by name (its header map has no order). serveH2Stream
// therefore adds one field, h2FieldOrder, whose value lists the app's field names in the app's
// order; h2Guard.Write takes every header block x/net writes, decodes it (with a decoder kept in
// step with x/net's encoder, which no one else sees), puts the fields named in h2FieldOrder in
// that order (each name's values keep theirs; pseudo-fields first; the gateway's own fields after),
// drops h2FieldOrder, and encodes the block again with its own encoder, which is the one the client
// decodes. Every header block goes through that encoder, with or without h2FieldOrder, so the
// client's HPACK state is the guard's. The guard's encoder keeps a dynamic table of the size x/net's
// has: both start at 4,096 bytes (RFC 9113 §6.5.2's default), and x/net's encoder opens its next
// block with a size update when the client's SETTINGS_HEADER_TABLE_SIZE makes it shrink its table
// (RFC 7541 §4.2); the guard takes those updates from the block's start and opens its own block
// with the same (tableSizeUpdates). So the guard's encoder follows the client's setting exactly when
// x/net's does, without reading the client's frames. It splits blocks into frames of at most 16,384
// bytes, which every peer accepts (RFC 9113 §4.2). All other frames pass unchanged; a write that
// holds no header block is written as it is.

// h2FieldOrder is the field carrying the app's field names, in order, comma-separated, from
// serveH2Stream to h2Guard.Write, which drops it: it never reaches the client. An app's own field
// of this name is dropped (writeH2Start).
const h2FieldOrder = "asgi-gateway-field-order"

// fieldOrder is h2FieldOrder's value being built: ",name" for each field, in order.
type fieldOrder []byte

func (o *fieldOrder) add(name string) { *o = append(append(*o, ','), name...) }

// set puts the order under key in h when it has more than one field (one is in order already).
func (o fieldOrder) set(h http.Header, key string) {
	if bytes.Count(o, []byte{','}) > 1 {
		h[key] = []string{string(o[1:])}
	}
}

// h2MaxOutFrame is the largest frame payload the guard writes (RFC 9113 §4.2: SETTINGS_MAX_FRAME_SIZE
// is at least 16,384).
const h2MaxOutFrame = 16384

var errH2PushPromise = errors.New("http2 guard: a PUSH_PROMISE from the server (never expected)")

// h2Writer is the state of the guard's output between writes.
type h2Writer struct {
	hdr   [h2FrameHeaderLen]byte
	hdrN  int    // bytes of hdr filled: a frame header split across writes is held back
	left  int    // payload bytes of the current frame still to come
	typ   byte   // the current frame's type and flags
	flags byte   //
	frame []byte // the current header-block frame's payload, collected
	block []byte // the header block so far (HEADERS and CONTINUATION fragments)
	sid   uint32 // its stream
	end   bool   // its HEADERS frame has END_STREAM

	dec    *hpack.Decoder // x/net's encoder's mirror
	enc    *hpack.Encoder // the client's
	encBuf bytes.Buffer
	buf    []byte // a rewritten write's bytes
	err    error  // a write that failed: the connection is done
}

func (w *h2Writer) init() {
	w.dec = hpack.NewDecoder(4096, nil) // x/net's encoder starts at the default size...
	w.dec.SetAllowedMaxDynamicTableSize(math.MaxUint32)
	w.enc = hpack.NewEncoder(&w.encBuf)               // ... and so do the guard's and the client's decoder
	w.enc.SetMaxDynamicTableSizeLimit(math.MaxUint32) // (the sizes x/net's updates give; tableSizeUpdates)
}

// tableSizeUpdates gives the guard's encoder the dynamic table size updates that open x/net's header
// block (RFC 7541 §4.2: a block's size updates come before its first field), in their order, so that
// the guard's block opens with them too (hpack.Encoder writes the smallest and the last, before the
// block's first field). It returns the updates' length in block.
func (w *h2Writer) tableSizeUpdates(block []byte) (int, error) {
	end := 0
	for end < len(block) && block[end]&0xe0 == 0x20 {
		size, n, ok := hpackInteger(block[end:], 5)
		if !ok || size > math.MaxUint32 {
			return 0, errors.New("http2 guard: a malformed dynamic table size update from the server")
		}
		w.enc.SetMaxDynamicTableSize(uint32(size))
		end += n
	}
	return end, nil
}

// hpackInteger decodes an HPACK integer with an n-bit prefix at the start of p (RFC 7541 §5.1): its
// value and length; not ok if p ends first or the value does not fit in 56 bits.
func hpackInteger(p []byte, n uint) (uint64, int, bool) {
	limit := uint64(1)<<n - 1
	v := uint64(p[0]) & limit
	if v < limit {
		return v, 1, true
	}
	for i, shift := 1, uint(0); i < len(p) && shift < 56; i, shift = i+1, shift+7 {
		v += uint64(p[i]&0x7f) << shift
		if p[i]&0x80 == 0 {
			return v, i + 1, true
		}
	}
	return 0, 0, false
}

func (g *h2Guard) Write(p []byte) (int, error) {
	w := &g.wr
	if w.err != nil {
		return 0, w.err
	}
	if w.dec == nil {
		w.init()
	}
	out := w.buf[:0]
	rewritten := false // out, not p, goes to the connection
	pass := 0          // p[pass:i] passes unchanged and is not in out yet; -1: in a header block's frame
	if w.left > 0 && (w.typ == h2Headers || w.typ == h2Continuation) {
		pass, rewritten = -1, true
	}
	held := len(p) // p[held:] is the start of a frame header, held back for the next write
	for i := 0; i < len(p); {
		if w.left == 0 { // a frame header (its first w.hdrN bytes came with an earlier write)
			earlier, start := w.hdrN, i
			n := copy(w.hdr[w.hdrN:], p[i:])
			w.hdrN += n
			i += n
			if w.hdrN < h2FrameHeaderLen {
				held = start
				break
			}
			w.hdrN = 0
			w.left = int(w.hdr[0])<<16 | int(w.hdr[1])<<8 | int(w.hdr[2])
			w.typ, w.flags = w.hdr[3], w.hdr[4]
			switch w.typ {
			case h2Headers, h2Continuation:
				out = append(out, p[pass:start]...) // (pass >= 0: a header block starts here)
				pass, rewritten = -1, true
				w.frame = w.frame[:0]
				if w.left == 0 {
					if err := w.endFrame(&out); err != nil {
						return w.fail(err)
					}
					pass = i
				}
			case h2PushPromise:
				return w.fail(errH2PushPromise)
			default:
				if earlier > 0 { // (then start and pass are 0) the header's held bytes go out first
					out = append(out, w.hdr[:]...)
					pass, rewritten = i, true
				}
			}
			continue
		}
		n := min(w.left, len(p)-i)
		if pass < 0 {
			w.frame = append(w.frame, p[i:i+n]...)
		}
		i += n
		w.left -= n
		if w.left == 0 && pass < 0 {
			if err := w.endFrame(&out); err != nil {
				return w.fail(err)
			}
			pass = i
		}
	}
	if !rewritten && held == len(p) {
		if _, err := g.Conn.Write(p); err != nil {
			return w.fail(err)
		}
		return len(p), nil
	}
	if pass >= 0 {
		out = append(out, p[pass:held]...)
	}
	w.buf = out[:0]
	if len(out) > 0 {
		if _, err := g.Conn.Write(out); err != nil {
			return w.fail(err)
		}
	}
	return len(p), nil
}

func (w *h2Writer) fail(err error) (int, error) {
	w.err = err
	return 0, err
}

// endFrame takes a complete HEADERS or CONTINUATION frame's payload into the block, and at the end
// of the block appends the block, reordered and encoded again, as frames to out.
func (w *h2Writer) endFrame(out *[]byte) error {
	frag := w.frame
	if w.typ == h2Headers {
		if w.flags&h2FlagPadded != 0 {
			if len(frag) < 1 || int(frag[0]) > len(frag)-1 {
				return errors.New("http2 guard: a HEADERS frame's padding is longer than the frame")
			}
			frag = frag[1 : len(frag)-int(frag[0])]
		}
		if w.flags&h2FlagPriority != 0 {
			if len(frag) < 5 {
				return errors.New("http2 guard: a HEADERS frame too short for its priority")
			}
			frag = frag[5:]
		}
		w.sid = uint32(w.hdr[5]&0x7f)<<24 | uint32(w.hdr[6])<<16 | uint32(w.hdr[7])<<8 | uint32(w.hdr[8])
		w.end = w.flags&h2FlagEndStream != 0
		w.block = append(w.block[:0], frag...)
	} else {
		w.block = append(w.block, frag...)
	}
	if w.flags&h2FlagEndHeaders == 0 {
		return nil
	}
	fields, err := w.dec.DecodeFull(w.block)
	if err != nil {
		return fmt.Errorf("http2 guard: decoding the server's header block: %w", err)
	}
	updates, err := w.tableSizeUpdates(w.block)
	if err != nil {
		return err
	}
	w.encBuf.Reset()
	if len(fields) == 0 {
		w.encBuf.Write(w.block[:updates]) // (no field for the encoder to write them before)
	}
	for _, f := range orderFields(fields) {
		if err := w.enc.WriteField(f); err != nil {
			return fmt.Errorf("http2 guard: encoding a header block: %w", err)
		}
	}
	block := w.encBuf.Bytes()
	for first := true; first || len(block) > 0; first = false {
		n := min(len(block), h2MaxOutFrame)
		typ, flags := byte(h2Continuation), byte(0)
		if first {
			typ = h2Headers
			if w.end {
				flags |= h2FlagEndStream
			}
		}
		if n == len(block) {
			flags |= h2FlagEndHeaders
		}
		*out = append(*out, byte(n>>16), byte(n>>8), byte(n), typ, flags,
			byte(w.sid>>24), byte(w.sid>>16), byte(w.sid>>8), byte(w.sid))
		*out = append(*out, block[:n]...)
		block = block[n:]
	}
	return nil
}

// orderFields returns the fields of a header block with those named in its h2FieldOrder field in
// that order, and without it: pseudo-fields first, as they came; then, for each name listed, the
// first field of that name not taken yet; then the others, as they came. Without h2FieldOrder the
// fields are returned as they are.
func orderFields(fields []hpack.HeaderField) []hpack.HeaderField {
	at := -1
	for i := range fields {
		if fields[i].Name == h2FieldOrder {
			at = i
			break
		}
	}
	if at < 0 {
		return fields
	}
	order := fields[at].Value
	rest := make([]hpack.HeaderField, 0, len(fields)-1)
	rest = append(append(rest, fields[:at]...), fields[at+1:]...)
	ordered := make([]hpack.HeaderField, 0, len(rest))
	taken := make([]bool, len(rest))
	for i := range rest {
		if strings.HasPrefix(rest[i].Name, ":") {
			ordered, taken[i] = append(ordered, rest[i]), true
		}
	}
	for name := range strings.SplitSeq(order, ",") {
		for i := range rest {
			if !taken[i] && rest[i].Name == name {
				ordered, taken[i] = append(ordered, rest[i]), true
				break
			}
		}
	}
	for i := range rest {
		if !taken[i] {
			ordered = append(ordered, rest[i])
		}
	}
	return ordered
}

package protocol

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// HELLO frames are sent once per connection, so they use github.com/vmihailenco/msgpack/v5
// rather than the hand-written hot-path codec. Keys are written in the order of the SPEC table.

// sliceWriter is the io.Writer (with WriteByte/WriteString, so the Encoder writes to it directly)
// that appends to a byte slice.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error)       { w.b = append(w.b, p...); return len(p), nil }
func (w *sliceWriter) WriteByte(c byte) error            { w.b = append(w.b, c); return nil }
func (w *sliceWriter) WriteString(s string) (int, error) { w.b = append(w.b, s...); return len(s), nil }

// encodeHello appends [t, 0, {map}] as a frame; body writes the map. Writes to a sliceWriter
// cannot fail, so neither can the Encoder.
func encodeHello(dst []byte, t Type, body func(e *msgpack.Encoder)) []byte {
	dst, start := beginFrame(dst, 3, t, 0)
	w := &sliceWriter{b: dst}
	e := msgpack.GetEncoder()
	e.Reset(w)
	body(e)
	msgpack.PutEncoder(e)
	return endFrame(w.b, start)
}

// AppendGatewayHello appends the gateway's HELLO frame; server_cert is written only when
// h.ServerCert is not empty (invalid UTF-8 in it is replaced by U+FFFD), ring only when h.Ring is
// not 0.
func AppendGatewayHello(dst []byte, h *GatewayHello) []byte {
	return encodeHello(dst, TypeHello, func(e *msgpack.Encoder) {
		n := 5
		if h.ServerCert != "" {
			n++
		}
		if h.Ring != 0 {
			n++
		}
		_ = e.EncodeMapLen(n)
		_ = e.EncodeString("protocol")
		_ = e.EncodeUint(h.Protocol)
		_ = e.EncodeString("pid")
		_ = e.EncodeUint(h.PID)
		_ = e.EncodeString("max_frame")
		_ = e.EncodeUint(h.MaxFrame)
		_ = e.EncodeString("window")
		_ = e.EncodeUint(h.Window)
		_ = e.EncodeString("worker_id")
		_ = e.EncodeUint(h.WorkerID)
		if h.ServerCert != "" {
			_ = e.EncodeString("server_cert")
			_ = e.EncodeString(strings.ToValidUTF8(h.ServerCert, "\uFFFD"))
		}
		if h.Ring != 0 {
			_ = e.EncodeString("ring")
			_ = e.EncodeUint(h.Ring)
		}
	})
}

// AppendWorkerHello appends the worker's HELLO frame. If h.Error is non-empty it is written
// instead of python and features. Invalid UTF-8 in strings is replaced by U+FFFD.
func AppendWorkerHello(dst []byte, h *WorkerHello) []byte {
	valid := func(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
	return encodeHello(dst, TypeWorkerHello, func(e *msgpack.Encoder) {
		if h.Error != "" {
			_ = e.EncodeMapLen(3)
		} else {
			_ = e.EncodeMapLen(4)
		}
		_ = e.EncodeString("protocol")
		_ = e.EncodeUint(h.Protocol)
		_ = e.EncodeString("pid")
		_ = e.EncodeUint(h.PID)
		if h.Error != "" {
			_ = e.EncodeString("error")
			_ = e.EncodeString(valid(h.Error))
			return
		}
		_ = e.EncodeString("python")
		_ = e.EncodeString(valid(h.Python))
		_ = e.EncodeString("features")
		_ = e.EncodeArrayLen(len(h.Features))
		for _, f := range h.Features {
			_ = e.EncodeString(valid(f))
		}
	})
}

// helloDec decodes a HELLO map with a msgpack.Decoder reading payload[pos:]. Before each value it
// checks the type code and bounds with the hand-written dec (so that a hostile length never makes
// the Decoder allocate, and str/bin/int families are strict), then lets the Decoder read it.
type helloDec struct {
	t       Type
	payload []byte
	r       *bytes.Reader
	md      *msgpack.Decoder
}

func newHelloDec(t Type, payload []byte, pos int) *helloDec {
	r := bytes.NewReader(payload)
	_, _ = r.Seek(int64(pos), io.SeekStart)
	return &helloDec{t: t, payload: payload, r: r, md: msgpack.NewDecoder(r)}
}

// pos is the Decoder's offset in the payload (bytes.Reader is read directly, without buffering).
func (h *helloDec) pos() int { return len(h.payload) - h.r.Len() }

func (h *helloDec) check(field string, f func(d *dec) string) error {
	d := dec{b: h.payload, p: h.pos()}
	if r := f(&d); r != "" {
		return fieldErr(h.t, field, r)
	}
	return nil
}

func (h *helloDec) mapLen() (int, error) {
	if err := h.check("hello map", func(d *dec) string { _, r := d.mapLen(); return r }); err != nil {
		return 0, err
	}
	n, err := h.md.DecodeMapLen()
	return n, h.wrap("hello map", err)
}

func (h *helloDec) wrap(field string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("protocol: %s field %s: %v: %w", h.t, field, err, ErrMalformed)
}

func (h *helloDec) str(field string) (string, error) {
	if err := h.check(field, func(d *dec) string { _, r := d.str(); return r }); err != nil {
		return "", err
	}
	s, err := h.md.DecodeString()
	return s, h.wrap(field, err)
}

func (h *helloDec) uint(field string) (uint64, error) {
	if err := h.check(field, func(d *dec) string { _, r := d.uint(^uint64(0)); return r }); err != nil {
		return 0, err
	}
	c, err := h.md.PeekCode()
	if err != nil {
		return 0, h.wrap(field, err)
	}
	if msgpcode.IsFixedNum(c) || c == msgpcode.Uint8 || c == msgpcode.Uint16 || c == msgpcode.Uint32 || c == msgpcode.Uint64 {
		v, err := h.md.DecodeUint64()
		return v, h.wrap(field, err)
	}
	v, err := h.md.DecodeInt64() // signed family, checked >= 0 above
	return uint64(v), h.wrap(field, err)
}

func (h *helloDec) strList(field string) ([]string, error) {
	var n int
	if err := h.check(field, func(d *dec) string { var r string; n, r = d.arrayLen(1); return r }); err != nil {
		return nil, err
	}
	if _, err := h.md.DecodeArrayLen(); err != nil {
		return nil, h.wrap(field, err)
	}
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		s, err := h.str(field)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// skip skips an unknown key's value iteratively (Decoder.Skip recurses, so deep hostile nesting
// would grow the stack).
func (h *helloDec) skip(field string) error {
	d := dec{b: h.payload, p: h.pos()}
	if r := d.skip(); r != "" {
		return fieldErr(h.t, field, r)
	}
	_, _ = h.r.Seek(int64(d.p), io.SeekStart)
	return nil
}

// decodeMap calls value for each key; value returns false for an unknown key, which is skipped.
// It requires the "protocol" key.
func (h *helloDec) decodeMap(value func(key string) (bool, error)) (int, error) {
	n, err := h.mapLen()
	if err != nil {
		return 0, err
	}
	sawProtocol := false
	for i := 0; i < n; i++ {
		key, err := h.str("hello key")
		if err != nil {
			return 0, err
		}
		known, err := value(key)
		if err != nil {
			return 0, err
		}
		if !known {
			if err := h.skip(key); err != nil {
				return 0, err
			}
		}
		if key == "protocol" {
			sawProtocol = true
		}
	}
	if !sawProtocol {
		return 0, fmt.Errorf("protocol: %s: no protocol key: %w", h.t, ErrMalformed)
	}
	return h.pos(), nil
}

func decodeGatewayHello(payload []byte, pos int) (*GatewayHello, int, error) {
	h := newHelloDec(TypeHello, payload, pos)
	g := &GatewayHello{}
	end, err := h.decodeMap(func(key string) (known bool, err error) {
		var p *uint64
		switch key {
		case "server_cert":
			g.ServerCert, err = h.str(key)
			return true, err
		case "protocol":
			p = &g.Protocol
		case "pid":
			p = &g.PID
		case "max_frame":
			p = &g.MaxFrame
		case "window":
			p = &g.Window
		case "worker_id":
			p = &g.WorkerID
		case "ring":
			p = &g.Ring
		default:
			return false, nil
		}
		*p, err = h.uint(key)
		return true, err
	})
	if err != nil {
		return nil, pos, err
	}
	return g, end, nil
}

func decodeWorkerHello(payload []byte, pos int) (*WorkerHello, int, error) {
	h := newHelloDec(TypeWorkerHello, payload, pos)
	w := &WorkerHello{}
	end, err := h.decodeMap(func(key string) (known bool, err error) {
		switch key {
		case "protocol":
			w.Protocol, err = h.uint(key)
		case "pid":
			w.PID, err = h.uint(key)
		case "python":
			w.Python, err = h.str(key)
		case "features":
			w.Features, err = h.strList(key)
		case "error":
			w.Error, err = h.str(key)
		default:
			return false, nil
		}
		return true, err
	})
	if err != nil {
		return nil, pos, err
	}
	return w, end, nil
}

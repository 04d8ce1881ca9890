package gateway

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawH2 is a hand-driven HTTP/2 client connection (prior knowledge, h2c).
type rawH2 struct {
	t    *testing.T
	c    net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	ebuf bytes.Buffer
	dec  *hpack.Decoder
}

func dialRawH2(t *testing.T, addr string, settings ...http2.Setting) *rawH2 {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	h := &rawH2{t: t, c: c, fr: http2.NewFramer(c, c), dec: hpack.NewDecoder(4096, nil)}
	h.enc = hpack.NewEncoder(&h.ebuf)
	if _, err := c.Write([]byte(h2Preface)); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return h
}

// block encodes fields (with the encoder's dynamic table, so later blocks refer to earlier ones).
func (h *rawH2) block(fields ...string) []byte {
	h.ebuf.Reset()
	for i := 0; i < len(fields); i += 2 {
		h.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), h.ebuf.Bytes()...)
}

func (h *rawH2) get(sid uint32, extra ...string) []byte {
	return h.block(append([]string{":method", "GET", ":scheme", "http", ":authority", "example.com", ":path", "/guard"}, extra...)...)
}

// expectServed checks stream sid's outcome: served (200) when ok, else reset with PROTOCOL_ERROR
// (a malformed request, RFC 9113 §8.1.1); name says which case failed.
func (h *rawH2) expectServed(t *testing.T, sid uint32, name string, ok bool) {
	t.Helper()
	status, reset, _ := h.outcome(sid)
	if ok && status != "200" {
		t.Errorf("%s: status %q reset %v, want 200", name, status, reset)
	}
	if !ok && reset != http2.ErrCodeProtocol {
		t.Errorf("%s: status %q reset %v, want RST_STREAM PROTOCOL_ERROR", name, status, reset)
	}
}

// outcome reads frames until stream sid gets its response status or a reset; it answers SETTINGS
// and PINGs on the way, and fails on GOAWAY.
func (h *rawH2) outcome(sid uint32) (status string, reset http2.ErrCode, settingsAcked bool) {
	h.t.Helper()
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			h.t.Fatalf("stream %d: reading frames: %v", sid, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				settingsAcked = true
			} else {
				h.fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			h.t.Fatalf("stream %d: GOAWAY %v %q", sid, f.ErrCode, f.DebugData())
		case *http2.RSTStreamFrame:
			if f.StreamID == sid {
				return "", f.ErrCode, settingsAcked
			}
		case *http2.HeadersFrame:
			fields, err := h.dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				h.t.Fatal(err)
			}
			if f.StreamID == sid {
				for _, hf := range fields {
					if hf.Name == ":status" {
						return hf.Value, 0, settingsAcked
					}
				}
			}
		}
	}
}

func TestH2GuardMalformedRequestsAreStreamErrors(t *testing.T) {
	_, addr := startGatewayCfg(t, "ok", func(c *Config) { c.HTTP2Cleartext = true })
	h := dialRawH2(t, addr)
	cases := []struct {
		name   string
		fields []string
		ok     bool
	}{
		{"plain", nil, true},
		{"connection", []string{"connection", "keep-alive"}, false},
		{"keep-alive", []string{"keep-alive", "timeout=5"}, false},
		{"proxy-connection", []string{"proxy-connection", "close"}, false},
		{"transfer-encoding", []string{"transfer-encoding", "chunked"}, false},
		{"upgrade", []string{"upgrade", "websocket"}, false},
		{"te gzip", []string{"te", "gzip"}, false},
		{"te trailers", []string{"te", "trailers"}, true},
		// The same fields again: now from the dynamic table, which must still be in step.
		{"plain again", nil, true},
		{"connection again", []string{"connection", "keep-alive"}, false},
		{"te trailers again", []string{"te", "trailers"}, true},
	}
	sid := uint32(1)
	for _, tc := range cases {
		if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: sid, BlockFragment: h.get(sid, tc.fields...), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		h.expectServed(t, sid, tc.name, tc.ok)
		sid += 2
	}
}

// RFC 9113 §8.2.1, §8.1.1, §8.3.1: requests x/net would serve that are malformed.
func TestH2GuardMalformedFieldsAndTargets(t *testing.T) {
	_, addr := startGatewayCfg(t, "ok", func(c *Config) { c.HTTP2Cleartext = true })
	h := dialRawH2(t, addr)
	base := func(method, path string) []string {
		return []string{":method", method, ":scheme", "http", ":authority", "example.com", ":path", path}
	}
	cases := []struct {
		name   string
		fields []string
		ok     bool
	}{
		{"inner whitespace", append(base("GET", "/"), "x-a", "a b\tc"), true},
		{"leading space", append(base("GET", "/"), "x-a", " a"), false},
		{"trailing tab", append(base("GET", "/"), "x-a", "a\t"), false},
		{"content-length 0", append(base("GET", "/"), "content-length", "0"), true},
		{"content-length without data", append(base("POST", "/"), "content-length", "5"), false},
		{"content-length not a number", append(base("POST", "/"), "content-length", "5x"), false},
		{"content-lengths that differ", append(base("POST", "/"), "content-length", "0", "content-length", "1"), false},
		{"content-lengths that agree", append(base("POST", "/"), "content-length", "0", "content-length", "0"), true},
		{"OPTIONS *", base("OPTIONS", "*"), true},
		{"GET *", base("GET", "*"), false},
		// §8.3.1: an http(s) request needs a non-empty :authority or host.
		{"host instead of :authority", []string{":method", "GET", ":scheme", "http", ":path", "/", "host", "example.com"}, true},
		{"neither :authority nor host", []string{":method", "GET", ":scheme", "http", ":path", "/"}, false},
		{"empty :authority", []string{":method", "GET", ":scheme", "https", ":authority", "", ":path", "/"}, false},
		{"empty host", []string{":method", "GET", ":scheme", "http", ":path", "/", "host", ""}, false},
		{"empty host beside :authority", append(base("GET", "/"), "host", ""), false},
	}
	sid := uint32(1)
	for _, tc := range cases {
		if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: sid, BlockFragment: h.block(tc.fields...), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		h.expectServed(t, sid, tc.name, tc.ok)
		sid += 2
	}
}

// RFC 9113 §8.1.1: a body that ends short of its content-length is malformed, whether DATA or
// trailers end it; so are trailers with a connection-specific field (§8.2.2). Padding does not
// count as content.
func TestH2GuardDeclaredBodyLength(t *testing.T) {
	_, addr := startGatewayCfg(t, "ok", func(c *Config) { c.HTTP2Cleartext = true })
	h := dialRawH2(t, addr)
	type piece struct {
		data []byte
		pad  uint8
	}
	cases := []struct {
		name     string
		length   string // "": no content-length
		pieces   []piece
		trailers []string
		ok       bool
	}{
		{"exact", "6", []piece{{data: []byte("abcdef")}}, nil, true},
		{"exact in two padded frames", "6", []piece{{data: []byte("abc"), pad: 20}, {data: []byte("def"), pad: 1}}, nil, true},
		{"short", "10", []piece{{data: []byte("abcdef")}}, nil, false},
		{"short, padding would make up for it", "10", []piece{{data: []byte("abcdef"), pad: 4}}, nil, false},
		{"exact, then trailers", "3", []piece{{data: []byte("abc")}}, []string{"x-sum", "1"}, true},
		{"short, then trailers", "4", []piece{{data: []byte("abc")}}, []string{"x-sum", "1"}, false},
		{"no length, trailers", "", []piece{{data: []byte("abc")}}, []string{"x-sum", "1"}, true},
		{"connection-specific trailer", "", []piece{{data: []byte("abc")}}, []string{"connection", "close"}, false},
		{"padded trailer value", "3", []piece{{data: []byte("abc")}}, []string{"x-sum", "1 "}, false},
	}
	sid := uint32(1)
	for _, tc := range cases {
		fields := []string{":method", "POST", ":scheme", "http", ":authority", "example.com", ":path", "/body"}
		if tc.length != "" {
			fields = append(fields, "content-length", tc.length)
		}
		if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: sid, BlockFragment: h.block(fields...), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		for i, p := range tc.pieces {
			last := i == len(tc.pieces)-1 && tc.trailers == nil
			var err error
			if p.pad > 0 {
				err = h.fr.WriteDataPadded(sid, last, p.data, make([]byte, p.pad))
			} else {
				err = h.fr.WriteData(sid, last, p.data)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if tc.trailers != nil {
			if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: sid, BlockFragment: h.block(tc.trailers...), EndStream: true, EndHeaders: true}); err != nil {
				t.Fatal(err)
			}
		}
		h.expectServed(t, sid, tc.name, tc.ok)
		sid += 2
	}
}

// A malformed request split over HEADERS (padded, with priority) and CONTINUATION frames is found
// too; a well-formed one split the same way is served.
func TestH2GuardPaddedAndContinuation(t *testing.T) {
	_, addr := startGatewayCfg(t, "ok", func(c *Config) { c.HTTP2Cleartext = true })
	h := dialRawH2(t, addr)
	for i, bad := range []bool{true, false, true} {
		sid := uint32(1 + 2*i)
		var extra []string
		if bad {
			extra = []string{"x-long", string(bytes.Repeat([]byte("a"), 100)), "upgrade", "h2c"}
		} else {
			extra = []string{"x-long", string(bytes.Repeat([]byte("b"), 100))}
		}
		blk := h.get(sid, extra...)
		cut := len(blk) / 2
		err := h.fr.WriteHeaders(http2.HeadersFrameParam{
			StreamID: sid, BlockFragment: blk[:cut], EndStream: true, PadLength: 7,
			Priority: http2.PriorityParam{StreamDep: 0, Weight: 200},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.fr.WriteContinuation(sid, true, blk[cut:]); err != nil {
			t.Fatal(err)
		}
		h.expectServed(t, sid, fmt.Sprintf("stream %d", sid), !bad)
	}
}

// RFC 9113 §6.5.3: settings are processed in order; a repeated one is not an error.
func TestH2GuardDuplicateSettings(t *testing.T) {
	_, addr := startGatewayCfg(t, "ok", func(c *Config) { c.HTTP2Cleartext = true })
	h := dialRawH2(t, addr,
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100},
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 10},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535})
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.get(1), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	status, reset, acked := h.outcome(1)
	if status != "200" || !acked {
		t.Fatalf("status %q reset %v settings acked %v", status, reset, acked)
	}
}

func settingsFrame(entries ...[2]uint32) []byte {
	f := []byte{0, 0, byte(6 * len(entries)), 0x4, 0, 0, 0, 0, 0}
	for _, e := range entries {
		f = binary.BigEndian.AppendUint16(f, uint16(e[0]))
		f = binary.BigEndian.AppendUint32(f, e[1])
	}
	return f
}

func TestAppendDedupedSettings(t *testing.T) {
	cases := []struct {
		name     string
		in, want [][2]uint32
	}{
		{"no duplicates: unchanged", [][2]uint32{{4, 100}, {3, 10}}, [][2]uint32{{4, 100}, {3, 10}}},
		{"last value wins", [][2]uint32{{4, 100}, {3, 10}, {4, 200}}, [][2]uint32{{3, 10}, {4, 200}}},
		{"three times", [][2]uint32{{4, 1}, {4, 2}, {4, 3}}, [][2]uint32{{4, 3}}},
		{"an invalid earlier value ends the frame", [][2]uint32{{3, 10}, {4, 1 << 31}, {4, 5}}, [][2]uint32{{3, 10}, {4, 1 << 31}}},
		{"invalid push after a duplicate", [][2]uint32{{4, 1}, {4, 2}, {2, 7}, {3, 1}}, [][2]uint32{{4, 2}, {2, 7}}},
	}
	for _, tc := range cases {
		got := appendDedupedSettings([]byte("x"), settingsFrame(tc.in...))
		want := append([]byte("x"), settingsFrame(tc.want...)...)
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got % x\nwant % x", tc.name, got, want)
		}
	}
}

// A client that is not speaking HTTP/2 at all gets x/net's own answer: the guard steps aside.
func TestH2GuardNotAPreface(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	g := newH2Guard(b)
	go a.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	buf := make([]byte, 64)
	n, err := g.Read(buf)
	if err != nil || string(buf[:n]) != "GET / HTTP/1.1\r\n\r\n" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
}

// oneShotConn is a net.Conn whose reads return data in pieces of at most step bytes.
type oneShotConn struct {
	net.Conn
	data []byte
	step int
}

func (c *oneShotConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), c.step)
	n = copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// FuzzH2Guard feeds arbitrary frames after the preface, in reads of arbitrary sizes: the guard must
// not panic, must pass on the preface and end with the connection's error, and only ever adds
// 5 bytes of priority fields to a HEADERS frame, or a 14-byte PRIORITY frame after the DATA frame
// that ends a request's HEADERS (or drops repeated settings), so its output is bounded.
func FuzzH2Guard(f *testing.F) {
	h := &rawH2{ebuf: bytes.Buffer{}}
	h.enc = hpack.NewEncoder(&h.ebuf)
	var seed bytes.Buffer
	fr := http2.NewFramer(&seed, nil)
	fr.WriteSettings(http2.Setting{ID: 4, Val: 1}, http2.Setting{ID: 4, Val: 2})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.block(":method", "GET", "connection", "x"), EndHeaders: true, PadLength: 3})
	fr.WriteData(1, true, []byte("hello"))
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: h.block(":method", "GET")[:2]})
	fr.WriteContinuation(3, true, h.block(":path", "/"))
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: h.block(":method", "POST", "content-length", "9"), EndHeaders: true})
	fr.WriteDataPadded(5, false, []byte("abc"), []byte{0, 0})
	fr.WriteData(5, true, []byte("de"))
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 7, BlockFragment: h.block(":method", "POST", "content-length", "1"), EndHeaders: true})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 7, BlockFragment: h.block("x-t", " 1"), EndStream: true, EndHeaders: true})
	f.Add(seed.Bytes(), 7)
	f.Add([]byte{0, 0, 0, 1, 0x4, 0, 0, 0, 1}, 1)
	f.Fuzz(func(t *testing.T, frames []byte, step int) {
		if step < 1 {
			step = 1
		}
		in := append([]byte(h2Preface), frames...)
		g := newH2Guard(&oneShotConn{data: in, step: step})
		var out []byte
		buf := make([]byte, 1+step%5000)
		for {
			n, err := g.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				if err != io.EOF {
					t.Fatalf("error %v", err)
				}
				break
			}
			if len(out) > 2*len(in)+64 {
				t.Fatalf("guard produced %d bytes from %d", len(out), len(in))
			}
		}
		if !bytes.HasPrefix(out, []byte(h2Preface)) {
			t.Fatalf("preface lost: %q", out[:min(len(out), 24)])
		}
		if len(out) > len(in)+5*(len(in)/9+1) {
			t.Fatalf("guard produced %d bytes from %d", len(out), len(in))
		}
	})
}

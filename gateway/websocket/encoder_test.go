package websocket

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// toClient turns server frames into client frames (mask bit and key set,
// payload masked), so that a Decoder can read them back.
func toClient(t testing.TB, in []byte) []byte {
	t.Helper()
	var out []byte
	for len(in) > 0 {
		if len(in) < 2 || in[1]&bitMask != 0 {
			t.Fatalf("bad server frame % x", in)
		}
		hdr, n := 2, int(in[1]&0x7F)
		switch n {
		case 126:
			hdr, n = 4, int(binary.BigEndian.Uint16(in[2:]))
		case 127:
			hdr, n = 10, int(binary.BigEndian.Uint64(in[2:]))
		}
		if len(in) < hdr+n {
			t.Fatalf("truncated server frame")
		}
		out = append(out, in[0], in[1]|bitMask)
		out = append(out, in[2:hdr]...)
		out = append(out, testKey[:]...)
		start := len(out)
		out = append(out, in[hdr:hdr+n]...)
		maskBytes(testKey, 0, out[start:])
		in = in[hdr+n:]
	}
	return out
}

func TestAppendMessageHeaders(t *testing.T) {
	for _, tc := range []struct {
		text bool
		n    int
		hdr  []byte
	}{
		{true, 0, []byte{0x81, 0}},
		{false, 5, []byte{0x82, 5}},
		{true, 125, []byte{0x81, 125}},
		{true, 126, []byte{0x81, 126, 0, 126}},
		{false, 65535, []byte{0x82, 126, 0xFF, 0xFF}},
		{false, 65536, []byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
		{true, 1 << 24, []byte{0x81, 127, 0, 0, 0, 0, 1, 0, 0, 0}},
	} {
		data := bytes.Repeat([]byte{'z'}, tc.n)
		got := AppendMessage([]byte("prefix"), tc.text, data, nil)
		want := append(append([]byte("prefix"), tc.hdr...), data...)
		if !bytes.Equal(got, want) {
			t.Errorf("text=%v n=%d: header % x; want % x", tc.text, tc.n, got[6:6+len(tc.hdr)], tc.hdr)
		}
	}
}

func TestAppendControl(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"close empty", AppendClose(nil, 0, "ignored"), "\x88\x00"},
		{"close code", AppendClose(nil, 1000, ""), "\x88\x02\x03\xe8"},
		{"close reason", AppendClose(nil, 4000, "bye"), "\x88\x05\x0f\xa0bye"},
		{"close 123", AppendClose(nil, 1001, strings.Repeat("r", 123)), "\x88\x7d\x03\xe9" + strings.Repeat("r", 123)},
		{"close cut", AppendClose(nil, 1001, strings.Repeat("r", 130)), "\x88\x7d\x03\xe9" + strings.Repeat("r", 123)},
		// 122 bytes then a 2-byte character: cut before it.
		{"close cut utf8", AppendClose(nil, 1011, strings.Repeat("r", 122)+"é"), "\x88\x7c\x03\xf3" + strings.Repeat("r", 122)},
		// 121 bytes then a 4-byte character: cut before it.
		{"close cut utf8 4", AppendClose(nil, 1011, strings.Repeat("r", 121)+"😀x"), "\x88\x7b\x03\xf3" + strings.Repeat("r", 121)},
		{"close exact utf8", AppendClose(nil, 1011, strings.Repeat("r", 121)+"é"), "\x88\x7d\x03\xf3" + strings.Repeat("r", 121) + "é"},
		{"ping", AppendPing(nil, []byte("abc")), "\x89\x03abc"},
		{"ping empty", AppendPing(nil, nil), "\x89\x00"},
		{"pong", AppendPong([]byte("x"), []byte("abc")), "x\x8a\x03abc"},
		{"ping cut", AppendPing(nil, bytes.Repeat([]byte{'p'}, 200)), "\x89\x7d" + strings.Repeat("p", 125)},
	} {
		if string(tc.got) != tc.want {
			t.Errorf("%s: %q; want %q", tc.name, tc.got, tc.want)
		}
	}
}

func TestEncoderRoundTrip(t *testing.T) {
	var out []byte
	msgs := []string{"", "a", strings.Repeat("é", 100), strings.Repeat("x", 70000)}
	var want []Event
	for _, m := range msgs {
		out = AppendMessage(out, true, []byte(m), nil)
		out = AppendMessage(out, false, []byte(m), nil)
		want = append(want, ev(EventText, m), ev(EventBinary, m))
	}
	out = AppendPing(out, []byte("ping"))
	out = AppendPong(out, []byte("pong"))
	out = AppendClose(out, 4000, "done ☺")
	want = append(want, ev(EventPing, "ping"), ev(EventPong, "pong"), closeEv(4000, "done ☺"))
	var d Decoder
	evs, err := decodeAll(t, &d, toClient(t, out), 0)
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, evs, want)
}

func TestEncoderAllocs(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 64)
	dst := make([]byte, 0, 4096)
	c := NewCompressor(&DeflateParams{ServerNoContextTakeover: true})
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"message", func() { dst = AppendMessage(dst[:0], true, data, nil) }},
		{"compressed", func() { dst = AppendMessage(dst[:0], true, data, c) }},
		{"close", func() { dst = AppendClose(dst[:0], 1000, "reason") }},
		{"ping", func() { dst = AppendPing(dst[:0], data[:10]) }},
	} {
		tc.f() // warm the writer pool
		if allocs := testing.AllocsPerRun(1000, tc.f); allocs != 0 && !raceEnabled {
			t.Errorf("%s: %v allocations; want 0", tc.name, allocs)
		}
	}
}

func BenchmarkAppendMessage1K(b *testing.B) {
	data := bytes.Repeat([]byte(`{"id":12345,"name":"abcdefghi"},`), 32)
	dst := make([]byte, 0, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		dst = AppendMessage(dst[:0], true, data, nil)
	}
}

func BenchmarkAppendMessage1KCompressed(b *testing.B) {
	data := bytes.Repeat([]byte(`{"id":12345,"name":"abcdefghi"},`), 32)
	dst := make([]byte, 0, 2048)
	c := NewCompressor(&DeflateParams{ServerNoContextTakeover: true})
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		dst = AppendMessage(dst[:0], true, data, c)
	}
}

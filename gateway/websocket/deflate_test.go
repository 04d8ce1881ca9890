package websocket

import (
	"bytes"
	"compress/flate"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"
)

// client compresses messages as a permessage-deflate client does.
type client struct {
	takeover bool
	buf      bytes.Buffer
	w        *flate.Writer
}

func newClient(takeover bool) *client {
	c := &client{takeover: takeover}
	c.w, _ = flate.NewWriter(&c.buf, flate.DefaultCompression)
	return c
}

// compress returns the compressed message with the sync flush tail removed
// (RFC 7692 section 7.2.1).
func (c *client) compress(msg string) string {
	c.buf.Reset()
	if !c.takeover {
		c.w.Reset(&c.buf)
	}
	c.w.Write([]byte(msg))
	c.w.Flush()
	out := c.buf.String()
	if !strings.HasSuffix(out, syncTail) {
		panic("no sync flush tail")
	}
	return strings.TrimSuffix(out, syncTail)
}

// words makes n bytes of text with a small vocabulary, so that it
// compresses and refers back a lot.
func words(r *rand.Rand, n int) string {
	vocab := strings.Fields("the quick brown fox jumps over lazy dog websocket gateway deflate window message frame ☺ é")
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(vocab[r.IntN(len(vocab))])
		b.WriteByte(' ')
	}
	return cutUTF8(b.String(), n)
}

// cutUTF8 returns the longest prefix of s of at most n bytes that ends on a
// character boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestCompressorRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	c := NewCompressor(&DeflateParams{ServerNoContextTakeover: true})
	for _, tc := range []struct {
		name string
		text bool
		data []byte
		rsv1 bool
	}{
		{"empty", true, nil, false},
		{"short", true, []byte("hello"), false},
		{"63", true, bytes.Repeat([]byte("a"), 63), false},
		{"64", true, bytes.Repeat([]byte("a"), 64), true},
		{"1K json", true, bytes.Repeat([]byte(`{"id":12345,"name":"abcdefghi"},`), 32), true},
		{"100K words", true, []byte(words(r, 100000)), true},
		{"1M words binary", false, []byte(words(r, 1<<20)), true},
		{"random", false, randomBytes(r, 10000), false},
		{"random small", false, randomBytes(r, 100), false},
	} {
		out := AppendMessage([]byte("pre"), tc.text, tc.data, c)
		if string(out[:3]) != "pre" {
			t.Fatalf("%s: prefix clobbered", tc.name)
		}
		out = out[3:]
		if rsv1 := out[0]&bitRsv1 != 0; rsv1 != tc.rsv1 {
			t.Errorf("%s: RSV1 %v; want %v", tc.name, rsv1, tc.rsv1)
		}
		if tc.rsv1 && len(out) >= len(tc.data) {
			t.Errorf("%s: compressed to %d bytes from %d", tc.name, len(out), len(tc.data))
		}
		d := &Decoder{}
		d.SetDeflate(&DeflateParams{ServerNoContextTakeover: true})
		kind := EventBinary
		if tc.text {
			kind = EventText
		}
		for _, step := range []int{0, 1000} {
			evs, err := decodeAll(t, d, toClient(t, out), step)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			checkEvents(t, evs, []Event{{Kind: kind, Data: tc.data}})
		}
		// Go's own inflater agrees.
		if tc.rsv1 {
			hdr := 2
			switch out[1] {
			case 126:
				hdr = 4
			case 127:
				hdr = 10
			}
			if got := inflateWithStdlib(t, out[hdr:]); !bytes.Equal(got, tc.data) {
				t.Fatalf("%s: stdlib inflates to something else", tc.name)
			}
		}
	}
}

func inflateWithStdlib(t *testing.T, compressed []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	fr := flate.NewReader(bytes.NewReader(append(bytes.Clone(compressed), inflateTail...)))
	if _, err := out.ReadFrom(fr); err != nil {
		t.Fatalf("stdlib inflate: %v", err)
	}
	return out.Bytes()
}

func TestCompressorWindowBits(t *testing.T) {
	// With server_max_window_bits=10 only messages of up to 1 KiB are
	// compressed: no back-reference can then reach further than the window.
	c := NewCompressor(&DeflateParams{ServerNoContextTakeover: true, ServerMaxWindowBits: 10})
	if out := AppendMessage(nil, true, bytes.Repeat([]byte("a"), 1024), c); out[0]&bitRsv1 == 0 {
		t.Error("1024 bytes not compressed")
	}
	if out := AppendMessage(nil, true, bytes.Repeat([]byte("a"), 1025), c); out[0]&bitRsv1 != 0 {
		t.Error("1025 bytes compressed with a 1 KiB window")
	}
	if NewCompressor(nil) != nil {
		t.Error("NewCompressor(nil) != nil")
	}
}

func TestDeflateContextTakeover(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	// Messages that repeat earlier ones, in all 80 KiB: the dictionary
	// slides past its 32 KiB several times.
	var msgs []string
	for i := range 40 {
		m := words(r, 1000+r.IntN(3000))
		if i > 0 {
			m += cutUTF8(msgs[i-1], 500)
		}
		if i%7 == 3 {
			m = words(r, 40000) // longer than the window
		}
		msgs = append(msgs, m)
	}

	for _, takeover := range []bool{true, false} {
		t.Run(fmt.Sprintf("takeover=%v", takeover), func(t *testing.T) {
			cl := newClient(takeover)
			var all []byte
			var want []Event
			for i, m := range msgs {
				z := cl.compress(m)
				switch i % 5 {
				case 1: // fragmented, with a ping between the fragments
					h := len(z) / 2
					all = append(all, clientFrames(frame{b0: opText | bitRsv1, payload: z[:h]}, fin(opPing, "x"), fin(opContinuation, z[h:]))...)
					want = append(want, ev(EventPing, "x"))
				case 2: // an uncompressed message does not enter the window
					all = append(all, clientFrames(fin(opBinary, "plain"), fin(opText|bitRsv1, z))...)
					want = append(want, ev(EventBinary, "plain"))
				default:
					all = append(all, clientFrames(fin(opText|bitRsv1, z))...)
				}
				want = append(want, ev(EventText, m))
			}
			for _, step := range []int{0, 1, 4096} {
				d := &Decoder{}
				d.SetDeflate(&DeflateParams{ServerNoContextTakeover: true, ClientNoContextTakeover: !takeover})
				evs, err := decodeAll(t, d, all, step)
				if err != nil {
					t.Fatalf("step %d: %v after %d events", step, err, len(evs))
				}
				checkEvents(t, evs, want)
				if takeover && cap(d.dict) != maxWindow {
					t.Fatalf("dictionary capacity %d", cap(d.dict))
				}
				if !takeover && d.dict != nil {
					t.Fatal("dictionary without context takeover")
				}
				d.Release()
				if takeover && d.Retained() != maxWindow {
					t.Fatalf("Release: Retained %d; want the dictionary only", d.Retained())
				}
			}
			if takeover {
				// Without the dictionary the messages that refer back fail.
				d := &Decoder{}
				d.SetDeflate(&DeflateParams{ServerNoContextTakeover: true, ClientNoContextTakeover: true})
				if _, err := decodeAll(t, d, all, 0); errCode(err) != CloseInvalidPayload {
					t.Fatalf("decoding context-takeover messages without context: %v", err)
				}
			}
		})
	}
}

func TestDeflateFinalBlock(t *testing.T) {
	// A client may end a message with a final block (RFC 7692 section
	// 7.2.3.5), with or without removing 00 00 ff ff.
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestCompression)
	w.Write([]byte("hello hello hello hello"))
	w.Close()
	for _, z := range []string{buf.String(), strings.TrimSuffix(buf.String(), syncTail)} {
		d := &Decoder{}
		d.SetDeflate(&DeflateParams{ClientNoContextTakeover: true})
		evs, err := decodeAll(t, d, clientFrames(fin(opText|bitRsv1, z)), 0)
		if err != nil {
			t.Fatal(err)
		}
		checkEvents(t, evs, []Event{ev(EventText, "hello hello hello hello")})
	}
}

func TestDeflateErrors(t *testing.T) {
	cl := newClient(false)
	big := cl.compress(words(rand.New(rand.NewPCG(5, 6)), 50000))
	for _, tc := range []struct {
		name string
		in   []byte
		max  int64
		code int
	}{
		{"garbage", clientFrames(fin(opText|bitRsv1, "\xff\xff\xff\xff")), 0, 1007},
		{"reserved block type", clientFrames(fin(opBinary|bitRsv1, "\x07\x00")), 0, 1007},
		{"truncated", clientFrames(fin(opText|bitRsv1, big[:len(big)/2])), 0, 1007},
		{"bad utf8", clientFrames(fin(opText|bitRsv1, newClient(false).compress("ok \xff"))), 0, 1007},
		{"bad utf8 binary ok", clientFrames(fin(opBinary|bitRsv1, newClient(false).compress("ok \xff"))), 0, 0},
		{"inflated over max", clientFrames(fin(opText|bitRsv1, newClient(false).compress(strings.Repeat("a", 101)))), 100, 1009},
		{"inflated at max", clientFrames(fin(opText|bitRsv1, newClient(false).compress(strings.Repeat("a", 100)))), 100, 0},
		{"compressed over max, inflated more", clientFrames(fin(opText|bitRsv1, big)), int64(len(big) - 1), 1009},
	} {
		for _, step := range []int{0, 1} {
			d := &Decoder{MaxMessage: tc.max}
			d.SetDeflate(&DeflateParams{})
			if _, err := decodeAll(t, d, tc.in, step); errCode(err) != tc.code {
				t.Errorf("%s step %d: %v; want code %d", tc.name, step, err, tc.code)
			}
		}
	}
}

// flushedFragments compresses msg as a client that flushes after each piece of size bytes and sends
// each flush as a fragment (RFC 7692 §7.2.1: the message's final 00 00 ff ff removed).
func flushedFragments(op byte, msg []byte, size int) ([]frame, int) {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed)
	var frames []frame
	total := 0
	for i := 0; i < len(msg); i += size {
		buf.Reset()
		w.Write(msg[i:min(i+size, len(msg))])
		w.Flush()
		p := buf.Bytes()
		b0 := byte(0)
		if i == 0 {
			b0 = op | bitRsv1
		}
		if i+size >= len(msg) {
			b0 |= bitFin
			p = p[:len(p)-4]
		}
		frames = append(frames, frame{b0: b0, payload: string(p)})
		total += len(p)
	}
	return frames, total
}

// --ws-max-size bounds a compressed message's inflated size: a message that inflates to no more
// may take more on the wire (probe 61: 60,000 random bytes in 100-byte fragments, each flushed,
// are 65,996 bytes compressed, and were refused under a limit of 65,536). The compressed bytes,
// kept until the message ends, are bounded at the limit and a quarter.
func TestDeflateMaxSizeIsTheInflatedSize(t *testing.T) {
	random := make([]byte, 60000)
	r := rand.New(rand.NewPCG(7, 8))
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	frames, wire := flushedFragments(opBinary, random, 100)
	if wire <= 65536 {
		t.Fatalf("test set-up: %d bytes on the wire", wire)
	}
	tiny, tinyWire := flushedFragments(opBinary, random[:2000], 1) // 1-byte fragments: 6 bytes each
	for _, step := range []int{0, 7} {
		d := &Decoder{MaxMessage: 65536}
		d.SetDeflate(&DeflateParams{})
		evs, err := decodeAll(t, d, clientFrames(frames...), step)
		if err != nil || len(evs) != 1 || !bytes.Equal(evs[0].Data, random) {
			t.Fatalf("step %d: %d events, %v", step, len(evs), err)
		}
		d = &Decoder{MaxMessage: 59999}
		d.SetDeflate(&DeflateParams{})
		if _, err := decodeAll(t, d, clientFrames(frames...), step); errCode(err) != CloseTooBig {
			t.Fatalf("step %d: inflated over the limit: %v", step, err)
		}
		d = &Decoder{MaxMessage: 4000}
		d.SetDeflate(&DeflateParams{})
		if _, err := decodeAll(t, d, clientFrames(tiny...), step); errCode(err) != CloseTooBig || tinyWire <= 4000+1000+1024 {
			t.Fatalf("step %d: %d compressed bytes for 2,000 under a limit of 4,000: %v", step, tinyWire, err)
		}
	}
}

func TestDeflateBomb(t *testing.T) {
	// 8 MiB of zeros compress to about 8 KB (deflate tops out near 1:1000).
	var zeros = make([]byte, 8<<20)
	z := newClient(false).compress(string(zeros))
	if len(z) > 16<<10 {
		t.Fatalf("bomb is %d bytes", len(z))
	}
	in := clientFrames(fin(opBinary|bitRsv1, z))
	const limit = 1 << 20
	for _, step := range []int{0, 1000} {
		d := &Decoder{MaxMessage: limit}
		d.SetDeflate(&DeflateParams{})
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := decodeAll(t, d, in, step)
		runtime.ReadMemStats(&after)
		if errCode(err) != CloseTooBig {
			t.Fatalf("bomb: %v", err)
		}
		// Buffers grow geometrically to limit+1: about 2*limit in all, plus
		// the test's own copies of the input.
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("step %d: %d-byte bomb: %v after allocating %d bytes", step, len(z), err, alloc)
		if alloc > 4*limit {
			t.Fatalf("bomb allocated %d bytes (limit %d)", alloc, limit)
		}
		if d.Retained() > 3*limit {
			t.Fatalf("retained %d", d.Retained())
		}
	}
}

func TestSlideWindow(t *testing.T) {
	const size = 8
	dict := make([]byte, 0, size)
	var all []byte
	for i, n := range []int{3, 4, 0, 5, 8, 9, 1, 2} {
		data := bytes.Repeat([]byte{byte('a' + i)}, n)
		all = append(all, data...)
		dict = slideWindow(dict, data, size)
		want := all[max(0, len(all)-size):]
		if !bytes.Equal(dict, want) || cap(dict) != size {
			t.Fatalf("step %d: %q; want %q", i, dict, want)
		}
	}
}

func TestDecoderDeflateAllocs(t *testing.T) {
	msg := strings.Repeat(`{"id":12345,"name":"abcdefghi"},`, 32)
	for _, takeover := range []bool{true, false} {
		cl := newClient(takeover)
		var ins [][]byte
		for range 50 {
			ins = append(ins, clientFrames(fin(opText|bitRsv1, cl.compress(msg))))
		}
		d := &Decoder{}
		d.SetDeflate(&DeflateParams{ClientNoContextTakeover: !takeover})
		buf := make([]byte, 4096)
		i := 0
		decode := func() {
			in := ins[i%len(ins)]
			if !takeover || i < len(ins) {
				copy(buf, in)
				if _, ev, err := d.Next(buf[:len(in)]); err != nil || string(ev.Data) != msg {
					t.Fatalf("message %d: %v", i, err)
				}
			}
			i++
		}
		decode() // warm up pools and buffers
		if allocs := testing.AllocsPerRun(len(ins)-2, decode); allocs != 0 && !raceEnabled {
			t.Errorf("takeover=%v: inflating allocates %v times per message", takeover, allocs)
		}
	}
}

func BenchmarkDecodeCompressed1K(b *testing.B) {
	msg := strings.Repeat(`{"id":12345,"name":"abcdefghi"},`, 32)
	in := clientFrames(fin(opText|bitRsv1, newClient(false).compress(msg)))
	d := &Decoder{}
	d.SetDeflate(&DeflateParams{ClientNoContextTakeover: true})
	buf := make([]byte, len(in))
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		copy(buf, in)
		if _, _, err := d.Next(buf); err != nil {
			b.Fatal(err)
		}
	}
}

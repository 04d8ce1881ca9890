package http1

import (
	"bytes"
	"strings"
	"testing"
)

// decodeAll feeds in to a fresh decoder step bytes at a time, the way the
// connection loop does: unconsumed bytes are kept and presented again with
// the next bytes appended. It stops at done or at the first error and
// returns the body, the bytes consumed in total and the outcome.
func decodeAll(in []byte, step int) (body []byte, consumed int, done bool, err error) {
	var d ChunkedDecoder
	var pending []byte
	for fed := 0; ; {
		for {
			n, data, dn, err := d.Decode(pending)
			if n < 0 || n > len(pending) {
				panic("Decode consumed out of range")
			}
			if len(data) > 0 {
				if !inside(pending[:n], data) {
					panic("data is not a sub-slice of the consumed bytes")
				}
				body = append(body, data...)
			}
			pending = pending[n:]
			consumed += n
			if err != nil || dn {
				return body, consumed, dn, err
			}
			if n == 0 && len(data) == 0 {
				break
			}
		}
		if fed == len(in) {
			return body, consumed, false, nil
		}
		k := min(step, len(in)-fed)
		pending = append(pending, in[fed:fed+k]...)
		fed += k
	}
}

// inside reports whether sub lies within b.
func inside(b, sub []byte) bool {
	if len(sub) == 0 {
		return true
	}
	start := cap(b) - cap(sub)
	return start >= 0 && start+len(sub) <= len(b) && &b[:cap(b)][start] == &sub[0]
}

var goodChunked = []struct {
	name string
	in   string
	body string
}{
	{"one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello"},
	{"empty body", "0\r\n\r\n", ""},
	{"several chunks", "5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n", "hello world"},
	{"hex sizes", "a\r\n0123456789\r\nA\r\nabcdefghij\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n", "0123456789abcdefghij0123456789abcdef"},
	{"leading zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello"},
	{"16 digits", "0000000000000005\r\nhello\r\n0000000000000000\r\n\r\n", "hello"},
	{"data containing CRLF", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n"},
	{"extension", "5;foo\r\nhello\r\n0;bar\r\n\r\n", "hello"},
	{"extension with token value", "5;foo=bar;baz=1\r\nhello\r\n0\r\n\r\n", "hello"},
	{"extension with quoted value", "5;foo=\"a b;c=\\\"d\\\\\"\r\nhello\r\n0\r\n\r\n", "hello"},
	{"extension with BWS", "5 \t; foo \t= \tbar ; baz\r\nhello\r\n0\r\n\r\n", "hello"},
	{"extension with empty quoted value", "5;a=\"\"\r\nhello\r\n0\r\n\r\n", "hello"},
	{"trailer", "5\r\nhello\r\n0\r\nX-Sum: abc\r\nY: \r\n\r\n", "hello"},
	{"trailer obs-text", "5\r\nhello\r\n0\r\nX: caf\xc3\xa9\r\n\r\n", "hello"},
	{"binary data", "3\r\n\x00\xff\n\r\n0\r\n\r\n", "\x00\xff\n"},
}

func TestChunked(t *testing.T) {
	for _, tt := range goodChunked {
		t.Run(tt.name, func(t *testing.T) {
			for _, next := range []string{"", "GET / HTTP/1.1\r\n\r\n"} {
				in := []byte(tt.in + next)
				for _, step := range []int{len(in), 1, 2, 3, 7} {
					body, n, done, err := decodeAll(in, step)
					if err != nil || !done || n != len(tt.in) || string(body) != tt.body {
						t.Fatalf("step %d: body %q, consumed %d, done %v, err %v; want %q, %d, true, nil",
							step, body, n, done, err, tt.body, len(tt.in))
					}
				}
			}
		})
	}
}

var badChunked = []struct {
	name string
	in   string
	want error
}{
	{"0x prefix", "0x10\r\n0123456789abcdef\r\n0\r\n\r\n", errChunkSize},
	{"negative", "-1\r\nx\r\n0\r\n\r\n", errChunkSize},
	{"plus", "+1\r\nx\r\n0\r\n\r\n", errChunkSize},
	{"space inside size", "1 0\r\n0123456789abcdef\r\n0\r\n\r\n", errChunkExt},
	{"leading space", " 1\r\nx\r\n0\r\n\r\n", errChunkSize},
	{"trailing space", "1 \r\nx\r\n0\r\n\r\n", errChunkExt},
	{"trailing tab", "1\t\r\nx\r\n0\r\n\r\n", errChunkExt},
	{"empty size", "\r\nx\r\n0\r\n\r\n", errChunkSize},
	{"non-hex", "g\r\nx\r\n", errChunkSize},
	{"17 digits", "00000000000000005\r\nhello\r\n0\r\n\r\n", errChunkOverflow},
	{"18 digits", "fffffffffffffffff1\r\nx\r\n0\r\n\r\n", errChunkOverflow},
	{"over MaxInt64", "8000000000000000\r\nx\r\n", errChunkOverflow},
	{"max uint64", "ffffffffffffffff\r\nx\r\n", errChunkOverflow},
	{"LF-only size line", "5\nhello\r\n0\r\n\r\n", errChunkLineEnd},
	{"LF-only last chunk line", "5\r\nhello\r\n0\n\r\n", errChunkLineEnd},
	{"bare CR in size line", "5\rhello\r\n0\r\n\r\n", errChunkLineEnd},
	{"missing CRLF after data", "5\r\nhello0\r\n\r\n", errChunkDataEnd},
	{"extra data byte", "5\r\nhelloX\r\n0\r\n\r\n", errChunkDataEnd},
	{"LF-only after data", "5\r\nhello\n0\r\n\r\n", errChunkDataEnd},
	{"CR-only after data", "5\r\nhello\r0\r\n\r\n", errChunkDataEnd},
	{"LF CR after data", "5\r\nhello\n\r0\r\n\r\n", errChunkDataEnd},
	{"short data", "6\r\nhello\r\n0\r\n\r\n", errChunkDataEnd},
	{"empty extension", "5;\r\nhello\r\n0\r\n\r\n", errChunkExt},
	{"extension without name", "5;=x\r\nhello\r\n0\r\n\r\n", errChunkExt},
	{"extension without value", "5;a=\r\nhello\r\n0\r\n\r\n", errChunkExt},
	{"extension space in value", "5;a=b c\r\nhello\r\n0\r\n\r\n", errChunkExt},
	{"extension unterminated quote", "5;a=\"b\r\nhello\r\n0\r\n\r\n", errChunkExt},
	{"extension NUL in quote", "5;a=\"\x00\"\r\nhello\r\n0\r\n\r\n", errChunkExt},
	{"extension trailing backslash", "5;a=\"\\\r\nhello\r\n0\r\n\r\n", errChunkExt},
	{"extension trailing space", "5;a=b \r\nhello\r\n0\r\n\r\n", errChunkExt},
	{"extension non-token name", "5;a(b\r\nhello\r\n0\r\n\r\n", errChunkExt},
	{"LF-only final line", "5\r\nhello\r\n0\r\n\n", errChunkLineEnd},
	{"CR-only final line", "5\r\nhello\r\n0\r\n\rX", errChunkLineEnd},
	{"LF-only trailer line", "0\r\nX: y\n\r\n", errChunkLineEnd},
	{"trailer space before colon", "0\r\nX : y\r\n\r\n", errTrailer},
	{"trailer no colon", "0\r\nXy\r\n\r\n", errTrailer},
	{"trailer obs-fold", "0\r\nX: y\r\n z\r\n\r\n", errTrailer},
	{"trailer NUL", "0\r\nX: a\x00b\r\n\r\n", errTrailer},
	{"trailer bare CR", "0\r\nX: a\rb\r\n\r\n", errChunkLineEnd},
	{"request smuggled in trailer", "0\r\nGET / HTTP/1.1\r\n\r\n", errTrailer},
}

func TestChunkedErrors(t *testing.T) {
	for _, tt := range badChunked {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			for _, step := range []int{len(in), 1, 2, 5} {
				_, _, done, err := decodeAll(in, step)
				if err != tt.want || done {
					t.Fatalf("step %d: done %v, err %v; want %v", step, done, err, tt.want)
				}
			}
		})
	}
}

func TestChunkedSticky(t *testing.T) {
	var d ChunkedDecoder
	src := []byte("5\r\nhelloXX")
	n, data, _, err := d.Decode(src)
	if err != nil || string(data) != "hello" || n != 8 {
		t.Fatalf("Decode = %d, %q, %v", n, data, err)
	}
	if _, _, _, err := d.Decode(src[n:]); err != errChunkDataEnd {
		t.Fatalf("err = %v; want %v", err, errChunkDataEnd)
	}
	if n, data, done, err := d.Decode([]byte("\r\n0\r\n\r\n")); err != errChunkDataEnd || n != 0 || data != nil || done {
		t.Fatalf("after error: %d, %q, %v, %v", n, data, done, err)
	}
	d.Reset()
	if n, _, done, err := d.Decode([]byte("0\r\n\r\n")); err != nil || !done || n != 5 {
		t.Fatalf("after Reset: %d, %v, %v", n, done, err)
	}
	// Done is sticky too, and consumes nothing more.
	if n, data, done, err := d.Decode([]byte("GET")); err != nil || !done || n != 0 || data != nil {
		t.Fatalf("after done: %d, %q, %v, %v", n, data, done, err)
	}
}

func TestChunkedDataWithFramingError(t *testing.T) {
	// Data is reported before the error that follows it, never together.
	var d ChunkedDecoder
	n, data, done, err := d.Decode([]byte("5\r\nhello\nX"))
	if err != nil || done || string(data) != "hello" || n != 8 {
		t.Fatalf("Decode = %d, %q, %v, %v", n, data, done, err)
	}
	if _, data, _, err := d.Decode([]byte("\nX")); err != errChunkDataEnd || data != nil {
		t.Fatalf("Decode = %q, %v", data, err)
	}
}

func TestChunkedIncremental(t *testing.T) {
	// One call returns at most one run of data and stops before the next.
	var d ChunkedDecoder
	src := []byte("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nNEXT")
	var got []string
	total := 0
	for {
		n, data, done, err := d.Decode(src)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(data))
		src = src[n:]
		total += n
		if done {
			break
		}
	}
	if strings.Join(got, "|") != "abc|de" || string(src) != "NEXT" || total != 20 {
		t.Errorf("runs %q, rest %q, consumed %d", got, src, total)
	}
	// A partial framing element consumes nothing.
	for _, in := range []string{"", "5", "5\r", "5;a=\"b", "0\r"} {
		var d ChunkedDecoder
		if n, data, done, err := d.Decode([]byte(in)); n != 0 || data != nil || done || err != nil {
			t.Errorf("Decode(%q) = %d, %q, %v, %v; want nothing", in, n, data, done, err)
		}
	}
	// Complete elements are consumed, the partial one after them is not.
	for _, tt := range []struct {
		in   string
		n    int
		data string
	}{
		{"0\r\nX: y", 3, ""},
		{"0\r\nX: y\r", 3, ""},
		{"0\r\n\r", 3, ""},
		{"0\r\nX: y\r\n\r", 9, ""},
		{"1\r\nx\r", 4, "x"},
		{"1\r\nx\r\n2", 6, "x"},
	} {
		var d ChunkedDecoder
		if n, data, done, err := d.Decode([]byte(tt.in)); n != tt.n || string(data) != tt.data || done || err != nil {
			t.Errorf("Decode(%q) = %d, %q, %v, %v; want %d, %q", tt.in, n, data, done, err, tt.n, tt.data)
		}
	}
	// Data is returned as it arrives.
	d.Reset()
	n, data, _, err := d.Decode([]byte("a\r\nabc"))
	if err != nil || n != 6 || string(data) != "abc" {
		t.Fatalf("Decode = %d, %q, %v", n, data, err)
	}
	n, data, _, err = d.Decode([]byte("defghij\r"))
	if err != nil || n != 7 || string(data) != "defghij" {
		t.Fatalf("Decode = %d, %q, %v", n, data, err)
	}
}

func TestChunkedLimits(t *testing.T) {
	ext := func(n int) string { // a chunk-size line of exactly n bytes without CRLF
		return "1;a=" + strings.Repeat("b", n-4)
	}
	trailer := func(n int) string { // a trailer section of exactly n bytes
		s := ""
		for n-len(s) > 2+100 {
			s += "X: " + strings.Repeat("v", 95) + "\r\n"
		}
		return s + "Y: " + strings.Repeat("v", n-len(s)-7) + "\r\n\r\n"
	}
	for _, tt := range []struct {
		name string
		in   string
		want error
	}{
		{"chunk line at limit", ext(4096) + "\r\nx\r\n0\r\n\r\n", nil},
		{"chunk line past limit", ext(4097) + "\r\nx\r\n0\r\n\r\n", errChunkLineLen},
		{"last chunk line at limit", "0;a=" + strings.Repeat("b", 4092) + "\r\n\r\n", nil},
		{"last chunk line past limit", "0;a=" + strings.Repeat("b", 4093) + "\r\n\r\n", errChunkLineLen},
		{"trailer at limit", "0\r\n" + trailer(16384), nil},
		{"trailer past limit", "0\r\n" + trailer(16385), errTrailerLen},
		{"one trailer line at limit", "0\r\nX: " + strings.Repeat("v", 16384-7) + "\r\n\r\n", nil},
		{"one trailer line past limit", "0\r\nX: " + strings.Repeat("v", 16384-6) + "\r\n\r\n", errTrailerLen},
	} {
		in := []byte(tt.in)
		for _, step := range []int{len(in), 1, 1000} {
			_, n, done, err := decodeAll(in, step)
			if err != tt.want || (err == nil) != done || err == nil && n != len(in) {
				t.Errorf("%s, step %d: consumed %d of %d, done %v, err %v; want %v", tt.name, step, n, len(in), done, err, tt.want)
			}
		}
	}
	// Too long is decided without waiting for the line end.
	var d ChunkedDecoder
	if _, _, _, err := d.Decode([]byte(ext(4097))); err != errChunkLineLen {
		t.Errorf("unterminated 4097-byte chunk line: %v", err)
	}
	d.Reset()
	if n, _, _, err := d.Decode([]byte(ext(4096))); n != 0 || err != nil {
		t.Errorf("unterminated 4096-byte chunk line: %d, %v; want need more", n, err)
	}
}

func benchBody() []byte {
	var b []byte
	data := bytes.Repeat([]byte("x"), 1024)
	for range 16 {
		b = AppendChunk(b, data)
	}
	return AppendLastChunk(b)
}

func TestChunkedAllocs(t *testing.T) {
	src := benchBody()
	var d ChunkedDecoder
	allocs := testing.AllocsPerRun(1000, func() {
		d.Reset()
		for b := src; ; {
			n, _, done, err := d.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if done {
				break
			}
			b = b[n:]
		}
	})
	if allocs != 0 {
		t.Errorf("Decode allocates %v times per body; want 0", allocs)
	}
}

func BenchmarkChunkedDecode(b *testing.B) {
	src := benchBody()
	var d ChunkedDecoder
	b.ReportAllocs()
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		d.Reset()
		for p := src; ; {
			n, _, done, err := d.Decode(p)
			if err != nil {
				b.Fatal(err)
			}
			if done {
				break
			}
			p = p[n:]
		}
	}
}

func BenchmarkChunkedDecodeSmall(b *testing.B) {
	// Many tiny chunks: measures the framing cost.
	var src []byte
	for range 64 {
		src = AppendChunk(src, []byte("hello"))
	}
	src = AppendLastChunk(src)
	var d ChunkedDecoder
	b.ReportAllocs()
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		d.Reset()
		for p := src; ; {
			n, _, done, err := d.Decode(p)
			if err != nil {
				b.Fatal(err)
			}
			if done {
				break
			}
			p = p[n:]
		}
	}
}

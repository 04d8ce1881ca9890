package http1

import (
	"strings"
	"testing"
)

func TestAppendStatusLine(t *testing.T) {
	for _, tt := range []struct {
		status int
		want   string
	}{
		{200, "HTTP/1.1 200 OK\r\n"},
		{100, "HTTP/1.1 100 Continue\r\n"},
		{101, "HTTP/1.1 101 Switching Protocols\r\n"},
		{204, "HTTP/1.1 204 No Content\r\n"},
		{404, "HTTP/1.1 404 Not Found\r\n"},
		{413, "HTTP/1.1 413 Content Too Large\r\n"},
		{417, "HTTP/1.1 417 Expectation Failed\r\n"},
		{431, "HTTP/1.1 431 Request Header Fields Too Large\r\n"},
		{500, "HTTP/1.1 500 Internal Server Error\r\n"},
		{505, "HTTP/1.1 505 HTTP Version Not Supported\r\n"},
		{599, "HTTP/1.1 599 \r\n"},
		{299, "HTTP/1.1 299 \r\n"},
		{999, "HTTP/1.1 999 \r\n"},
		{1000, "HTTP/1.1 1000 \r\n"},
		{42, "HTTP/1.1 42 \r\n"},
	} {
		if got := string(AppendStatusLine([]byte("x"), tt.status)); got != "x"+tt.want {
			t.Errorf("AppendStatusLine(%d) = %q; want %q", tt.status, got, "x"+tt.want)
		}
	}
	// Every precomputed line has the right shape.
	for status := 100; status < 600; status++ {
		line := string(AppendStatusLine(nil, status))
		if !strings.HasPrefix(line, "HTTP/1.1 ") || line[9:12] != string(rune('0'+status/100))+string(rune('0'+status/10%10))+string(rune('0'+status%10)) ||
			line[12] != ' ' || !strings.HasSuffix(line, "\r\n") || strings.ContainsAny(line[:len(line)-2], "\r\n") {
			t.Errorf("status %d: bad line %q", status, line)
		}
	}
}

func TestAppendHeader(t *testing.T) {
	got := AppendHeader([]byte("HTTP/1.1 200 OK\r\n"), []byte("content-type"), []byte("text/plain"))
	got = AppendHeader(got, []byte("x-empty"), nil)
	if want := "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-empty: \r\n"; string(got) != want {
		t.Errorf("got %q; want %q", got, want)
	}
}

func TestValidHeaderName(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{"content-type", true},
		{"X-Custom_1", true},
		{"!#$%&'*+-.^_`|~", true},
		{"", false},
		{"a b", false},
		{"a:b", false},
		{"a\r\nb", false},
		{"a\x00", false},
		{"\xc3\xa9", false},
		{"a(", false},
		{"a\"", false},
		{"a/b", false},
	} {
		if got := ValidHeaderName([]byte(tt.in)); got != tt.want {
			t.Errorf("ValidHeaderName(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
}

func TestValidHeaderValue(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{"", true},
		{"text/html; charset=utf-8", true},
		{"a\tb", true},
		{" padded ", true},
		{"caf\xc3\xa9\xff", true},
		{"a\rb", false},
		{"a\nb", false},
		{"a\r\nX-Injected: 1", false},
		{"a\x00b", false},
		{"a\x01b", false},
		{"a\x1fb", false},
		{"a\x7fb", false},
		{"\v", false},
	} {
		if got := ValidHeaderValue([]byte(tt.in)); got != tt.want {
			t.Errorf("ValidHeaderValue(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
}

func TestAppendChunk(t *testing.T) {
	for _, tt := range []struct {
		data string
		want string
	}{
		{"", ""},
		{"a", "1\r\na\r\n"},
		{"hello", "5\r\nhello\r\n"},
		{strings.Repeat("x", 26), "1a\r\n" + strings.Repeat("x", 26) + "\r\n"},
		{strings.Repeat("x", 4096), "1000\r\n" + strings.Repeat("x", 4096) + "\r\n"},
	} {
		if got := string(AppendChunk([]byte("x"), []byte(tt.data))); got != "x"+tt.want {
			t.Errorf("AppendChunk(%d bytes) = %.40q; want %.40q", len(tt.data), got, "x"+tt.want)
		}
	}
	if got := string(AppendLastChunk([]byte("x"))); got != "x0\r\n\r\n" {
		t.Errorf("AppendLastChunk = %q", got)
	}
}

func TestChunkRoundTrip(t *testing.T) {
	var enc []byte
	var want []byte
	for i := range 300 {
		data := []byte(strings.Repeat(string(rune('a'+i%26)), i))
		enc = AppendChunk(enc, data)
		want = append(want, data...)
	}
	enc = AppendLastChunk(enc)
	for _, step := range []int{len(enc), 1, 13} {
		body, n, done, err := decodeAll(enc, step)
		if err != nil || !done || n != len(enc) || string(body) != string(want) {
			t.Fatalf("step %d: %d bytes, consumed %d, %v, %v", step, len(body), n, done, err)
		}
	}
}

func TestBodyAllowed(t *testing.T) {
	for _, tt := range []struct {
		status int
		method string
		want   bool
	}{
		{200, "GET", true},
		{200, "POST", true},
		{404, "GET", true},
		{205, "GET", true},
		{200, "HEAD", false},
		{404, "HEAD", false},
		{200, "head", true}, // methods are case-sensitive
		{100, "GET", false},
		{101, "GET", false},
		{103, "GET", false},
		{199, "GET", false},
		{204, "GET", false},
		{304, "GET", false},
		{304, "POST", false},
	} {
		if got := BodyAllowed(tt.status, []byte(tt.method)); got != tt.want {
			t.Errorf("BodyAllowed(%d, %s) = %v; want %v", tt.status, tt.method, got, tt.want)
		}
	}
}

func TestResponseAllocs(t *testing.T) {
	dst := make([]byte, 0, 256)
	name, value, data := []byte("content-type"), []byte("text/plain"), []byte("hello")
	allocs := testing.AllocsPerRun(1000, func() {
		dst = AppendStatusLine(dst[:0], 200)
		dst = AppendStatusLine(dst, 599)
		dst = AppendHeader(dst, name, value)
		dst = AppendChunk(dst, data)
		dst = AppendLastChunk(dst)
	})
	if allocs != 0 {
		t.Errorf("response serialization allocates %v times; want 0", allocs)
	}
}

func BenchmarkResponseHead(b *testing.B) {
	dst := make([]byte, 0, 256)
	name1, value1 := []byte("content-type"), []byte("application/json")
	name2, value2 := []byte("content-length"), []byte("1234")
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendStatusLine(dst[:0], 200)
		dst = AppendHeader(dst, name1, value1)
		dst = AppendHeader(dst, name2, value2)
		dst = append(dst, '\r', '\n')
	}
}

func BenchmarkAppendChunk(b *testing.B) {
	dst := make([]byte, 0, 2048)
	data := make([]byte, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		dst = AppendChunk(dst[:0], data)
	}
}

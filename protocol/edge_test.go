package protocol

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// payloadOf strips the length prefix of one frame built by an appender.
func payloadOf(t testing.TB, frame []byte) []byte {
	t.Helper()
	if n := binary.BigEndian.Uint32(frame); int(n) != len(frame)-PrefixLen {
		t.Fatalf("prefix %d for %d payload bytes", n, len(frame)-PrefixLen)
	}
	return frame[PrefixLen:]
}

// raw builds a payload from msgpack fragments (hex strings or byte slices).
func raw(t testing.TB, parts ...any) []byte {
	t.Helper()
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			h, err := hex.DecodeString(strings.ReplaceAll(p, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, h...)
		case []byte:
			b = append(b, p...)
		default:
			t.Fatalf("raw: %T", p)
		}
	}
	return b
}

func mustFail(t *testing.T, name string, payload []byte, target error) {
	t.Helper()
	var f Frame
	err := f.Decode(payload)
	if err == nil {
		t.Errorf("%s: Decode(%x) succeeded", name, payload)
		return
	}
	if target != nil && !errors.Is(err, target) {
		t.Errorf("%s: error %v is not %v", name, err, target)
	}
}

func mustDecode(t *testing.T, name string, payload []byte) *Frame {
	t.Helper()
	f := new(Frame)
	if err := f.Decode(payload); err != nil {
		t.Fatalf("%s: Decode(%x): %v", name, payload, err)
	}
	return f
}

// nextOffset steps through every offset of small inputs, and of large ones the first and last 512
// and every 61st in between (the middle of a long bin is all alike).
func nextOffset(i, n int) int {
	if n <= 4096 || i < 512 || i >= n-512 {
		return i + 1
	}
	return min(i+61, n-512)
}

func TestTruncatedEveryOffset(t *testing.T) {
	for _, vec := range loadVectors(t) {
		frame, _ := hex.DecodeString(vec.Hex)
		payload := frame[PrefixLen:]
		for i := 0; i < len(payload); i = nextOffset(i, len(payload)) {
			// Copy so that the decoder cannot peek past the end of the slice into the rest.
			mustFail(t, vec.Name, append([]byte(nil), payload[:i]...), ErrMalformed)
		}
		// And the frame stream truncated at every offset.
		for i := 0; i < len(frame); i = nextOffset(i, len(frame)) {
			rd := NewReader(bytes.NewReader(frame[:i]), DefaultMaxFrame)
			_, err := rd.Next()
			want := io.ErrUnexpectedEOF
			if i == 0 {
				want = io.EOF
			}
			if err != want {
				t.Fatalf("%s: stream cut at %d: %v, want %v", vec.Name, i, err, want)
			}
		}
	}
}

func TestStrictTypes(t *testing.T) {
	cases := []struct {
		name    string
		payload []byte
	}{
		{"str body", raw(t, "94 03 07 a3616263 c3")},
		{"nil body", raw(t, "94 03 07 c0 c3")},
		{"int more_body", raw(t, "94 03 07 c400 01")},
		{"bin message", raw(t, "94 15 01 00 c40161")},
		{"str header name", raw(t, "97 12 01 cc c8 91 92 a161 c40162 00 c400 c3")},
		{"header arity 3", raw(t, "97 12 01 cc c8 91 93 c40161 c40162 c0 00 c400 c3")},
		{"headers not array", raw(t, "97 12 01 cc c8 c0 00 c400 c3")},
		{"float status", raw(t, "97 12 01 ca43480000 90 00 c400 c3")},
		{"str status", raw(t, "97 12 01 a3323030 90 00 c400 c3")},
		{"negative flags", raw(t, "97 12 01 cc c8 90 ff c400 c3")},
		{"negative int8 increment", raw(t, "93 05 01 d0ff")},
		{"negative int64 token", raw(t, "93 06 00 d38000000000000000")},
		{"bool token", raw(t, "93 06 00 c3")},
		{"sid > u32", raw(t, "92 04 cf0000000100000000")},
		{"negative sid", raw(t, "92 04 ff")},
		{"type > u8", raw(t, "92 cd0104 01")},
		{"str type", raw(t, "92 a104 01")},
		{"not an array", raw(t, "82 a161 01 a162 02")},
		{"array of 1", raw(t, "91 04")},
		{"empty array", raw(t, "90")},
		{"empty payload", nil},
		{"invalid code", raw(t, "c1")},
	}
	for _, c := range cases {
		mustFail(t, c.name, c.payload, ErrMalformed)
	}
}

func TestHTTPRequestStrict(t *testing.T) {
	ok := "9f 02 01 a3312e31 a3474554 a468747470 a12f c4012f c400 a0 90 c0 c0 00 c400 c2"
	mustDecode(t, "minimal", raw(t, ok))
	bad := map[string]string{
		"bin method":        "9f 02 01 a3312e31 c403474554 a468747470 a12f c4012f c400 a0 90 c0 c0 00 c400 c2",
		"bin version":       "9f 02 01 c4 03 312e31 a3474554 a468747470 a12f c4012f c400 a0 90 c0 c0 00 c400 c2",
		"str raw_path":      "9f 02 01 a3312e31 a3474554 a468747470 a12f a12f c400 a0 90 c0 c0 00 c400 c2",
		"str query":         "9f 02 01 a3312e31 a3474554 a468747470 a12f c4012f a0 a0 90 c0 c0 00 c400 c2",
		"bin root_path":     "9f 02 01 a3312e31 a3474554 a468747470 a12f c4012f c400 c400 90 c0 c0 00 c400 c2",
		"client no port":    "9f 02 01 a3312e31 a3474554 a468747470 a12f c4012f c400 a0 90 92a161c0 c0 00 c400 c2",
		"client arity 1":    "9f 02 01 a3312e31 a3474554 a468747470 a12f c4012f c400 a0 90 91a161 c0 00 c400 c2",
		"client bin host":   "9f 02 01 a3312e31 a3474554 a468747470 a12f c4012f c400 a0 90 92c4016101 c0 00 c400 c2",
		"client port 65536": "9f 02 01 a3312e31 a3474554 a468747470 a12f c4012f c400 a0 90 92a161ce00010000 c0 00 c400 c2",
		"server str port":   "9f 02 01 a3312e31 a3474554 a468747470 a12f c4012f c400 a0 90 c0 92a161a131 00 c400 c2",
		"invalid utf8 path": "9f 02 01 a3312e31 a3474554 a468747470 a2c328 c4012f c400 a0 90 c0 c0 00 c400 c2",
		"arity 14":          "9e 02 01 a3312e31 a3474554 a468747470 a12f c4012f c400 a0 90 c0 c0 00 c400",
		"sid 0":             "9f 02 00 a3312e31 a3474554 a468747470 a12f c4012f c400 a0 90 c0 c0 00 c400 c2",
	}
	for name, h := range bad {
		mustFail(t, name, raw(t, h), ErrMalformed)
	}
	var f Frame
	err := f.Decode(raw(t, bad["invalid utf8 path"]))
	if !errors.Is(err, ErrInvalidUTF8) || !strings.Contains(err.Error(), "path") {
		t.Errorf("invalid utf8 error: %v", err)
	}
	// Server [path, nil] and a non-standard version/scheme are kept.
	f2 := mustDecode(t, "odd", raw(t, "9f 02 01 a3332e30 a3474554 a27773 a12f c4012f c400 a0 90 c0 92a32f7473c0 00 c400 c2"))
	if f2.Request.HTTPVersion != "3.0" || f2.Request.Scheme != "ws" || f2.Request.Server == nil ||
		f2.Request.Server.HasPort || f2.Request.Server.Host != "/ts" || f2.Request.Client != nil {
		t.Errorf("odd request: %+v", f2.Request)
	}
}

func TestArityAndTrailing(t *testing.T) {
	for name, h := range map[string]string{
		"body 3 items":        "93 03 07 c400",
		"body 5 items":        "95 03 07 c400 c3 c0",
		"disconnect 3 items":  "93 04 09 00",
		"credit 2 items":      "92 05 09",
		"end 3 items":         "93 15 01 00",
		"start 6 items":       "96 12 01 cc c8 90 00 c400",
		"hello 2 items":       "92 01 00",
		"trailing nil":        "92 04 09 c0",
		"trailing after ping": "93 06 00 05 00",
		"two arrays":          "92 04 09 92 04 09",
	} {
		mustFail(t, name, raw(t, h), ErrMalformed)
	}
	mustFail(t, "ring body 4 items", raw(t, "94 0c 01 00 01"), ErrMalformed)
	mustFail(t, "ring body 6 items", raw(t, "96 1d 01 00 01 c3 c0"), ErrMalformed)
	mustFail(t, "unknown type 0x0d", raw(t, "92 0d 01"), ErrUnknownType)
	mustFail(t, "unknown type 0x00", raw(t, "92 00 00"), ErrUnknownType)
	mustFail(t, "unknown type 0x1e", raw(t, "92 1e 01"), ErrUnknownType)
}

func TestStreamIDRules(t *testing.T) {
	for name, h := range map[string]string{
		"body sid 0":       "94 03 00 c400 c3",
		"disconnect sid 0": "92 04 00",
		"credit sid 0":     "93 14 00 01",
		"start sid 0":      "97 12 00 cc c8 90 00 c400 c3",
		"resp body sid 0":  "94 13 00 c400 c3",
		"end sid 0":        "94 15 00 00 a0",
		"ping sid 1":       "93 06 01 05",
		"pong sid 1":       "93 16 01 05",
		"hello sid 1":      "93 01 01 81 a8 70726f746f636f6c 01",
	} {
		mustFail(t, name, raw(t, h), ErrMalformed)
	}
}

func TestLooseIntegers(t *testing.T) {
	// Any int encoding whose value fits and is >= 0 is accepted.
	f := mustDecode(t, "wide", raw(t, "93 cf0000000000000014 d2000000ff d100c8"))
	if f.Type != TypeCreditW2G || f.Stream != 255 || f.Increment != 200 {
		t.Errorf("got %+v", f)
	}
	f = mustDecode(t, "int8 status", raw(t, "97 d012 cd0001 d1 00c8 90 d000 c400 c3"))
	if f.Type != TypeResponseStart || f.Stream != 1 || f.Status != 200 {
		t.Errorf("got %+v", f)
	}
	f = mustDecode(t, "max sid", raw(t, "92 04 d3 00000000ffffffff"))
	if f.Stream != 0xffffffff {
		t.Errorf("sid %d", f.Stream)
	}
	// Non-canonical str/bin/array lengths are accepted too.
	f = mustDecode(t, "str32 message", raw(t, "dc0004 15 01 00 db00000002 6869"))
	if string(f.Message) != "hi" {
		t.Errorf("message %q", f.Message)
	}
}

func TestStatusRange(t *testing.T) {
	for _, st := range []int{MinStatus, 404, MaxStatus} {
		p := payloadOf(t, AppendResponseStart(nil, 1, st, nil, 0, nil, true))
		if f := mustDecode(t, "status", p); f.Status != st {
			t.Errorf("status %d", f.Status)
		}
	}
	for _, st := range []int{0, 100, 101, 199, 1000, 65536} {
		mustFail(t, "status", payloadOf(t, AppendResponseStart(nil, 1, st, nil, 0, nil, true)), ErrMalformed)
	}
}

func TestUTF8(t *testing.T) {
	mustFail(t, "end invalid utf8", raw(t, "94 15 01 01 a2 ff fe"), ErrInvalidUTF8)
	mustFail(t, "worker hello invalid utf8",
		raw(t, "93 11 00 82 a8 70726f746f636f6c 01 a6 707974686f6e a1 ff"), ErrInvalidUTF8)

	// AppendEnd repairs invalid UTF-8 instead of producing an undecodable frame.
	p := payloadOf(t, AppendEnd(nil, 1, OutcomeAppError, "bad \xff\xfe end \xe2\x98"))
	f := mustDecode(t, "end", p)
	if got := string(f.Message); got != "bad \ufffd end \ufffd" {
		t.Errorf("message %q", got)
	}

	// AppendHTTPRequest refuses invalid UTF-8 and leaves dst unchanged.
	good := HTTPRequest{HTTPVersion: "1.1", Method: []byte("GET"), Scheme: "http", Path: []byte("/")}
	for name, mut := range map[string]func(r *HTTPRequest){
		"method":    func(r *HTTPRequest) { r.Method = []byte("G\xffT") },
		"path":      func(r *HTTPRequest) { r.Path = []byte("/\xc3") },
		"version":   func(r *HTTPRequest) { r.HTTPVersion = "\xff" },
		"scheme":    func(r *HTTPRequest) { r.Scheme = "\xff" },
		"root_path": func(r *HTTPRequest) { r.RootPath = "/\xff" },
		"client":    func(r *HTTPRequest) { r.Client = &Addr{Host: "\xff", Port: 1, HasPort: true} },
		"server":    func(r *HTTPRequest) { r.Server = &Addr{Host: "\xff"} },
		"port":      func(r *HTTPRequest) { r.Client = &Addr{Host: "h", Port: 70000, HasPort: true} },
	} {
		r := good
		mut(&r)
		dst := []byte("keep")
		out, err := AppendHTTPRequest(dst, 1, &r)
		if err == nil || string(out) != "keep" {
			t.Errorf("%s: err %v, out %q", name, err, out)
		}
	}
	if _, err := AppendHTTPRequest(nil, 1, &good); err != nil {
		t.Error(err)
	}
}

func TestHello(t *testing.T) {
	// Keys in any order, unknown keys (with nested values) skipped.
	p := raw(t, "93 01 00 87",
		"a6 77696e646f77 cd1000",
		"a5 6578747261 93 81 a161 93 01 c40100 ca00000000 d7 01 0000000000000000 c0",
		"a9 776f726b65725f6964 07",
		"a3 706964 d200000010",
		"a9 6d61785f6672616d65 ce00010000",
		"a8 70726f746f636f6c 01",
		"a4 66656174 c0")
	f := mustDecode(t, "gateway hello", p)
	want := GatewayHello{Protocol: 1, PID: 16, MaxFrame: 65536, Window: 4096, WorkerID: 7}
	if f.GatewayHello == nil || *f.GatewayHello != want {
		t.Fatalf("got %+v", f.GatewayHello)
	}

	w := &WorkerHello{Protocol: 1, PID: 9, Python: "3.13", Features: []string{"a"}}
	f = mustDecode(t, "worker hello", payloadOf(t, AppendWorkerHello(nil, w)))
	if f.WorkerHello == nil || f.WorkerHello.Python != "3.13" || len(f.WorkerHello.Features) != 1 {
		t.Fatalf("got %+v", f.WorkerHello)
	}

	for name, h := range map[string]string{
		"no protocol":       "93 01 00 81 a3706964 01",
		"bin key":           "93 01 00 81 c408 70726f746f636f6c 01",
		"int key":           "93 01 00 81 01 01",
		"negative pid":      "93 01 00 82 a8 70726f746f636f6c 01 a3706964 ff",
		"str pid":           "93 01 00 82 a8 70726f746f636f6c 01 a3706964 a131",
		"not a map":         "93 01 00 91 01",
		"map too long":      "93 01 00 df ffffffff a8 70726f746f636f6c 01",
		"features not list": "93 11 00 82 a8 70726f746f636f6c 01 a8 6665617475726573 a0",
		"features of bin":   "93 11 00 82 a8 70726f746f636f6c 01 a8 6665617475726573 91 c400",
		"features huge":     "93 11 00 82 a8 70726f746f636f6c 01 a8 6665617475726573 ddffffffff a0",
		"python bin":        "93 11 00 82 a8 70726f746f636f6c 01 a6 707974686f6e c400",
		"error str32 huge":  "93 11 00 82 a8 70726f746f636f6c 01 a5 6572726f72 dbffffffff 61",
		"unknown truncated": "93 11 00 82 a8 70726f746f636f6c 01 a1 78 dd ffffffff",
		"trailing":          "93 11 00 81 a8 70726f746f636f6c 01 c0",
	} {
		p := raw(t, h)
		mustFail(t, name, p, ErrMalformed)
		var f Frame
		if n := allocBytes(func() { _ = f.Decode(p) }); n > 8192 {
			t.Errorf("%s: %d bytes allocated", name, n)
		}
	}

	// A deeply nested unknown value costs no recursion.
	deep := raw(t, "93 11 00 82 a8 70726f746f636f6c 01 a1 78")
	deep = append(deep, bytes.Repeat([]byte{0x91}, 1<<20)...)
	deep = append(deep, 0xc0)
	mustDecode(t, "deep", deep)
}

// failAfter serves data, then fails the test if read again.
type failAfter struct {
	t    *testing.T
	data []byte
}

func (r *failAfter) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		r.t.Fatal("read past the length prefix")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReaderTooLarge(t *testing.T) {
	const max = 1000
	rd := NewReader(&failAfter{t: t, data: []byte{0, 0, 0x03, 0xe9}}, max)
	if _, err := rd.Next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err %v", err)
	}
	if _, err := rd.Next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("not sticky: %v", err)
	}
	rd = NewReader(&failAfter{t: t, data: []byte{0xff, 0xff, 0xff, 0xff}}, DefaultMaxFrame)
	if _, err := rd.Next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err %v", err)
	}
	if cap(rd.buf) > initialBuffer {
		t.Fatalf("buffer grew to %d", cap(rd.buf))
	}
	rd = NewReader(&failAfter{t: t, data: []byte{0, 0, 0, 0}}, max)
	if _, err := rd.Next(); !errors.Is(err, ErrEmptyFrame) {
		t.Fatalf("err %v", err)
	}
}

func frameOfSize(n int) []byte {
	b := make([]byte, PrefixLen+n)
	binary.BigEndian.PutUint32(b, uint32(n))
	for i := range b[PrefixLen:] {
		b[PrefixLen+i] = byte(i)
	}
	return b
}

func TestReaderMaxSize(t *testing.T) {
	const max = 200000 // above the initial buffer, so the buffer must grow
	stream := append(frameOfSize(max), frameOfSize(5)...)
	rd := NewReader(bytes.NewReader(stream), max)
	p, err := rd.Next()
	if err != nil || len(p) != max || !bytes.Equal(p, stream[PrefixLen:PrefixLen+max]) {
		t.Fatalf("max frame: %d bytes, %v", len(p), err)
	}
	if cap(rd.buf) > PrefixLen+max {
		t.Fatalf("buffer %d > %d", cap(rd.buf), PrefixLen+max)
	}
	if p, err = rd.Next(); err != nil || len(p) != 5 {
		t.Fatalf("after max frame: %d, %v", len(p), err)
	}
	if _, err = rd.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}

	rd = NewReader(bytes.NewReader(frameOfSize(max+1)), max)
	if _, err := rd.Next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("max+1: %v", err)
	}

	// A small limit caps the initial buffer too.
	rd = NewReader(bytes.NewReader(frameOfSize(10)), 10)
	if cap(rd.buf) != PrefixLen+10 {
		t.Fatalf("buffer %d", cap(rd.buf))
	}
	if p, err := rd.Next(); err != nil || len(p) != 10 {
		t.Fatalf("%d, %v", len(p), err)
	}
}

func allVectorFrames(t *testing.T) ([]byte, [][]byte) {
	var stream []byte
	var payloads [][]byte
	for _, vec := range loadVectors(t) {
		b, _ := hex.DecodeString(vec.Hex)
		stream = append(stream, b...)
		payloads = append(payloads, b[PrefixLen:])
	}
	return stream, payloads
}

func readAll(t *testing.T, rd *Reader, want [][]byte) {
	t.Helper()
	for i, w := range want {
		p, err := rd.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(p, w) {
			t.Fatalf("frame %d differs", i)
		}
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Fatalf("end again: %v", err)
	}
}

func TestReaderOneByteReads(t *testing.T) {
	stream, payloads := allVectorFrames(t)
	readAll(t, NewReader(iotest.OneByteReader(bytes.NewReader(stream)), DefaultMaxFrame), payloads)
	readAll(t, NewReader(iotest.HalfReader(bytes.NewReader(stream)), DefaultMaxFrame), payloads)
	readAll(t, NewReader(iotest.DataErrReader(bytes.NewReader(stream)), DefaultMaxFrame), payloads)
}

type countingReader struct {
	r     io.Reader
	calls int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.calls++
	return c.r.Read(p)
}

func TestReaderBatching(t *testing.T) {
	var stream []byte
	var payloads [][]byte
	for i := 0; i < 500; i++ {
		stream = AppendResponseBody(stream, uint32(i+1), []byte("chunk of body"), true)
	}
	for rest := stream; len(rest) > 0; {
		n := int(binary.BigEndian.Uint32(rest))
		payloads = append(payloads, rest[PrefixLen:PrefixLen+n])
		rest = rest[PrefixLen+n:]
	}
	c := &countingReader{r: bytes.NewReader(stream)}
	rd := NewReader(c, DefaultMaxFrame)
	consumed := 0
	for i, w := range payloads {
		p, err := rd.Next()
		if err != nil || !bytes.Equal(p, w) {
			t.Fatalf("frame %d: %v", i, err)
		}
		consumed += PrefixLen + len(w)
		if want := len(stream) - consumed; rd.Buffered() != want {
			t.Fatalf("frame %d: Buffered %d, want %d", i, rd.Buffered(), want)
		}
	}
	if c.calls != 1 {
		t.Fatalf("%d reads for %d bytes", c.calls, len(stream))
	}
	if rd.Ready() {
		t.Fatal("Ready with nothing buffered")
	}
}

func TestReaderBuffered(t *testing.T) {
	f1 := AppendPing(nil, TypePong, 1)
	f2 := AppendPing(nil, TypePong, 2)
	pr, pw := io.Pipe()
	rd := NewReader(pr, DefaultMaxFrame)
	if rd.Buffered() != 0 || rd.Ready() {
		t.Fatal("fresh reader has data")
	}
	// One write carries a frame and a half: Buffered counts the half, Ready says it is not whole.
	go func() { _, _ = pw.Write(append(append([]byte(nil), f1...), f2[:3]...)) }()
	if p, err := rd.Next(); err != nil || !bytes.Equal(p, f1[PrefixLen:]) {
		t.Fatalf("first: %v", err)
	}
	if rd.Buffered() != 3 || rd.Ready() {
		t.Fatalf("Buffered %d, Ready %v", rd.Buffered(), rd.Ready())
	}
	go func() { _, _ = pw.Write(f2[3:]); _ = pw.Close() }()
	if p, err := rd.Next(); err != nil || !bytes.Equal(p, f2[PrefixLen:]) {
		t.Fatalf("second: %v", err)
	}
	if rd.Buffered() != 0 {
		t.Fatalf("Buffered %d", rd.Buffered())
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}

	// Two whole frames in memory: Ready after the first.
	rd = NewReader(bytes.NewReader(append(append([]byte(nil), f1...), f2...)), DefaultMaxFrame)
	if _, err := rd.Next(); err != nil {
		t.Fatal(err)
	}
	if rd.Buffered() != len(f2) || !rd.Ready() {
		t.Fatalf("Buffered %d, Ready %v", rd.Buffered(), rd.Ready())
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestReaderErrors(t *testing.T) {
	boom := errors.New("boom")
	rd := NewReader(io.MultiReader(bytes.NewReader([]byte{0, 0, 0, 5, 1}), errReader{boom}), DefaultMaxFrame)
	if _, err := rd.Next(); err != boom {
		t.Fatalf("err %v", err)
	}
	rd = NewReader(errReader{nil}, DefaultMaxFrame)
	if _, err := rd.Next(); err != io.ErrNoProgress {
		t.Fatalf("err %v", err)
	}
	rd = NewReader(bytes.NewReader([]byte{0, 0}), DefaultMaxFrame)
	if _, err := rd.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("err %v", err)
	}
}

// allocBytes returns the bytes fn allocates, averaged over 10 runs.
func allocBytes(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < 10; i++ {
		fn()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / 10
}

func TestHostileLengths(t *testing.T) {
	for name, h := range map[string]string{
		"array32 huge":   "dd ffffffff 04 01",
		"headers huge":   "97 12 01 cc c8 dd 7fffffff 92 c400 c400",
		"headers dc":     "97 12 01 cc c8 dc ffff 92 c400 c400",
		"bin32 huge":     "94 13 01 c6 ffffffff 00",
		"str32 huge":     "94 15 01 00 db ffffffff 61",
		"bin16 short":    "94 13 01 c5 0100 00",
		"header arr big": "97 12 01 cc c8 91 dd ffffffff c400 c400",
	} {
		var f Frame
		p := raw(t, h)
		mustFail(t, name, p, ErrMalformed)
		if n := allocBytes(func() { _ = f.Decode(p) }); n > 4096 { // the error value only
			t.Errorf("%s: %d bytes allocated", name, n)
		}
	}
}

func TestDecodeResetsOtherFields(t *testing.T) {
	var f Frame
	if err := f.Decode(payloadOf(t, AppendResponseStart(nil, 1, 200, []Header{{[]byte("a"), []byte("b")}}, 1, []byte("x"), false))); err != nil {
		t.Fatal(err)
	}
	if err := f.Decode(payloadOf(t, AppendPing(nil, TypePong, 3))); err != nil {
		t.Fatal(err)
	}
	if f.Status != 0 || f.Headers != nil || f.Body != nil || f.Flags != 0 || f.Token != 3 {
		t.Fatalf("stale fields: %+v", f)
	}
}

// wsConnectOK is a minimal valid WS_CONNECT payload; the cases below edit it.
const wsConnectOK = "9d 07 01 a3312e31 a27773 a12f c4012f c400 a0 90 c0 c0 90 00"

func TestWSStrict(t *testing.T) {
	f := mustDecode(t, "minimal ws_connect", raw(t, wsConnectOK))
	if f.WS.Scheme != "ws" || string(f.WS.Path) != "/" || len(f.WS.Subprotocols) != 0 || f.WS.Client != nil {
		t.Errorf("got %+v", f.WS)
	}
	bad := map[string]string{
		// WS_CONNECT
		"connect arity 12":         "9c 07 01 a3312e31 a27773 a12f c4012f c400 a0 90 c0 c0 90",
		"connect arity 14":         "9e 07 01 a3312e31 a27773 a12f c4012f c400 a0 90 c0 c0 90 00 00",
		"connect sid 0":            "9d 07 00 a3312e31 a27773 a12f c4012f c400 a0 90 c0 c0 90 00",
		"connect bin path":         "9d 07 01 a3312e31 a27773 c4012f c4012f c400 a0 90 c0 c0 90 00",
		"connect str raw_path":     "9d 07 01 a3312e31 a27773 a12f a12f c400 a0 90 c0 c0 90 00",
		"connect bin scheme":       "9d 07 01 a3312e31 c4027773 a12f c4012f c400 a0 90 c0 c0 90 00",
		"connect invalid utf8":     "9d 07 01 a3312e31 a27773 a2c328 c4012f c400 a0 90 c0 c0 90 00",
		"connect subprotocols nil": "9d 07 01 a3312e31 a27773 a12f c4012f c400 a0 90 c0 c0 c0 00",
		"connect subprotocol bin":  "9d 07 01 a3312e31 a27773 a12f c4012f c400 a0 90 c0 c0 91 c40161 00",
		"connect subprotocol utf8": "9d 07 01 a3312e31 a27773 a12f c4012f c400 a0 90 c0 c0 91 a1ff 00",
		"connect subprotocols big": "9d 07 01 a3312e31 a27773 a12f c4012f c400 a0 90 c0 c0 ddffffffff a0",
		"connect client port":      "9d 07 01 a3312e31 a27773 a12f c4012f c400 a0 90 92a161ce00010000 c0 90 00",
		"connect negative flags":   "9d 07 01 a3312e31 a27773 a12f c4012f c400 a0 90 c0 c0 90 ff",
		// WS_RECEIVE / WS_SEND
		"receive nil":         "93 08 01 c0",
		"receive int":         "93 08 01 01",
		"receive array":       "93 08 01 90",
		"receive invalid utf": "93 08 01 a2 c328",
		"send invalid utf":    "93 18 01 a1 ff",
		"send str16 short":    "93 18 01 da 0005 6162",
		"receive sid 0":       "93 08 00 a0",
		"send arity 4":        "94 18 01 a0 c3",
		"receive arity 2":     "92 08 01",
		// WS_DISCONNECT / WS_CLOSE
		"close code 65536":     "94 19 01 ce00010000 a0",
		"close negative code":  "94 19 01 d1ff18 a0",
		"close str code":       "94 19 01 a431303030 a0",
		"close bin reason":     "94 19 01 cd03e8 c400",
		"close nil reason":     "94 19 01 cd03e8 c0",
		"close utf8 reason":    "94 19 01 cd03e8 a2 fffe",
		"disconnect arity 3":   "93 09 01 cd03e8",
		"disconnect sid 0":     "94 09 00 cd03e8 a0",
		"disconnect nil code":  "94 09 01 c0 a0",
		"disconnect code 1e16": "94 09 01 cf0000000100000000 a0",
		// WS_ACCEPT
		"accept bin subprotocol": "94 17 01 c40161 90",
		"accept utf8 subproto":   "94 17 01 a1ff 90",
		"accept headers nil":     "94 17 01 c0 c0",
		"accept str header":      "94 17 01 c0 91 92 a161 c40162",
		"accept arity 3":         "93 17 01 c0",
		"accept sid 0":           "94 17 00 c0 90",
		// SHUTDOWN
		"shutdown sid 1":     "93 0a 01 00",
		"shutdown negative":  "93 0a 00 ff",
		"shutdown str grace": "93 0a 00 a131",
		"shutdown arity 2":   "92 0a 00",
	}
	for name, h := range bad {
		mustFail(t, name, raw(t, h), ErrMalformed)
	}
	for _, name := range []string{"connect invalid utf8", "connect subprotocol utf8", "receive invalid utf",
		"close utf8 reason", "accept utf8 subproto"} {
		var f Frame
		if err := f.Decode(raw(t, bad[name])); !errors.Is(err, ErrInvalidUTF8) {
			t.Errorf("%s: %v", name, err)
		}
	}

	// Any int encoding that fits, codes 0..65535.
	f = mustDecode(t, "wide close", raw(t, "94 d019 d2000000ff d3000000000000ffff a0"))
	if f.Type != TypeWSClose || f.Stream != 255 || f.Code != 65535 {
		t.Errorf("got %+v", f)
	}
	f = mustDecode(t, "code 0", raw(t, "94 09 01 00 a0"))
	if f.Code != 0 {
		t.Errorf("code %d", f.Code)
	}
	// A str32-encoded text message and a bin32 binary one.
	f = mustDecode(t, "str32 text", raw(t, "93 08 01 db00000002 6869"))
	if !f.Text || string(f.Body) != "hi" {
		t.Errorf("text %v %q", f.Text, f.Body)
	}
	f = mustDecode(t, "bin32 binary", raw(t, "93 18 01 c600000002 6869"))
	if f.Text || string(f.Body) != "hi" {
		t.Errorf("text %v %q", f.Text, f.Body)
	}
}

func TestWSHostileLengths(t *testing.T) {
	for name, h := range map[string]string{
		"subprotocols huge": "9d 07 01 a3312e31 a27773 a12f c4012f c400 a0 90 c0 c0 dd ffffffff a0 00",
		"text str32 huge":   "93 08 01 db ffffffff 61",
		"data bin32 huge":   "93 18 01 c6 ffffffff 61",
		"reason str32 huge": "94 19 01 00 db ffffffff 61",
		"accept hdrs huge":  "94 17 01 c0 dd 7fffffff 92 c400 c400",
	} {
		var f Frame
		p := raw(t, h)
		mustFail(t, name, p, ErrMalformed)
		if n := allocBytes(func() { _ = f.Decode(p) }); n > 4096 {
			t.Errorf("%s: %d bytes allocated", name, n)
		}
	}
}

func TestWSAppend(t *testing.T) {
	// AppendWSConnect refuses invalid UTF-8 and leaves dst unchanged.
	good := WSConnect{HTTPVersion: "1.1", Scheme: "ws", Path: []byte("/"), Subprotocols: [][]byte{[]byte("a")}}
	for name, mut := range map[string]func(c *WSConnect){
		"path":        func(c *WSConnect) { c.Path = []byte("/\xc3") },
		"version":     func(c *WSConnect) { c.HTTPVersion = "\xff" },
		"scheme":      func(c *WSConnect) { c.Scheme = "\xff" },
		"root_path":   func(c *WSConnect) { c.RootPath = "/\xff" },
		"client":      func(c *WSConnect) { c.Client = &Addr{Host: "\xff", Port: 1, HasPort: true} },
		"server":      func(c *WSConnect) { c.Server = &Addr{Host: "\xff"} },
		"port":        func(c *WSConnect) { c.Client = &Addr{Host: "h", Port: -1, HasPort: true} },
		"subprotocol": func(c *WSConnect) { c.Subprotocols = [][]byte{[]byte("ok"), []byte("\xff")} },
	} {
		c := good
		mut(&c)
		out, err := AppendWSConnect([]byte("keep"), 1, &c)
		if err == nil || string(out) != "keep" || !strings.Contains(err.Error(), "WS_CONNECT") {
			t.Errorf("%s: err %v, out %q", name, err, out)
		}
	}
	out, err := AppendWSConnect(nil, 1, &good)
	if err != nil {
		t.Fatal(err)
	}
	f := mustDecode(t, "ws_connect", payloadOf(t, out))
	if len(f.WS.Subprotocols) != 1 || string(f.WS.Subprotocols[0]) != "a" {
		t.Errorf("subprotocols %q", f.WS.Subprotocols)
	}

	// AppendWSClose repairs invalid UTF-8 in the reason.
	f = mustDecode(t, "close", payloadOf(t, AppendWSClose(nil, TypeWSClose, 1, 1011, "bad \xff end")))
	if f.Code != 1011 || string(f.Message) != "bad \ufffd end" {
		t.Errorf("close %d %q", f.Code, f.Message)
	}

	// A nil and an empty subprotocol differ.
	f = mustDecode(t, "accept nil", payloadOf(t, AppendWSAccept(nil, 1, nil, false, nil)))
	if f.HasSubprotocol || f.Subprotocol != nil || len(f.Headers) != 0 {
		t.Errorf("accept nil: %+v", f)
	}
	f = mustDecode(t, "accept empty", payloadOf(t, AppendWSAccept(nil, 1, nil, true, nil)))
	if !f.HasSubprotocol || f.Subprotocol == nil || len(f.Subprotocol) != 0 {
		t.Errorf("accept empty: %+v", f)
	}

	// Wrong types and codes are programming errors.
	for name, fn := range map[string]func(){
		"message type":  func() { AppendWSMessage(nil, TypeRequestBody, 1, false, nil) },
		"close type":    func() { AppendWSClose(nil, TypeEnd, 1, 1000, "") },
		"close code -1": func() { AppendWSClose(nil, TypeWSClose, 1, -1, "") },
		"close 65536":   func() { AppendWSClose(nil, TypeWSDisconnect, 1, 65536, "") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			fn()
		}()
	}
}

func TestWSDecodeResetsOtherFields(t *testing.T) {
	var f Frame
	c := WSConnect{HTTPVersion: "1.1", Scheme: "wss", Path: []byte("/"), Subprotocols: [][]byte{[]byte("x")},
		Headers: []Header{{[]byte("a"), []byte("b")}}, Client: &Addr{Host: "h", Port: 1, HasPort: true}}
	out, _ := AppendWSConnect(nil, 1, &c)
	for _, frame := range [][]byte{
		out,
		AppendWSMessage(nil, TypeWSSend, 1, true, []byte("t")),
		AppendWSClose(nil, TypeWSClose, 1, 1000, "r"),
		AppendWSAccept(nil, 1, []byte("p"), true, c.Headers),
		AppendShutdown(nil, 9),
	} {
		if err := f.Decode(payloadOf(t, frame)); err != nil {
			t.Fatal(err)
		}
	}
	if f.Type != TypeShutdown || f.Grace != 9 || f.WS.Subprotocols != nil || f.WS.Client != nil ||
		f.Text || f.Body != nil || f.Code != 0 || f.Message != nil || f.Subprotocol != nil ||
		f.HasSubprotocol || f.Headers != nil {
		t.Fatalf("stale fields: %+v", f)
	}
}

func TestExtensionFramesStrict(t *testing.T) {
	for name, h := range map[string]string{
		// CANCEL
		"cancel sid 0":      "92 0b 00",
		"cancel arity 3":    "93 0b 01 00",
		"cancel arity 1":    "91 0b",
		"cancel str sid":    "92 0b a131",
		"cancel trailing":   "92 0b 01 c0",
		"cancel sid > u32":  "92 0b cf0000000100000000",
		"cancel negative":   "92 0b ff",
		"cancel nil sid":    "92 0b c0",
		"cancel float sid":  "92 0b ca3f800000",
		"cancel array sid":  "92 0b 90",
		"cancel bool sid":   "92 0b c3",
		"cancel bin sid":    "92 0b c40101",
		"cancel map sid":    "92 0b 80",
		"cancel ext sid":    "92 0b d40100",
		"cancel int8 -1":    "92 0b d0ff",
		"cancel int64 -1":   "92 0b d3ffffffffffffffff",
		"cancel as array16": "dc0003 0b 01 00",
		// RESPONSE_TRAILERS
		"trailers arity 3":        "93 1a 01 90",
		"trailers arity 5":        "95 1a 01 90 c2 c2",
		"trailers sid 0":          "94 1a 00 90 c2",
		"trailers headers nil":    "94 1a 01 c0 c2",
		"trailers str header":     "94 1a 01 91 92 a161 c40162 c2",
		"trailers header arity 3": "94 1a 01 91 93 c40161 c40162 c400 c2",
		"trailers header flat":    "94 1a 01 92 c40161 c40162 c2",
		"trailers int more":       "94 1a 01 90 00",
		"trailers nil more":       "94 1a 01 90 c0",
		"trailers missing more":   "94 1a 01 90",
		// RESPONSE_PATHSEND
		"pathsend arity 2":     "92 1b 01",
		"pathsend arity 4":     "94 1b 01 a12f c2",
		"pathsend sid 0":       "93 1b 00 a12f",
		"pathsend bin path":    "93 1b 01 c4012f",
		"pathsend nil path":    "93 1b 01 c0",
		"pathsend int path":    "93 1b 01 01",
		"pathsend utf8":        "93 1b 01 a3 2fc328",
		"pathsend str8 short":  "93 1b 01 d9 05 2f61",
		"pathsend array path":  "93 1b 01 91 a12f",
		"pathsend str trailer": "93 1b 01 a12f a0",
		// EARLY_HINT
		"hint arity 2":      "92 1c 01",
		"hint arity 4":      "94 1c 01 90 90",
		"hint sid 0":        "93 1c 00 90",
		"hint links nil":    "93 1c 01 c0",
		"hint links bin":    "93 1c 01 c40161",
		"hint str link":     "93 1c 01 91 a161",
		"hint nil link":     "93 1c 01 91 c0",
		"hint nested link":  "93 1c 01 91 91 c40161",
		"hint map links":    "93 1c 01 81 a161 c40161",
		"hint short array":  "93 1c 01 92 c40161",
		"hint bin16 short":  "93 1c 01 91 c5 0100 61",
		"hint second bad":   "93 1c 01 92 c40161 a162",
		"hint link trailer": "93 1c 01 91 c40161 c0",
	} {
		mustFail(t, name, raw(t, h), ErrMalformed)
	}
	var f Frame
	if err := f.Decode(raw(t, "93 1b 01 a3 2fc328")); !errors.Is(err, ErrInvalidUTF8) || !strings.Contains(err.Error(), "path") {
		t.Errorf("pathsend utf8: %v", err)
	}
	if err := f.Decode(raw(t, "94 1a 01 90 00")); err == nil || !strings.Contains(err.Error(), "more_trailers") {
		t.Errorf("trailers more: %v", err)
	}

	// Any int encoding of the sid; non-canonical lengths.
	g := mustDecode(t, "wide cancel", raw(t, "92 d00b d3 00000000ffffffff"))
	if g.Type != TypeCancel || g.Stream != 0xffffffff || !g.Type.FromGateway() {
		t.Errorf("cancel: %+v", g)
	}
	g = mustDecode(t, "str32 path", raw(t, "93 1b 01 db00000002 2f61"))
	if g.Type != TypeResponsePathsend || string(g.Message) != "/a" || g.Type.FromGateway() {
		t.Errorf("pathsend: %+v", g)
	}
	g = mustDecode(t, "bin32 link", raw(t, "93 1c 01 dc0001 c600000002 6869"))
	if len(g.Links) != 1 || string(g.Links[0]) != "hi" {
		t.Errorf("links %q", g.Links)
	}
	g = mustDecode(t, "no links", raw(t, "93 1c 01 90"))
	if len(g.Links) != 0 {
		t.Errorf("links %q", g.Links)
	}
	g = mustDecode(t, "trailers", raw(t, "94 1a 01 dc0001 92 c40161 c5000162 c3"))
	if len(g.Headers) != 1 || string(g.Headers[0].Name) != "a" || string(g.Headers[0].Value) != "b" || !g.MoreBody {
		t.Errorf("trailers %+v", g)
	}
	// A link's bytes alias the payload with the capacity clipped: appending to one cannot
	// overwrite the next.
	g = mustDecode(t, "two links", raw(t, "93 1c 01 92 c40161 c40162"))
	_ = append(g.Links[0], 'X')
	if string(g.Links[1]) != "b" || cap(g.Links[0]) != 1 {
		t.Errorf("links %q, cap %d", g.Links, cap(g.Links[0]))
	}
}

func TestExtensionHostileLengths(t *testing.T) {
	for name, h := range map[string]string{
		"links array32 huge":   "93 1c 01 dd ffffffff c400",
		"links array16 big":    "93 1c 01 dc ffff c400",
		"link bin32 huge":      "93 1c 01 91 c6 ffffffff 61",
		"trailers huge":        "94 1a 01 dd 7fffffff 92 c400 c400 c2",
		"trailer arr huge":     "94 1a 01 91 dd ffffffff c400 c400 c2",
		"pathsend str32 huge":  "93 1b 01 db ffffffff 2f",
		"pathsend str16 short": "93 1b 01 da 0100 2f",
	} {
		var f Frame
		p := raw(t, h)
		mustFail(t, name, p, ErrMalformed)
		if n := allocBytes(func() { _ = f.Decode(p) }); n > 4096 {
			t.Errorf("%s: %d bytes allocated", name, n)
		}
	}
}

func TestExtensionAppend(t *testing.T) {
	// AppendResponsePathsend repairs invalid UTF-8 instead of producing an undecodable frame.
	f := mustDecode(t, "pathsend", payloadOf(t, AppendResponsePathsend(nil, 1, "/srv/\xff\xfe.txt")))
	if string(f.Message) != "/srv/\ufffd.txt" {
		t.Errorf("path %q", f.Message)
	}
	// Appenders append: dst is kept.
	for name, out := range map[string][]byte{
		"cancel":   AppendCancel([]byte("keep"), 1),
		"trailers": AppendResponseTrailers([]byte("keep"), 1, nil, false),
		"pathsend": AppendResponsePathsend([]byte("keep"), 1, "/"),
		"hint":     AppendEarlyHint([]byte("keep"), 1, nil),
	} {
		if string(out[:4]) != "keep" {
			t.Errorf("%s clobbered dst", name)
		}
		g := mustDecode(t, name, payloadOf(t, out[4:]))
		if g.Stream != 1 {
			t.Errorf("%s: stream %d", name, g.Stream)
		}
	}
	// Nil and empty link slices encode alike (an empty array); an empty link is c4 00.
	if a, b := AppendEarlyHint(nil, 1, nil), AppendEarlyHint(nil, 1, [][]byte{}); !bytes.Equal(a, b) {
		t.Errorf("%x vs %x", a, b)
	}
	if got := hex.EncodeToString(payloadOf(t, AppendEarlyHint(nil, 1, [][]byte{nil}))); got != "931c0191c400" {
		t.Errorf("empty link: %s", got)
	}
	// Many links: array16, bin16.
	links := make([][]byte, 300)
	for i := range links {
		links[i] = bytes.Repeat([]byte{'l'}, i)
	}
	f = mustDecode(t, "300 links", payloadOf(t, AppendEarlyHint(nil, 7, links)))
	if len(f.Links) != 300 || len(f.Links[299]) != 299 {
		t.Errorf("%d links", len(f.Links))
	}
	// Trailers round trip with more_trailers.
	hs := []Header{{[]byte("grpc-status"), []byte("0")}, {[]byte("x"), nil}}
	f = mustDecode(t, "trailers", payloadOf(t, AppendResponseTrailers(nil, 9, hs, true)))
	if f.Type != TypeResponseTrailers || len(f.Headers) != 2 || string(f.Headers[0].Value) != "0" ||
		len(f.Headers[1].Value) != 0 || !f.MoreBody {
		t.Errorf("trailers %+v", f)
	}
}

func TestExtensionDecodeResetsOtherFields(t *testing.T) {
	var f Frame
	for _, frame := range [][]byte{
		AppendEarlyHint(nil, 1, [][]byte{[]byte("</a>; rel=preload")}),
		AppendResponseTrailers(nil, 1, []Header{{[]byte("a"), []byte("b")}}, true),
		AppendResponsePathsend(nil, 1, "/p"),
		AppendCancel(nil, 2),
	} {
		if err := f.Decode(payloadOf(t, frame)); err != nil {
			t.Fatal(err)
		}
	}
	if f.Type != TypeCancel || f.Stream != 2 || f.Links != nil || f.Headers != nil || f.MoreBody ||
		f.Message != nil {
		t.Fatalf("stale fields: %+v", f)
	}
	// And the other way round: a frame after an EARLY_HINT has no Links.
	if err := f.Decode(payloadOf(t, AppendEarlyHint(nil, 1, [][]byte{[]byte("x")}))); err != nil || len(f.Links) != 1 {
		t.Fatal(err)
	}
	if err := f.Decode(payloadOf(t, AppendResponseBody(nil, 1, []byte("b"), false))); err != nil || f.Links != nil {
		t.Fatalf("stale links: %v %+v", err, f)
	}
}

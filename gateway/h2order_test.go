package gateway

import (
	"bytes"
	"math/rand"
	"net"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// captureConn is a net.Conn whose writes are kept.
type captureConn struct {
	net.Conn
	buf    bytes.Buffer
	writes int
}

func (c *captureConn) Write(p []byte) (int, error) {
	c.writes++
	return c.buf.Write(p)
}

type sentFrame struct {
	typ    http2.FrameType
	sid    uint32
	flags  http2.Flags // END_STREAM only, for header blocks (the guard chooses the rest)
	fields []hpack.HeaderField
	raw    []byte // the frame's payload, for other frames
}

// serverOutput is what x/net's server might write on a connection: frames of every kind, header
// blocks with a dynamic table in use, split into CONTINUATIONs, padded, with the field order field.
func serverOutput(t *testing.T) ([]byte, []sentFrame) {
	var out bytes.Buffer
	fr := http2.NewFramer(&out, nil)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	block := func(fields ...hpack.HeaderField) []byte {
		hb.Reset()
		for _, f := range fields {
			if err := enc.WriteField(f); err != nil {
				t.Fatal(err)
			}
		}
		return append([]byte(nil), hb.Bytes()...)
	}
	f := func(name, value string) hpack.HeaderField { return hpack.HeaderField{Name: name, Value: value} }
	var want []sentFrame

	fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100})
	want = append(want, sentFrame{typ: http2.FrameSettings, raw: []byte{0, 3, 0, 0, 0, 100}})
	fr.WriteSettingsAck()
	want = append(want, sentFrame{typ: http2.FrameSettings, raw: []byte{}})

	// x/net's order (sorted by name) with the app's order in the field; set-cookie twice.
	sorted := []hpack.HeaderField{f(":status", "200"), f("asgi-gateway-field-order", "x-zulu,set-cookie,x-alpha,set-cookie,content-type"),
		f("content-type", "text/plain"), f("server", "asgi-gateway"), f("set-cookie", "a=1"), f("set-cookie", "b=2"),
		f("x-alpha", "2"), f("x-zulu", "1"), f("content-length", "2"), f("date", "Mon, 07 Dec 2026 08:00:00 GMT")}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(sorted...), EndHeaders: true})
	want = append(want, sentFrame{typ: http2.FrameHeaders, sid: 1, fields: []hpack.HeaderField{f(":status", "200"),
		f("x-zulu", "1"), f("set-cookie", "a=1"), f("x-alpha", "2"), f("set-cookie", "b=2"), f("content-type", "text/plain"),
		f("server", "asgi-gateway"), f("content-length", "2"), f("date", "Mon, 07 Dec 2026 08:00:00 GMT")}})
	fr.WriteData(1, true, []byte("ok"))
	want = append(want, sentFrame{typ: http2.FrameData, sid: 1, flags: http2.FlagDataEndStream, raw: []byte("ok")})

	// The same fields again (now from x/net's dynamic table), no order field, END_STREAM, padded.
	again := []hpack.HeaderField{f(":status", "200"), f("server", "asgi-gateway"), f("x-zulu", "1")}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block(again...), EndStream: true, EndHeaders: true, PadLength: 7})
	want = append(want, sentFrame{typ: http2.FrameHeaders, sid: 3, flags: http2.FlagHeadersEndStream, fields: again})

	// A block in three frames, with a big value: the guard's block (no dynamic table) is larger
	// than 16 KiB and goes out as HEADERS and a CONTINUATION.
	big := strings.Repeat("v", 20000)
	fields := []hpack.HeaderField{f(":status", "404"), f("asgi-gateway-field-order", "x-b,x-a"), f("x-a", big), f("x-b", "b")}
	b := block(fields...)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: b[:10], EndHeaders: false})
	fr.WriteContinuation(5, false, b[10:30])
	fr.WriteContinuation(5, true, b[30:])
	want = append(want, sentFrame{typ: http2.FrameHeaders, sid: 5, fields: []hpack.HeaderField{f(":status", "404"), f("x-b", "b"), f("x-a", big)}})

	fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
	want = append(want, sentFrame{typ: http2.FramePing, raw: []byte{1, 2, 3, 4, 5, 6, 7, 8}})
	data := bytes.Repeat([]byte("0123456789abcdef"), 1024)
	fr.WriteData(5, false, data)
	want = append(want, sentFrame{typ: http2.FrameData, sid: 5, raw: data})
	// Trailers (a header block on a stream that has had one).
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: block(f("x-checksum", "42")), EndStream: true, EndHeaders: true})
	want = append(want, sentFrame{typ: http2.FrameHeaders, sid: 5, flags: http2.FlagHeadersEndStream, fields: []hpack.HeaderField{f("x-checksum", "42")}})
	fr.WriteRSTStream(7, http2.ErrCodeCancel)
	want = append(want, sentFrame{typ: http2.FrameRSTStream, sid: 7, raw: []byte{0, 0, 0, 8}})
	fr.WriteWindowUpdate(0, 65535)
	want = append(want, sentFrame{typ: http2.FrameWindowUpdate, raw: []byte{0, 0, 0xff, 0xff}})
	fr.WriteGoAway(5, http2.ErrCodeNo, []byte("bye"))
	want = append(want, sentFrame{typ: http2.FrameGoAway, raw: []byte{0, 0, 0, 5, 0, 0, 0, 0, 'b', 'y', 'e'}})
	return out.Bytes(), want
}

// readClientSide decodes what the guard wrote as a client would (a fresh HPACK decoder, frames of at
// most 16 KiB), and returns the frames.
func readClientSide(t *testing.T, wire []byte) []sentFrame {
	t.Helper()
	fr := http2.NewFramer(nil, bytes.NewReader(wire))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = 1 << 20
	var got []sentFrame
	for {
		frame, err := fr.ReadFrame()
		if err != nil {
			if err.Error() == "EOF" {
				return got
			}
			t.Fatalf("the guard's output does not parse: %v (after %d frames)", err, len(got))
		}
		if frame.Header().Length > h2MaxOutFrame {
			t.Fatalf("a frame of %d bytes", frame.Header().Length)
		}
		s := sentFrame{typ: frame.Header().Type, sid: frame.Header().StreamID}
		switch fr := frame.(type) {
		case *http2.MetaHeadersFrame:
			s.typ = http2.FrameHeaders
			s.flags = fr.Flags & http2.FlagHeadersEndStream
			s.fields = fr.Fields
		case *http2.DataFrame:
			s.flags = fr.Flags & http2.FlagDataEndStream
			s.raw = append([]byte(nil), fr.Data()...)
		case *http2.SettingsFrame:
			s.raw = []byte{}
			fr.ForeachSetting(func(st http2.Setting) error {
				s.raw = append(s.raw, byte(st.ID>>8), byte(st.ID), byte(st.Val>>24), byte(st.Val>>16), byte(st.Val>>8), byte(st.Val))
				return nil
			})
		case *http2.PingFrame:
			s.raw = fr.Data[:]
		case *http2.RSTStreamFrame:
			s.raw = []byte{0, 0, 0, byte(fr.ErrCode)}
		case *http2.WindowUpdateFrame:
			s.raw = []byte{byte(fr.Increment >> 24), byte(fr.Increment >> 16), byte(fr.Increment >> 8), byte(fr.Increment)}
		case *http2.GoAwayFrame:
			s.raw = append([]byte{byte(fr.LastStreamID >> 24), byte(fr.LastStreamID >> 16), byte(fr.LastStreamID >> 8), byte(fr.LastStreamID),
				0, 0, 0, byte(fr.ErrCode)}, fr.DebugData()...)
		}
		got = append(got, s)
	}
}

func TestH2GuardWritesTheAppsFieldOrder(t *testing.T) {
	wire, want := serverOutput(t)
	chunkings := map[string]func(rng *rand.Rand) int{
		"one write":    func(*rand.Rand) int { return len(wire) },
		"byte by byte": func(*rand.Rand) int { return 1 },
		"random":       func(rng *rand.Rand) int { return 1 + rng.Intn(40) },
		"random large": func(rng *rand.Rand) int { return 1 + rng.Intn(20000) },
	}
	for name, size := range chunkings {
		for seed := int64(0); seed < 20; seed++ {
			rng := rand.New(rand.NewSource(seed))
			c := &captureConn{}
			g := newH2Guard(c)
			for rest := wire; len(rest) > 0; {
				n := min(size(rng), len(rest))
				if k, err := g.Write(rest[:n]); err != nil || k != n {
					t.Fatalf("%s: Write: %d, %v", name, k, err)
				}
				rest = rest[n:]
			}
			got := readClientSide(t, c.buf.Bytes())
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s (seed %d):\n got %+v\nwant %+v", name, seed, got, want)
			}
			if strings.Contains(c.buf.String(), h2FieldOrder) {
				t.Fatalf("%s: the order field reached the client", name)
			}
			if name == "one write" {
				break
			}
		}
	}
}

func TestH2GuardPassesWritesWithoutHeaderBlocksAsTheyAre(t *testing.T) {
	var out bytes.Buffer
	fr := http2.NewFramer(&out, nil)
	fr.WriteData(1, false, bytes.Repeat([]byte("x"), 16384))
	fr.WriteData(1, true, []byte("end"))
	c := &captureConn{}
	g := newH2Guard(c)
	g.Write(out.Bytes())
	if c.writes != 1 || !bytes.Equal(c.buf.Bytes(), out.Bytes()) {
		t.Fatalf("%d writes; same bytes: %v", c.writes, bytes.Equal(c.buf.Bytes(), out.Bytes()))
	}
}

func TestH2GuardRefusesAPushPromise(t *testing.T) {
	var out bytes.Buffer
	fr := http2.NewFramer(&out, nil)
	fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: []byte{0x88}, EndHeaders: true})
	g := newH2Guard(&captureConn{})
	if _, err := g.Write(out.Bytes()); err != errH2PushPromise {
		t.Fatalf("PUSH_PROMISE: %v", err)
	}
	if _, err := g.Write([]byte{0}); err != errH2PushPromise {
		t.Fatalf("after a failed write: %v", err)
	}
}

func TestOrderFields(t *testing.T) {
	f := func(name, value string) hpack.HeaderField { return hpack.HeaderField{Name: name, Value: value} }
	cases := []struct {
		in, want []hpack.HeaderField
	}{
		{[]hpack.HeaderField{f(":status", "200"), f("b", "1"), f("a", "2")}, []hpack.HeaderField{f(":status", "200"), f("b", "1"), f("a", "2")}},
		{ // names listed but missing (dropped by x/net), fields not listed (the gateway's) after
			[]hpack.HeaderField{f("a", "1"), f(h2FieldOrder, "c,gone,a,c"), f(":status", "204"), f("c", "x"), f("server", "s"), f("c", "y")},
			[]hpack.HeaderField{f(":status", "204"), f("c", "x"), f("a", "1"), f("c", "y"), f("server", "s")},
		},
		{[]hpack.HeaderField{f(h2FieldOrder, "")}, []hpack.HeaderField{}},
	}
	for _, c := range cases {
		if got := orderFields(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("orderFields(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// The guard's encoder keeps a dynamic table as x/net's does (repeated fields cost a byte or two),
// and shrinks it exactly when x/net's does: x/net's block that opens with a size update (the client
// lowered SETTINGS_HEADER_TABLE_SIZE) gives the guard's block the same update.
func TestH2GuardFollowsTheServersTableSize(t *testing.T) {
	var out bytes.Buffer
	fr := http2.NewFramer(&out, nil)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb) // x/net's
	f := func(name, value string) hpack.HeaderField { return hpack.HeaderField{Name: name, Value: value} }
	fields := []hpack.HeaderField{f(":status", "200"), f("content-type", "text/plain; charset=utf-8"),
		f("server", "asgi-gateway"), f("x-request-id", "0123456789abcdef0123456789abcdef")}
	header := func(sid uint32) {
		hb.Reset()
		for _, field := range fields {
			enc.WriteField(field)
		}
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: sid, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	}
	header(1)
	header(3)
	enc.SetMaxDynamicTableSizeLimit(0) // the client's SETTINGS_HEADER_TABLE_SIZE 0, acknowledged
	header(5)
	header(7)
	if hb.Bytes()[0] == 0x20 {
		t.Fatal("test set-up: x/net's encoder repeats the update")
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 9, BlockFragment: []byte{0x3f, 0xe1, 0x1f}, EndHeaders: true}) // an update to 4096 alone

	c := &captureConn{}
	if _, err := newH2Guard(c).Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	blocks := map[uint32][]byte{}
	for r := http2.NewFramer(nil, bytes.NewReader(c.buf.Bytes())); ; {
		frame, err := r.ReadFrame()
		if err != nil {
			break
		}
		blocks[frame.Header().StreamID] = append([]byte(nil), frame.(*http2.HeadersFrame).HeaderBlockFragment()...)
	}
	if len(blocks[3]) > 8 || len(blocks[1]) < 40 {
		t.Fatalf("the repeated block is %d bytes (the first %d): no dynamic table?", len(blocks[3]), len(blocks[1]))
	}
	if blocks[1][0]&0xe0 == 0x20 || blocks[3][0]&0xe0 == 0x20 {
		t.Fatal("a size update where x/net's blocks had none")
	}
	if blocks[5][0] != 0x20 || blocks[7][0]&0xe0 == 0x20 {
		t.Fatalf("blocks after x/net's update to 0 open with % x and % x, want the update in the first only", blocks[5][:1], blocks[7][:1])
	}
	if len(blocks[7]) < 40 {
		t.Fatalf("after the update to 0 a repeated block is %d bytes: still indexed", len(blocks[7]))
	}
	if !bytes.Equal(blocks[9], []byte{0x3f, 0xe1, 0x1f}) {
		t.Fatalf("a block of an update alone: % x", blocks[9])
	}
	got := readClientSide(t, c.buf.Bytes())
	for i, sid := range []uint32{1, 3, 5, 7} {
		if got[i].sid != sid || !reflect.DeepEqual(got[i].fields, fields) {
			t.Fatalf("block %d as the client decodes it: %+v", sid, got[i])
		}
	}

	// A size update cut short is the server's error, not passed on.
	out.Reset()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x3f, 0xe1}, EndHeaders: true})
	if _, err := newH2Guard(&captureConn{}).Write(out.Bytes()); err == nil {
		t.Fatal("a truncated size update went through")
	}
}

package websocket

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

var testKey = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// frame is a client frame to build for a test.
type frame struct {
	b0      byte // FIN, RSV and opcode
	payload string
	unmask  bool // send without the mask bit and key
	lenEnc  int  // force a length encoding: 7, 16 or 64 bits (0: minimal)
}

func fin(op byte, payload string) frame  { return frame{b0: bitFin | op, payload: payload} }
func frag(op byte, payload string) frame { return frame{b0: op, payload: payload} }

// appendClientFrame appends f as a client would send it.
func appendClientFrame(dst []byte, f frame) []byte {
	n := len(f.payload)
	var mask byte = bitMask
	if f.unmask {
		mask = 0
	}
	enc := f.lenEnc
	if enc == 0 {
		switch {
		case n <= 125:
			enc = 7
		case n <= 0xFFFF:
			enc = 16
		default:
			enc = 64
		}
	}
	switch enc {
	case 7:
		dst = append(dst, f.b0, mask|byte(n))
	case 16:
		dst = append(dst, f.b0, mask|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, f.b0, mask|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if f.unmask {
		return append(dst, f.payload...)
	}
	dst = append(dst, testKey[:]...)
	start := len(dst)
	dst = append(dst, f.payload...)
	for i := range n {
		dst[start+i] ^= testKey[i&3]
	}
	return dst
}

func clientFrames(fs ...frame) []byte {
	var b []byte
	for _, f := range fs {
		b = appendClientFrame(b, f)
	}
	return b
}

// decodeAll feeds in to d in pieces of step bytes (0: all at once), the way
// a connection loop does, and returns the events (with copied data) and the
// error. It checks that n is within bounds.
func decodeAll(t testing.TB, d *Decoder, in []byte, step int) ([]Event, error) {
	t.Helper()
	in = bytes.Clone(in)
	var evs []Event
	var buf []byte
	fed := 0
	for {
		if step == 0 {
			buf, fed = in, len(in)
		} else if fed < len(in) {
			m := min(step, len(in)-fed)
			buf = append(buf, in[fed:fed+m]...)
			fed += m
		}
		for {
			n, ev, err := d.Next(buf)
			if n < 0 || n > len(buf) {
				t.Fatalf("n = %d with %d bytes", n, len(buf))
			}
			if err != nil {
				return evs, err
			}
			if ev.Kind != EventNone {
				ev.Data = bytes.Clone(ev.Data)
				if ev.Data == nil {
					ev.Data = []byte{}
				}
				evs = append(evs, ev)
			}
			buf = buf[n:]
			if ev.Kind == EventNone {
				break
			}
		}
		if fed == len(in) {
			return evs, nil
		}
		buf = bytes.Clone(buf) // the caller's buffer moves: Data must not be relied on
	}
}

func ev(kind EventKind, data string) Event { return Event{Kind: kind, Data: []byte(data)} }

func closeEv(code int, reason string) Event {
	return Event{Kind: EventClose, Code: code, Data: []byte(reason)}
}

func closePayload(code int, reason string) string {
	return string(binary.BigEndian.AppendUint16(nil, uint16(code))) + reason
}

func errCode(err error) int {
	var pe *ProtocolError
	if errors.As(err, &pe) {
		return pe.Code
	}
	if err != nil {
		return -1
	}
	return 0
}

type decoderCase struct {
	name    string
	in      []byte
	deflate bool
	max     int64
	want    []Event
	code    int // expected error close code, 0 for none
}

var (
	long125   = strings.Repeat("a", 125)
	long126   = strings.Repeat("b", 126)
	long65535 = strings.Repeat("c", 65535)
	long65536 = strings.Repeat("d", 65536)
)

var decoderCases = []decoderCase{
	// RFC 6455 section 5.7 example: a single-frame masked text message.
	{name: "rfc masked hello", in: []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}, want: []Event{ev(EventText, "Hello")}},
	{name: "text", in: clientFrames(fin(opText, "héllo wörld")), want: []Event{ev(EventText, "héllo wörld")}},
	{name: "empty text", in: clientFrames(fin(opText, "")), want: []Event{ev(EventText, "")}},
	{name: "binary", in: clientFrames(fin(opBinary, "\x00\xff\xfe")), want: []Event{ev(EventBinary, "\x00\xff\xfe")}},
	{name: "ping pong", in: clientFrames(fin(opPing, "p"), fin(opPong, "q"), fin(opPing, "")), want: []Event{ev(EventPing, "p"), ev(EventPong, "q"), ev(EventPing, "")}},
	{name: "ping 125", in: clientFrames(fin(opPing, long125)), want: []Event{ev(EventPing, long125)}},
	{name: "len 125", in: clientFrames(fin(opBinary, long125)), want: []Event{ev(EventBinary, long125)}},
	{name: "len 126", in: clientFrames(fin(opBinary, long126)), want: []Event{ev(EventBinary, long126)}},
	{name: "len 65535", in: clientFrames(fin(opText, long65535)), want: []Event{ev(EventText, long65535)}},
	{name: "len 65536", in: clientFrames(fin(opText, long65536)), want: []Event{ev(EventText, long65536)}},
	{name: "non-minimal 16", in: clientFrames(frame{b0: bitFin | opText, payload: "hi", lenEnc: 16}), want: []Event{ev(EventText, "hi")}},
	{name: "non-minimal 64", in: clientFrames(frame{b0: bitFin | opText, payload: "hi", lenEnc: 64}), want: []Event{ev(EventText, "hi")}},
	{name: "several messages", in: clientFrames(fin(opText, "a"), fin(opBinary, "b"), fin(opText, "c")), want: []Event{ev(EventText, "a"), ev(EventBinary, "b"), ev(EventText, "c")}},
	{
		name: "fragments with interleaved ping",
		in:   clientFrames(frag(opText, "Hel"), fin(opPing, "x"), frag(opContinuation, ""), frag(opContinuation, "lo "), fin(opPong, ""), fin(opContinuation, "wörld"), fin(opBinary, "z")),
		want: []Event{ev(EventPing, "x"), ev(EventPong, ""), ev(EventText, "Hello wörld"), ev(EventBinary, "z")},
	},
	{name: "fragmented binary", in: clientFrames(frag(opBinary, "\xff"), fin(opContinuation, "\xfe")), want: []Event{ev(EventBinary, "\xff\xfe")}},
	{name: "fragmented big", in: clientFrames(frag(opBinary, long65536), fin(opContinuation, long126)), want: []Event{ev(EventBinary, long65536+long126)}},
	{name: "utf8 split across fragments", in: clientFrames(frag(opText, "a\xe2"), frag(opContinuation, "\x82"), fin(opContinuation, "\xacb")), want: []Event{ev(EventText, "a€b")}},
	{name: "utf8 4-byte split", in: clientFrames(frag(opText, "\xf0\x9f"), fin(opContinuation, "\x98\x80")), want: []Event{ev(EventText, "😀")}},

	// Close frames.
	{name: "close empty", in: clientFrames(fin(opClose, "")), want: []Event{closeEv(CloseNoStatus, "")}},
	{name: "close code", in: clientFrames(fin(opClose, closePayload(1000, ""))), want: []Event{closeEv(1000, "")}},
	{name: "close reason", in: clientFrames(fin(opClose, closePayload(4000, "bye ☺"))), want: []Event{closeEv(4000, "bye ☺")}},
	{name: "close 3000", in: clientFrames(fin(opClose, closePayload(3000, "x"))), want: []Event{closeEv(3000, "x")}},
	{name: "close 1014", in: clientFrames(fin(opClose, closePayload(1014, ""))), want: []Event{closeEv(1014, "")}},
	{name: "close long reason", in: clientFrames(fin(opClose, closePayload(1001, strings.Repeat("r", 123)))), want: []Event{closeEv(1001, strings.Repeat("r", 123))}},
	{name: "bytes after close ignored", in: append(clientFrames(fin(opText, "a"), fin(opClose, "")), "\x00\x00garbage"...), want: []Event{ev(EventText, "a"), closeEv(CloseNoStatus, "")}},
	{name: "close 1 byte", in: clientFrames(fin(opClose, "\x03")), code: 1002},
	{name: "close 1005", in: clientFrames(fin(opClose, closePayload(1005, ""))), code: 1002},
	{name: "close 1006", in: clientFrames(fin(opClose, closePayload(1006, ""))), code: 1002},
	{name: "close 1004", in: clientFrames(fin(opClose, closePayload(1004, ""))), code: 1002},
	{name: "close 1015", in: clientFrames(fin(opClose, closePayload(1015, ""))), code: 1002},
	{name: "close 999", in: clientFrames(fin(opClose, closePayload(999, ""))), code: 1002},
	{name: "close 0", in: clientFrames(fin(opClose, closePayload(0, ""))), code: 1002},
	{name: "close 2999", in: clientFrames(fin(opClose, closePayload(2999, ""))), code: 1002},
	{name: "close 5000", in: clientFrames(fin(opClose, closePayload(5000, ""))), code: 1002},
	{name: "close bad utf8", in: clientFrames(fin(opClose, closePayload(1000, "\xff"))), code: 1007},

	// Framing errors.
	{name: "unmasked", in: clientFrames(frame{b0: bitFin | opText, payload: "a", unmask: true}), code: 1002},
	{name: "unmasked control", in: clientFrames(frame{b0: bitFin | opPing, unmask: true}), code: 1002},
	{name: "rsv1 without deflate", in: clientFrames(fin(opText|bitRsv1, "a")), code: 1002},
	{name: "rsv2", in: clientFrames(fin(opText|bitRsv2, "a")), code: 1002},
	{name: "rsv3", in: clientFrames(fin(opBinary|bitRsv3, "a")), code: 1002},
	{name: "rsv2 with deflate", deflate: true, in: clientFrames(fin(opText|bitRsv2, "a")), code: 1002},
	{name: "rsv1 on continuation", deflate: true, in: clientFrames(frag(opText, "a"), fin(opContinuation|bitRsv1, "b")), code: 1002},
	{name: "rsv1 on ping", deflate: true, in: clientFrames(fin(opPing|bitRsv1, "")), code: 1002},
	{name: "rsv1 on close", deflate: true, in: clientFrames(fin(opClose|bitRsv1, "")), code: 1002},
	{name: "opcode 3", in: clientFrames(fin(3, "")), code: 1002},
	{name: "opcode 7", in: clientFrames(fin(7, "")), code: 1002},
	{name: "opcode 0xB", in: clientFrames(fin(0xB, "")), code: 1002},
	{name: "opcode 0xF", in: clientFrames(fin(0xF, "")), code: 1002},
	{name: "fragmented ping", in: clientFrames(frag(opPing, "")), code: 1002},
	{name: "fragmented close", in: clientFrames(frag(opClose, "")), code: 1002},
	{name: "ping 126", in: clientFrames(fin(opPing, long126)), code: 1002},
	{name: "pong 126 in 16-bit", in: clientFrames(frame{b0: bitFin | opPong, payload: "x", lenEnc: 16}), code: 1002},
	{name: "continuation without message", in: clientFrames(fin(opContinuation, "a")), code: 1002},
	{name: "continuation after complete message", in: clientFrames(fin(opText, "a"), fin(opContinuation, "b")), want: []Event{ev(EventText, "a")}, code: 1002},
	{name: "text inside fragmented message", in: clientFrames(frag(opText, "a"), fin(opText, "b")), code: 1002},
	{name: "binary inside fragmented message", in: clientFrames(frag(opBinary, "a"), frag(opBinary, "b")), code: 1002},
	{name: "64-bit length msb", in: append([]byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0}, testKey[:]...), code: 1002},
	{name: "error sticks after event", in: clientFrames(fin(opPing, "a"), fin(opText|bitRsv2, "")), want: []Event{ev(EventPing, "a")}, code: 1002},

	// Size limit.
	{name: "at max", max: 10, in: clientFrames(fin(opText, "0123456789")), want: []Event{ev(EventText, "0123456789")}},
	{name: "over max", max: 10, in: clientFrames(fin(opText, "0123456789x")), code: 1009},
	{name: "over max header only", max: 10, in: []byte{0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0}, code: 1009},
	{name: "fragments over max", max: 10, in: clientFrames(frag(opText, "01234"), frag(opContinuation, "56789"), fin(opContinuation, "x")), code: 1009},
	{name: "fragments at max", max: 10, in: clientFrames(frag(opText, "01234"), frag(opContinuation, "56789"), fin(opContinuation, "")), want: []Event{ev(EventText, "0123456789")}},
	{name: "max is per message", max: 10, in: clientFrames(fin(opText, "0123456789"), fin(opBinary, "0123456789")), want: []Event{ev(EventText, "0123456789"), ev(EventBinary, "0123456789")}},
	{name: "control frames do not count", max: 2, in: clientFrames(frag(opText, "01"), fin(opPing, "abc"), fin(opContinuation, "")), want: []Event{ev(EventPing, "abc"), ev(EventText, "01")}},

	// UTF-8.
	{name: "bad utf8", in: clientFrames(fin(opText, "a\xffb")), code: 1007},
	{name: "surrogate", in: clientFrames(fin(opText, "\xed\xa0\x80")), code: 1007},
	{name: "overlong", in: clientFrames(fin(opText, "\xc0\xaf")), code: 1007},
	{name: "bad utf8 binary ok", in: clientFrames(fin(opBinary, "a\xffb")), want: []Event{ev(EventBinary, "a\xffb")}},
	{name: "bad utf8 split across fragments", in: clientFrames(frag(opText, "a\xe2\x82"), fin(opContinuation, "Ab")), code: 1007},
	{name: "bad utf8 in first fragment", in: clientFrames(frag(opText, "a\xe2\x28"), fin(opContinuation, "b")), code: 1007},
	{name: "truncated utf8 at end", in: clientFrames(frag(opText, "a"), fin(opContinuation, "\xe2\x82")), code: 1007},
	{name: "bad utf8 after ping", in: clientFrames(frag(opText, "\xf0"), fin(opPing, ""), fin(opContinuation, "\x28")), want: []Event{ev(EventPing, "")}, code: 1007},
}

func TestDecoder(t *testing.T) {
	for _, tc := range decoderCases {
		for _, step := range []int{0, 1, 3, 7, 200} {
			t.Run(fmt.Sprintf("%s/step%d", tc.name, step), func(t *testing.T) {
				d := &Decoder{MaxMessage: tc.max}
				if tc.deflate {
					d.SetDeflate(&DeflateParams{ServerNoContextTakeover: true})
				}
				evs, err := decodeAll(t, d, tc.in, step)
				if code := errCode(err); code != tc.code {
					t.Fatalf("error %v (code %d); want code %d", err, code, tc.code)
				}
				checkEvents(t, evs, tc.want)
				if err != nil {
					// Errors stick.
					n, ev, err2 := d.Next(clientFrames(fin(opText, "a")))
					if n != 0 || ev.Kind != EventNone || err2 != err {
						t.Fatalf("after error: %d %v %v", n, ev, err2)
					}
				}
			})
		}
	}
}

func checkEvents(t testing.TB, got, want []Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events %s; want %d %s", len(got), showEvents(got), len(want), showEvents(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Kind != w.Kind || g.Code != w.Code || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("event %d: got %s; want %s", i, showEvents(got[i:i+1]), showEvents(want[i:i+1]))
		}
	}
}

func showEvents(evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		d := e.Data
		if len(d) > 40 {
			d = d[:40]
		}
		fmt.Fprintf(&b, "{%d %q (%d bytes) %d}", e.Kind, d, len(e.Data), e.Code)
	}
	return b.String()
}

func TestDecoderErrorValues(t *testing.T) {
	// Reasons fit a close frame, and codes are the ones a server sends.
	for _, e := range []*ProtocolError{errUnmasked, errRsv, errRsv1, errOpcode, errControlFragment, errControlTooLong,
		errContinuation, errInterleaved, errLength, errCloseLength, errCloseCode, errTooBig, errUTF8, errCloseUTF8, errCompressed} {
		if len(e.Reason) > maxCloseReason || !ValidCloseCode(e.Code) || e.Code != 1002 && e.Code != 1007 && e.Code != 1009 {
			t.Errorf("%v: bad error value", e)
		}
		if !strings.HasPrefix(e.Error(), "websocket: 10") {
			t.Errorf("Error() = %q", e.Error())
		}
	}
}

func TestDecoderNeedMore(t *testing.T) {
	// Headers are consumed only whole; the payload of a data frame as it
	// arrives; control frames only whole.
	in := clientFrames(fin(opText, long126))
	var d Decoder
	for i := range 8 { // 2-byte header + 2-byte length + 4-byte key
		if n, ev, err := d.Next(in[:i]); n != 0 || ev.Kind != EventNone || err != nil {
			t.Fatalf("prefix %d: %d %v %v", i, n, ev, err)
		}
	}
	if n, ev, err := d.Next(in[:20]); n != 20 || ev.Kind != EventNone || err != nil {
		t.Fatalf("partial payload: %d %v %v", n, ev, err)
	}
	if n, ev, err := d.Next(in[20:]); n != len(in)-20 || ev.Kind != EventText || string(ev.Data) != long126 || err != nil {
		t.Fatalf("rest: %d %v %v", n, ev.Kind, err)
	}
	ping := clientFrames(fin(opPing, long125))
	if len(ping) != MaxControlFrame {
		t.Fatalf("largest control frame is %d bytes; MaxControlFrame = %d", len(ping), MaxControlFrame)
	}
	if n, ev, err := d.Next(ping[:MaxControlFrame-1]); n != 0 || ev.Kind != EventNone || err != nil {
		t.Fatalf("partial ping: %d %v %v", n, ev, err)
	}
	if n, ev, err := d.Next(ping); n != len(ping) || ev.Kind != EventPing || err != nil {
		t.Fatalf("ping: %d %v %v", n, ev, err)
	}
}

func TestDecoderInPlace(t *testing.T) {
	// A whole single-frame message is unmasked in place and not copied.
	buf := clientFrames(fin(opText, "hello"), fin(opPing, "p"))
	var d Decoder
	n, ev, err := d.Next(buf)
	if err != nil || ev.Kind != EventText || string(ev.Data) != "hello" || &ev.Data[0] != &buf[6] {
		t.Fatalf("text: %d %v %v", n, ev, err)
	}
	_, ev, err = d.Next(buf[n:])
	if err != nil || ev.Kind != EventPing || &ev.Data[0] != &buf[n+6] {
		t.Fatalf("ping: %v %v", ev, err)
	}
	if d.Retained() != 0 {
		t.Fatalf("Retained = %d", d.Retained())
	}
}

func TestDecoderRelease(t *testing.T) {
	var d Decoder
	big := strings.Repeat("x", 1<<20)
	evs, err := decodeAll(t, &d, clientFrames(frag(opBinary, big), fin(opContinuation, "y")), 0)
	if err != nil || len(evs) != 1 || len(evs[0].Data) != 1<<20+1 {
		t.Fatalf("%v %d", err, len(evs))
	}
	if d.Retained() < 1<<20 {
		t.Fatalf("Retained = %d", d.Retained())
	}
	d.Release()
	if d.Retained() != 0 {
		t.Fatalf("Retained after Release = %d", d.Retained())
	}
	// Release in the middle of a message keeps what has arrived.
	in := clientFrames(frag(opText, "ab"), fin(opContinuation, "c"))
	n, _, _ := d.Next(in[:10])
	d.Release()
	if _, ev, err := d.Next(in[n:]); err != nil || string(ev.Data) != "abc" {
		t.Fatalf("after Release mid-message: %q %v", ev.Data, err)
	}
}

func TestMaskBytes(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	for n := range 80 {
		for pos := range 4 {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(i * 7)
			}
			want := bytes.Clone(b)
			for i := range want {
				want[i] ^= key[(pos+i)&3]
			}
			end := maskBytes(key, pos, b)
			if !bytes.Equal(b, want) || end != (pos+n)&3 {
				t.Fatalf("n=%d pos=%d: %x end %d; want %x", n, pos, b, end, want)
			}
		}
	}
	// Unmasking in pieces equals unmasking at once.
	src := []byte(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 5))
	whole := bytes.Clone(src)
	maskBytes(testKey, 0, whole)
	for _, step := range []int{1, 3, 5, 8, 13, 33} {
		b := bytes.Clone(src)
		pos := 0
		for i := 0; i < len(b); i += step {
			pos = maskBytes(testKey, pos, b[i:min(i+step, len(b))])
		}
		if !bytes.Equal(b, whole) {
			t.Fatalf("step %d differs", step)
		}
	}
}

func TestCheckUTF8(t *testing.T) {
	for _, tc := range []struct {
		in string
		n  int
		ok bool
	}{
		{"", 0, true},
		{"abc", 3, true},
		{"a\xe2", 1, true},
		{"a\xe2\x82", 1, true},
		{"a\xe2\x82\xac", 4, true},
		{"\xf0\x9f\x98", 0, true},
		{"\xf0\x9f\x98\x80", 4, true},
		{"a\xe2\x28", 0, false},
		{"\xe0\x80", 0, false}, // overlong lead
		{"\xed\xa0", 0, false}, // surrogate
		{"\xf5", 0, false},
		{"\x80", 0, false},
		{"a\x80\x80\x80\x80", 0, false},
		{"\xff\xe2", 0, false},
	} {
		n, ok := checkUTF8([]byte(tc.in))
		if ok != tc.ok || ok && n != tc.n {
			t.Errorf("checkUTF8(%q) = %d, %v; want %d, %v", tc.in, n, ok, tc.n, tc.ok)
		}
	}
}

func TestValidCloseCode(t *testing.T) {
	valid := map[int]bool{}
	for _, c := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014} {
		valid[c] = true
	}
	for c := 3000; c <= 4999; c++ {
		valid[c] = true
	}
	for c := -1; c < 70000; c++ {
		if ValidCloseCode(c) != valid[c] {
			t.Errorf("ValidCloseCode(%d) = %v", c, !valid[c])
		}
	}
}

// text1K is a masked text frame with 1 KiB of ASCII JSON.
var text1K = clientFrames(fin(opText, strings.Repeat(`{"id":12345,"name":"abcdefghi"},`, 32)))

func TestDecoderAllocs(t *testing.T) {
	buf := make([]byte, len(text1K))
	var d Decoder
	allocs := testing.AllocsPerRun(1000, func() {
		copy(buf, text1K)
		_, ev, err := d.Next(buf)
		if err != nil || ev.Kind != EventText {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("decoding a 1 KiB text frame allocates %v times; want 0", allocs)
	}

	// Fragmented and partially arrived messages, once the buffer has grown.
	in := clientFrames(frag(opText, strings.Repeat("x", 500)), fin(opPing, "p"), fin(opContinuation, strings.Repeat("y", 500)))
	buf = make([]byte, len(in))
	allocs = testing.AllocsPerRun(1000, func() {
		copy(buf, in)
		b := buf
		for _, cut := range []int{100, len(in)} {
			for {
				n, ev, err := d.Next(b[:cut-(len(buf)-len(b))])
				if err != nil {
					t.Fatal(err)
				}
				b = b[n:]
				if ev.Kind == EventNone {
					break
				}
			}
		}
	})
	if allocs != 0 {
		t.Errorf("decoding a fragmented message allocates %v times; want 0", allocs)
	}
}

func BenchmarkDecodeText1K(b *testing.B) {
	// Each iteration copies the frame into the buffer first (as a read
	// would), since the Decoder unmasks in place.
	buf := make([]byte, len(text1K))
	var d Decoder
	b.ReportAllocs()
	b.SetBytes(int64(len(text1K)))
	for b.Loop() {
		copy(buf, text1K)
		if _, _, err := d.Next(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeText1KNonASCII(b *testing.B) {
	// One 2-byte character in every 16 bytes: utf8.Valid's slow path.
	in := clientFrames(fin(opText, strings.Repeat("0123456789abcdé", 64)[:1024]))
	buf := make([]byte, len(in))
	var d Decoder
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		copy(buf, in)
		if _, _, err := d.Next(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeText1KStreamed(b *testing.B) {
	// The same frame arriving in two reads: the payload is copied.
	buf := make([]byte, len(text1K))
	var d Decoder
	b.ReportAllocs()
	b.SetBytes(int64(len(text1K)))
	for b.Loop() {
		copy(buf, text1K)
		n, _, _ := d.Next(buf[:512])
		if _, ev, err := d.Next(buf[n:]); err != nil || ev.Kind != EventText {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeSmall(b *testing.B) {
	small := clientFrames(fin(opText, "hello, world"))
	buf := make([]byte, len(small))
	var d Decoder
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, small)
		if _, _, err := d.Next(buf); err != nil {
			b.Fatal(err)
		}
	}
}

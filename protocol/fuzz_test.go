package protocol

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"testing"
)

func vectorPayloads(f *testing.F) [][]byte {
	var out [][]byte
	for _, vec := range loadVectors(f) {
		b, err := hex.DecodeString(vec.Hex)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b[PrefixLen:])
	}
	return out
}

// FuzzDecode: arbitrary payloads never panic, and a payload that decodes re-encodes (with the
// Append* of its type) to a canonical frame that decodes to the same value, and re-encodes to the
// same bytes again.
func FuzzDecode(f *testing.F) {
	for _, p := range vectorPayloads(f) {
		f.Add(p)
	}
	f.Add([]byte{0x93, 0x14, 0xd2, 0, 0, 0, 1, 0xcd, 0, 5}) // non-canonical ints
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x04, 0x01}) // hostile array length
	f.Add([]byte{0x94, 0x15, 0x01, 0x00, 0xa2, 0xc3, 0x28}) // invalid UTF-8
	f.Add([]byte{0x93, 0x11, 0x00, 0x82, 0xa8, 'p', 'r', 'o', 't', 'o', 'c', 'o', 'l', 0x01, 0xa1, 'x', 0x91, 0x91, 0xc0})
	f.Add([]byte{0x93, 0x08, 0x01, 0xdb, 0, 0, 0, 2, 'h', 'i'})               // str32 text message
	f.Add([]byte{0x94, 0x19, 0x01, 0xce, 0, 1, 0, 0, 0xa0})                   // close code 65536
	f.Add([]byte{0x94, 0x17, 0x01, 0xa0, 0x91, 0x92, 0xc4, 0x00, 0xc4, 0x00}) // empty subprotocol
	f.Add([]byte{0x93, 0x0a, 0x00, 0xd3, 0, 0, 0, 0, 0, 0, 0x75, 0x30})       // int64 grace
	f.Add([]byte{0x92, 0xd0, 0x0b, 0xcf, 0, 0, 0, 0, 0, 0, 0, 1})             // int8 type, uint64 sid cancel
	f.Add([]byte{0x94, 0x1a, 0x01, 0xdc, 0, 1, 0x92, 0xc4, 0, 0xc4, 0, 0xc3}) // array16 trailers
	f.Add([]byte{0x93, 0x1b, 0x01, 0xdb, 0, 0, 0, 2, '/', 0xff})              // str32 path, invalid UTF-8
	f.Add([]byte{0x93, 0x1b, 0x01, 0xc4, 0x01, '/'})                          // bin path
	f.Add([]byte{0x93, 0x1c, 0x01, 0x92, 0xc4, 0x01, 'a', 0xa1, 'b'})         // str link
	f.Add([]byte{0x93, 0x1c, 0x01, 0xdd, 0, 0, 0, 1, 0xc6, 0, 0, 0, 0})       // array32, bin32 link
	// WS_CONNECT with flag TLS and a tls item: loose ints, an empty-str name, a nil error.
	f.Add([]byte{0x9e, 0x07, 0x01, 0xa1, '2', 0xa3, 'w', 's', 's', 0xa1, '/', 0xc4, 0x01, '/', 0xc4, 0x00, 0xa0, 0x90,
		0xc0, 0xc0, 0x90, 0xd0, 0x10, 0x95, 0xd2, 0, 0, 3, 4, 0xcd, 0x13, 0x01, 0x91, 0xa1, 'p', 0xa0, 0xc0})
	// HTTP_REQUEST as array32 of 16 items with flag TLS, tls item 95 cd0304 cd1301 90 c0 c0.
	f.Add([]byte{0xdd, 0, 0, 0, 16, 0x02, 0x01, 0xa3, '1', '.', '1', 0xa3, 'G', 'E', 'T', 0xa5, 'h', 't', 't', 'p', 's',
		0xa1, '/', 0xc4, 0x01, '/', 0xc4, 0x00, 0xa0, 0x90, 0xc0, 0xc0, 0x10, 0xc4, 0x00, 0xc2,
		0x95, 0xcd, 0x03, 0x04, 0xcd, 0x13, 0x01, 0x90, 0xc0, 0xc0})
	f.Fuzz(func(t *testing.T, payload []byte) {
		var fr Frame
		if err := fr.Decode(payload); err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownType) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrUnknownType", err)
			}
			return
		}
		want := frameValue(&fr)
		enc, err := appendFrame(nil, &fr)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if int(binary.BigEndian.Uint32(enc)) != len(enc)-PrefixLen {
			t.Fatalf("bad prefix")
		}
		var fr2 Frame
		if err := fr2.Decode(enc[PrefixLen:]); err != nil {
			t.Fatalf("decode of re-encoded %x: %v", enc, err)
		}
		if got := frameValue(&fr2); !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %#v\nwant %#v", got, want)
		}
		enc2, err := appendFrame(nil, &fr2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("not canonical: %x vs %x (%v)", enc, enc2, err)
		}
	})
}

// chunkReader returns the stream in chunks whose sizes come from sizes (cycled).
type chunkReader struct {
	data  []byte
	sizes []byte
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(p)
	if len(c.sizes) > 0 {
		s := int(c.sizes[c.i%len(c.sizes)])
		c.i++
		if s == 0 {
			return 0, nil // an empty read now and then
		}
		n = min(n, s*7)
	}
	n = copy(p, c.data[:min(n, len(c.data))])
	c.data = c.data[n:]
	return n, nil
}

// FuzzReader: arbitrary streams, split arbitrarily, never panic, never grow the buffer beyond
// PrefixLen+maxFrame, and yield exactly the frames of the stream.
func FuzzReader(f *testing.F) {
	var all []byte
	for _, p := range vectorPayloads(f) {
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(p)))
		frame = append(frame, p...)
		all = append(all, frame...)
		f.Add(frame, []byte{1}, uint16(1024))
	}
	f.Add(all, []byte{3, 0, 200, 1}, uint16(300))
	f.Add(all, []byte{}, uint16(65535))
	f.Add([]byte{0, 0, 0, 0}, []byte{}, uint16(10))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 2}, []byte{2}, uint16(10))
	f.Fuzz(func(t *testing.T, stream, sizes []byte, maxFrame uint16) {
		max := int(maxFrame) + 1
		rd := NewReader(&chunkReader{data: stream, sizes: sizes}, max)
		rest := stream
		for {
			p, err := rd.Next()
			if cap(rd.buf) > PrefixLen+max {
				t.Fatalf("buffer %d beyond %d", cap(rd.buf), PrefixLen+max)
			}
			if err != nil {
				switch {
				case err == io.EOF:
					if len(rest) != 0 {
						t.Fatalf("EOF with %d bytes left", len(rest))
					}
				case err == io.ErrUnexpectedEOF:
					if len(rest) == 0 {
						t.Fatalf("unexpected EOF at a boundary")
					}
				case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrEmptyFrame), err == io.ErrNoProgress:
				default:
					t.Fatalf("error %v", err)
				}
				return
			}
			if len(rest) < PrefixLen+len(p) || int(binary.BigEndian.Uint32(rest)) != len(p) ||
				!bytes.Equal(rest[PrefixLen:PrefixLen+len(p)], p) || len(p) == 0 || len(p) > max {
				t.Fatalf("payload of %d bytes does not match the stream", len(p))
			}
			rest = rest[PrefixLen+len(p):]
			var fr Frame
			_ = fr.Decode(p)
		}
	})
}

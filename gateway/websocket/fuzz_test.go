package websocket

import (
	"errors"
	"strings"
	"testing"
)

// FuzzDecoder checks that the Decoder never panics, that n stays within the
// buffer, that errors are *ProtocolError values with a code a server may
// send, and that feeding the input byte by byte (as a trickling client
// would) gives the same events and error as feeding it whole. The first
// input byte picks the configuration: bit 0 enables deflate, bit 1
// client_no_context_takeover, bit 2 a MaxMessage of 200 bytes (else 128 KiB).
func FuzzDecoder(f *testing.F) {
	for _, tc := range decoderCases {
		if len(tc.in) > 4096 {
			continue // big seeds make minimization crawl
		}
		cfg := byte(0)
		if tc.deflate {
			cfg |= 1
		}
		if tc.max != 0 {
			cfg |= 4
		}
		f.Add(append([]byte{cfg}, tc.in...))
	}
	cl := newClient(true)
	f.Add(append([]byte{1}, clientFrames(
		fin(opText|bitRsv1, cl.compress("hello hello hello")),
		frame{b0: opBinary | bitRsv1, payload: cl.compress("hello again")},
		fin(opPing, "p"),
		fin(opContinuation, cl.compress(strings.Repeat("x", 300))),
		fin(opClose, closePayload(1000, "bye")))...))
	f.Add(append([]byte{3}, clientFrames(fin(opText|bitRsv1, newClient(false).compress("abc")))...))
	f.Add(append([]byte{5}, clientFrames(fin(opBinary|bitRsv1, newClient(false).compress(strings.Repeat("\x00", 5000))))...))

	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 || len(in) > 1<<16 {
			return
		}
		cfg, in := in[0], in[1:]
		newDecoder := func() *Decoder {
			// A limit even without bit 2 keeps each run fast: a deflate bomb
			// under the default 16 MiB would make minimization crawl.
			d := &Decoder{MaxMessage: 1 << 17}
			if cfg&4 != 0 {
				d.MaxMessage = 200
			}
			if cfg&1 != 0 {
				d.SetDeflate(&DeflateParams{ServerNoContextTakeover: true, ClientNoContextTakeover: cfg&2 != 0})
			}
			return d
		}
		whole, err1 := decodeAll(t, newDecoder(), in, 0)
		bytewise, err2 := decodeAll(t, newDecoder(), in, 1)
		for _, err := range []error{err1, err2} {
			var pe *ProtocolError
			if err != nil && (!errors.As(err, &pe) || pe.Code != 1002 && pe.Code != 1007 && pe.Code != 1009) {
				t.Fatalf("error %v", err)
			}
		}
		if err1 != err2 {
			t.Fatalf("whole: %v; byte by byte: %v", err1, err2)
		}
		checkEvents(t, bytewise, whole)
		for _, e := range whole {
			switch e.Kind {
			case EventPing, EventPong:
				if len(e.Data) > 125 {
					t.Fatalf("control payload of %d bytes", len(e.Data))
				}
			case EventClose:
				if e.Code != CloseNoStatus && !ValidCloseCode(e.Code) {
					t.Fatalf("close code %d", e.Code)
				}
			case EventText, EventBinary:
				if cfg&4 != 0 && len(e.Data) > 200 {
					t.Fatalf("message of %d bytes over MaxMessage", len(e.Data))
				}
			default:
				t.Fatalf("event kind %d", e.Kind)
			}
		}
		// Round trip: what was decoded, re-encoded by the server side and
		// masked, decodes the same.
		if err1 == nil && len(whole) > 0 {
			var out []byte
			for _, e := range whole {
				switch e.Kind {
				case EventText, EventBinary:
					out = AppendMessage(out, e.Kind == EventText, e.Data, nil)
				case EventPing:
					out = AppendPing(out, e.Data)
				case EventPong:
					out = AppendPong(out, e.Data)
				case EventClose:
					if e.Code == CloseNoStatus {
						out = AppendClose(out, 0, "")
					} else {
						out = AppendClose(out, e.Code, string(e.Data))
					}
				}
			}
			d := &Decoder{}
			again, err := decodeAll(t, d, toClient(t, out), 0)
			if err != nil {
				t.Fatalf("re-encoded: %v", err)
			}
			checkEvents(t, again, whole)
		}
	})
}

package websocket

import (
	"encoding/binary"
	"unicode/utf8"
)

// DefaultMaxMessage is the default limit on the size of an incoming message,
// as uvicorn's --ws-max-size.
const DefaultMaxMessage = 16 << 20

// EventKind is the kind of an Event.
type EventKind int

// Event kinds.
const (
	EventNone EventKind = iota
	EventText
	EventBinary
	EventPing
	EventPong
	EventClose
)

// Event is what a Decoder found: a whole message or a control frame.
type Event struct {
	Kind EventKind
	// Data is the message (text validated as UTF-8, inflated if it was
	// compressed), the ping or pong payload, or the close reason (valid
	// UTF-8). It aliases either the buffer given to Next (unmasked in
	// place) or the Decoder's own buffers, and is valid until the next call
	// to Next or Release, and only while the caller leaves the bytes it
	// gave to Next in place.
	Data []byte
	// Code is, for EventClose, the peer's close code, or CloseNoStatus
	// (1005) if the close frame had no payload.
	Code int
}

// Decoder decodes the frames a client sends into messages and control
// events (RFC 6455 section 5, and RFC 7692 section 7.2 once SetDeflate has
// been called). Its zero value is ready to use, without compression.
//
// A Decoder consumes frame headers only whole (up to 14 bytes) and control
// frames only whole (up to MaxControlFrame bytes); data frame payloads are
// consumed as they arrive. An uncompressed message that arrives as a single
// frame wholly inside the caller's buffer is returned in place without a
// copy; the payloads of fragmented or partially arrived messages are copied
// into an internal buffer, which Release drops.
type Decoder struct {
	// MaxMessage is the largest message accepted, in bytes: for a compressed
	// message its inflated size, while its compressed payload may be a quarter
	// larger (maxCompressed: deflate's framing, a sync flush per fragment, on
	// data that does not compress); 0 means DefaultMaxMessage.
	MaxMessage int64

	// permessage-deflate
	deflate  bool
	takeover bool   // the client may refer to previous messages
	window   int    // dictionary size when takeover
	dict     []byte // last window bytes of inflated messages

	// the data frame whose payload is being consumed
	inFrame  bool
	fin      bool
	remain   int64
	key      [4]byte
	keyPos   int
	msgOpen  bool // a data message has started and not ended
	text     bool
	compress bool
	msg      []byte // payload of the open message received so far
	checked  int    // bytes of msg known to be valid UTF-8
	inflated []byte // output buffer for compressed messages

	closed bool // a close frame was decoded; later bytes are ignored
	err    *ProtocolError
}

// SetDeflate enables inflating messages with RSV1 set, per the negotiated
// params; nil disables it. Call it before the first Next.
func (d *Decoder) SetDeflate(p *DeflateParams) {
	if p == nil {
		d.deflate, d.takeover, d.dict = false, false, nil
		return
	}
	d.deflate = true
	d.takeover = !p.ClientNoContextTakeover
	d.window = maxWindow
	if b := p.ClientMaxWindowBits; b >= 8 && b < 15 {
		// zlib cannot compress with an 8-bit window and uses 9 bits
		// instead, so keep at least 512 bytes.
		d.window = 1 << max(b, 9)
	}
}

func (d *Decoder) maxMessage() int64 {
	if d.MaxMessage > 0 {
		return d.MaxMessage
	}
	return DefaultMaxMessage
}

// maxCompressed is the largest compressed payload of a message: MaxMessage
// and a quarter. A message that inflates to MaxMessage or less may take more
// than that on the wire (a client that flushes each fragment adds 5 bytes to
// each; stored blocks add 5 per 64 KiB), and the compressed bytes are kept
// until the message ends, so they are bounded too.
func (d *Decoder) maxCompressed() int64 {
	m := d.maxMessage()
	return m + m/4 + 1024
}

func (d *Decoder) fail(n int, err *ProtocolError) (int, Event, error) {
	d.err = err
	return n, Event{}, err
}

// Next consumes frames from buf, the unconsumed bytes the caller has, and
// returns how many bytes it consumed and at most one event. An event of kind
// EventNone with a nil error means Next needs more bytes; it may still have
// consumed some (frame headers, payload of a data frame, whole non-final
// fragments), which it keeps. The caller drops the n consumed bytes and
// calls Next again with the rest plus whatever it reads next; it must call
// Next again without reading while the previous call returned an event, as
// buf may hold more frames.
//
// Errors are *ProtocolError values saying how to fail the connection; once
// Next has failed it keeps returning the same error and consumes nothing.
// After an EventClose, Next consumes and ignores everything (the client must
// not send anything after its close frame).
//
// The checks, all in order of arrival: client frames must be masked; RSV2
// and RSV3 must be clear, and RSV1 may be set only on the first frame of a
// data message once deflate is enabled; opcodes must be known; control
// frames must have FIN set and at most 125 bytes of payload and may come
// between the fragments of a message; a continuation frame needs an open
// message and a text or binary frame needs none; a 64-bit length must have
// its most significant bit clear (all 1002); a message must not exceed
// MaxMessage, which is checked from each frame header before its payload is
// buffered, and while inflating (1009); text messages and close reasons must
// be valid UTF-8, and compressed data must inflate (1007); a close payload
// must not be 1 byte long and its code must be ValidCloseCode (1002).
func (d *Decoder) Next(buf []byte) (n int, ev Event, err error) {
	if d.err != nil {
		return 0, Event{}, d.err
	}
	if d.closed {
		return len(buf), Event{}, nil
	}
	for {
		if d.inFrame {
			take := int(min(d.remain, int64(len(buf)-n)))
			if take > 0 {
				start := len(d.msg)
				d.msg = append(d.msg, buf[n:n+take]...)
				d.keyPos = maskBytes(d.key, d.keyPos, d.msg[start:])
				n += take
				d.remain -= int64(take)
				if d.text && !d.compress {
					c, ok := checkUTF8(d.msg[d.checked:])
					if !ok {
						return d.fail(n, errUTF8)
					}
					d.checked += c
				}
			}
			if d.remain > 0 {
				return n, Event{}, nil
			}
			d.inFrame = false
			if d.fin {
				ev, perr := d.finish(d.msg)
				if perr != nil {
					return d.fail(n, perr)
				}
				return n, ev, nil
			}
			continue
		}

		b := buf[n:]
		if len(b) < 2 {
			return n, Event{}, nil
		}
		b0, b1 := b[0], b[1]
		fin, op, l7 := b0&bitFin != 0, b0&0x0F, int(b1&0x7F)
		switch {
		case b0&(bitRsv2|bitRsv3) != 0:
			return d.fail(n, errRsv)
		case op > opBinary && op < opClose || op > opPong:
			return d.fail(n, errOpcode)
		case b0&bitRsv1 != 0 && (!d.deflate || op != opText && op != opBinary):
			return d.fail(n, errRsv1)
		case b1&bitMask == 0:
			return d.fail(n, errUnmasked)
		}

		if op >= opClose {
			switch {
			case !fin:
				return d.fail(n, errControlFragment)
			case l7 > maxControlPayload:
				return d.fail(n, errControlTooLong)
			}
			if len(b) < 6+l7 {
				return n, Event{}, nil
			}
			var key [4]byte
			copy(key[:], b[2:6])
			payload := b[6 : 6+l7]
			maskBytes(key, 0, payload)
			n += 6 + l7
			switch op {
			case opPing:
				return n, Event{Kind: EventPing, Data: payload}, nil
			case opPong:
				return n, Event{Kind: EventPong, Data: payload}, nil
			}
			ev := Event{Kind: EventClose, Code: CloseNoStatus, Data: payload[:0]}
			switch {
			case l7 == 1:
				return d.fail(n, errCloseLength)
			case l7 >= 2:
				ev.Code = int(binary.BigEndian.Uint16(payload))
				ev.Data = payload[2:]
				if !ValidCloseCode(ev.Code) {
					return d.fail(n, errCloseCode)
				}
				if !utf8.Valid(ev.Data) {
					return d.fail(n, errCloseUTF8)
				}
			}
			d.closed = true
			return n, ev, nil
		}

		if op == opContinuation && !d.msgOpen {
			return d.fail(n, errContinuation)
		}
		if op != opContinuation && d.msgOpen {
			return d.fail(n, errInterleaved)
		}
		hdr := 2
		plen := int64(l7)
		switch l7 {
		case 126:
			if len(b) < 4 {
				return n, Event{}, nil
			}
			hdr, plen = 4, int64(binary.BigEndian.Uint16(b[2:]))
		case 127:
			if len(b) < 10 {
				return n, Event{}, nil
			}
			u := binary.BigEndian.Uint64(b[2:])
			if u>>63 != 0 {
				return d.fail(n, errLength)
			}
			hdr, plen = 10, int64(u)
		}
		have, limit := int64(0), d.maxMessage()
		if op == opContinuation {
			have = int64(len(d.msg))
			if d.compress {
				limit = d.maxCompressed()
			}
		} else if b0&bitRsv1 != 0 {
			limit = d.maxCompressed() // (the inflated size is checked as it inflates)
		}
		if plen > limit-have {
			return d.fail(n, errTooBig)
		}
		if len(b) < hdr+4 {
			return n, Event{}, nil
		}

		if op != opContinuation && fin && plen <= int64(len(b)-hdr-4) {
			// The whole message is one frame in buf: decode it in place.
			var key [4]byte
			copy(key[:], b[hdr:hdr+4])
			payload := b[hdr+4 : hdr+4+int(plen)]
			maskBytes(key, 0, payload)
			n += hdr + 4 + int(plen)
			d.text, d.compress = op == opText, b0&bitRsv1 != 0
			d.checked = 0
			ev, perr := d.finish(payload)
			if perr != nil {
				return d.fail(n, perr)
			}
			return n, ev, nil
		}

		if op != opContinuation {
			d.msgOpen = true
			d.text, d.compress = op == opText, b0&bitRsv1 != 0
			d.msg = d.msg[:0]
			d.checked = 0
		}
		copy(d.key[:], b[hdr:hdr+4])
		d.inFrame, d.fin, d.remain, d.keyPos = true, fin, plen, 0
		n += hdr + 4
	}
}

// finish completes the message whose whole payload is p.
func (d *Decoder) finish(p []byte) (Event, *ProtocolError) {
	d.msgOpen = false
	kind := EventBinary
	if d.text {
		kind = EventText
	}
	if d.compress {
		var dict []byte
		if d.takeover {
			dict = d.dict
		}
		out, err := inflate(d.inflated[:0], p, dict, int(d.maxMessage()))
		d.inflated = out
		if err != nil {
			return Event{}, err
		}
		if d.takeover {
			if d.dict == nil {
				d.dict = make([]byte, 0, d.window)
			}
			d.dict = slideWindow(d.dict, out, d.window)
		}
		if d.text && !utf8.Valid(out) {
			return Event{}, errUTF8
		}
		return Event{Kind: kind, Data: out}, nil
	}
	if d.text && !utf8.Valid(p[d.checked:]) {
		return Event{}, errUTF8
	}
	return Event{Kind: kind, Data: p}, nil
}

// Release drops the Decoder's message buffers, which may have grown to
// MaxMessage, so that an idle connection holds little memory: call it when
// the connection goes idle after a large message. Data of the last event
// becomes invalid if it was in those buffers. The payload of a message still
// arriving is kept, as is the inflate dictionary with context takeover
// (at most 32 KiB).
func (d *Decoder) Release() {
	if !d.msgOpen {
		d.msg = nil
	}
	d.inflated = nil
}

// Retained reports how many bytes of buffer the Decoder holds, for a caller
// deciding when to Release.
func (d *Decoder) Retained() int {
	return cap(d.msg) + cap(d.inflated) + cap(d.dict)
}

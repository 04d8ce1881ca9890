package websocket

import (
	"compress/flate"
	"io"
	"slices"
	"sync"
)

// DeflateParams are the negotiated permessage-deflate parameters (RFC 7692
// section 7.1), as the server answers them. A zero window size means the
// parameter is not in the answer (a 32 KiB window, 15 bits).
//
// We always answer server_no_context_takeover (section 7.1.1.1 allows the
// server to add it unrequested), so each outgoing message is compressed
// independently with a pooled flate.Writer and a connection keeps no
// compressor state. Incoming messages honour the client's context takeover
// unless client_no_context_takeover was negotiated: the Decoder then keeps
// the last 32 KiB of inflated data as the dictionary for the next message.
type DeflateParams struct {
	ServerNoContextTakeover bool
	ClientNoContextTakeover bool
	ServerMaxWindowBits     int // 8-15, or 0
	ClientMaxWindowBits     int // 8-15, or 0
}

const (
	// minCompress is the smallest message worth compressing; smaller ones
	// are sent uncompressed (RSV1 clear), as section 6.1 allows.
	minCompress = 64
	// compressLevel trades ratio for speed: with level 1 resetting a
	// flate.Writer for each message is cheap, while levels 2-9 clear about
	// 640 KB of hash tables on every Reset.
	compressLevel = flate.BestSpeed
	maxWindow     = 1 << 15
)

// Compressor compresses outgoing messages for one connection. It holds no
// compression state (see DeflateParams) and is safe for concurrent use.
type Compressor struct {
	max int // longest message we may compress: the negotiated server window
}

// NewCompressor returns a Compressor for the negotiated parameters, or nil
// (no compression) when p is nil.
func NewCompressor(p *DeflateParams) *Compressor {
	if p == nil {
		return nil
	}
	c := &Compressor{max: -1}
	if p.ServerMaxWindowBits >= 8 && p.ServerMaxWindowBits < 15 {
		// flate always uses a 32 KiB window; a message no longer than the
		// negotiated window cannot refer further back than it.
		c.max = 1 << p.ServerMaxWindowBits
	}
	return c
}

func (c *Compressor) worth(n int) bool {
	return n >= minCompress && (c.max < 0 || n <= c.max)
}

// appendWriter is an io.Writer appending to b.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// pooledWriter is a flate.Writer bound to its own destination, so that a
// pooled writer references no connection's memory.
type pooledWriter struct {
	fw  *flate.Writer
	dst appendWriter
}

var writerPool = sync.Pool{New: func() any {
	w := new(pooledWriter)
	w.fw, _ = flate.NewWriter(&w.dst, compressLevel)
	return w
}}

// syncTail is the end of a sync flush: an empty stored block's LEN and NLEN.
const syncTail = "\x00\x00\xff\xff"

// appendCompressed appends data as one compressed message frame, or as an
// uncompressed one if compression does not make it smaller.
func (c *Compressor) appendCompressed(dst []byte, op byte, data []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, 10)...) // room for the longest header
	w := writerPool.Get().(*pooledWriter)
	w.dst.b = dst
	w.fw.Reset(&w.dst)
	w.fw.Write(data) // appendWriter never fails
	w.fw.Flush()
	dst = w.dst.b
	w.dst.b = nil
	writerPool.Put(w)

	// RFC 7692 section 7.2.1: remove the sync flush's 00 00 ff ff.
	if len(dst) >= start+10+4 && string(dst[len(dst)-4:]) == syncTail {
		dst = dst[:len(dst)-4]
	}
	n := len(dst) - start - 10
	if n >= len(data) {
		dst = appendFrameHeader(dst[:start], bitFin|op, len(data))
		return append(dst, data...)
	}
	h := frameHeaderLen(n)
	copy(dst[start+h:], dst[start+10:])
	appendFrameHeader(dst[:start], bitFin|bitRsv1|op, n)
	return dst[:start+h+n]
}

// inflateTail completes a compressed message for the decompressor: the sync
// flush tail removed by the sender (RFC 7692 section 7.2.2), then an empty
// final stored block, so that a complete message ends in io.EOF and a
// truncated one in an error.
const inflateTail = syncTail + "\x01\x00\x00\xff\xff"

// inflateSrc feeds a compressed message and inflateTail to a decompressor.
// It implements io.ByteReader, so that flate reads no further than it needs
// and adds no bufio.Reader.
type inflateSrc struct {
	b    []byte
	tail int // bytes of inflateTail already read
}

func (s *inflateSrc) Read(p []byte) (int, error) {
	if len(s.b) > 0 {
		n := copy(p, s.b)
		s.b = s.b[n:]
		return n, nil
	}
	if s.tail == len(inflateTail) {
		return 0, io.EOF
	}
	n := copy(p, inflateTail[s.tail:])
	s.tail += n
	return n, nil
}

func (s *inflateSrc) ReadByte() (byte, error) {
	if len(s.b) > 0 {
		c := s.b[0]
		s.b = s.b[1:]
		return c, nil
	}
	if s.tail == len(inflateTail) {
		return 0, io.EOF
	}
	c := inflateTail[s.tail]
	s.tail++
	return c, nil
}

// pooledReader is a flate decompressor bound to its own source.
type pooledReader struct {
	fr  io.ReadCloser
	src inflateSrc
}

var readerPool = sync.Pool{New: func() any {
	r := new(pooledReader)
	r.src.tail = len(inflateTail)
	r.fr = flate.NewReader(&r.src)
	return r
}}

// inflate appends the decompressed message in to out, with dict as the
// preceding data (nil without context takeover). It fails with errTooBig as
// soon as the output exceeds limit, having allocated at most about limit
// bytes, and with errCompressed if in is not a complete sync-flushed deflate
// stream.
func inflate(out, in, dict []byte, limit int) ([]byte, *ProtocolError) {
	r := readerPool.Get().(*pooledReader)
	defer readerPool.Put(r)
	r.src = inflateSrc{b: in}
	if err := r.fr.(flate.Resetter).Reset(&r.src, dict); err != nil {
		return out, errCompressed
	}
	defer func() { r.src.b = nil }()
	for {
		if len(out) == cap(out) {
			if len(out) > limit {
				return out, errTooBig
			}
			// Grow geometrically, but never past limit+1: one byte over is
			// enough to know the message is too big.
			more := min(max(cap(out), 4096), limit+1-len(out))
			out = slices.Grow(out, more)
		}
		n, err := r.fr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if len(out) > limit {
			return out, errTooBig
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, errCompressed
		}
	}
}

// slideWindow appends data to the dictionary dict, keeping its last size
// bytes; dict has capacity size.
func slideWindow(dict, data []byte, size int) []byte {
	if len(data) >= size {
		dict = dict[:size]
		copy(dict, data[len(data)-size:])
		return dict
	}
	if keep := size - len(data); len(dict) > keep {
		copy(dict, dict[len(dict)-keep:])
		dict = dict[:keep]
	}
	return append(dict, data...)
}

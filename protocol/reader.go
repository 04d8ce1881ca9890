package protocol

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// initialBuffer is the Reader's starting buffer size.
const initialBuffer = 64 << 10

// maxEmptyReads is how many (0, nil) reads in a row Next tolerates before io.ErrNoProgress.
const maxEmptyReads = 100

// Reader reads frames from a byte stream (a Unix socket). It is not safe for concurrent use.
type Reader struct {
	r        io.Reader
	buf      []byte
	start    int // first byte not yet returned
	end      int // end of the bytes read
	maxFrame int
	err      error // sticky error of the underlying reader
	fatal    error // sticky framing error (too large, empty)
}

// NewReader returns a Reader of frames whose payloads are at most maxFrame bytes (<= 0 means
// DefaultMaxFrame; values above the u32 range are clamped). Its buffer starts at 64 KiB and grows
// up to PrefixLen+maxFrame, never beyond.
func NewReader(r io.Reader, maxFrame int) *Reader {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	if uint64(maxFrame) > math.MaxUint32 {
		maxFrame = math.MaxUint32
	}
	return &Reader{r: r, buf: make([]byte, min(initialBuffer, PrefixLen+maxFrame)), maxFrame: maxFrame}
}

// Next returns the next payload (without prefix). It is valid until the next call. Errors:
// io.EOF at a frame boundary, io.ErrUnexpectedEOF inside a frame, ErrFrameTooLarge (checked
// from the prefix, before reading or allocating the payload), ErrEmptyFrame for length 0, or the
// underlying reader's error. Framing errors are sticky: the connection is unusable after them.
// Each read fills the whole free buffer, so one read yields many frames under load.
func (r *Reader) Next() ([]byte, error) {
	if r.fatal != nil {
		return nil, r.fatal
	}
	if r.start == r.end {
		r.start, r.end = 0, 0
	}
	if err := r.fill(PrefixLen, true); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(r.buf[r.start:])
	if n == 0 {
		r.fatal = fmt.Errorf("protocol: frame length 0: %w", ErrEmptyFrame)
		return nil, r.fatal
	}
	if uint64(n) > uint64(r.maxFrame) {
		r.fatal = fmt.Errorf("protocol: frame length %d, limit %d: %w", n, r.maxFrame, ErrFrameTooLarge)
		return nil, r.fatal
	}
	need := PrefixLen + int(n)
	if err := r.fill(need, false); err != nil {
		return nil, err
	}
	p := r.buf[r.start+PrefixLen : r.start+need : r.start+need]
	r.start += need
	return p, nil
}

// fill makes at least n bytes available from r.start, reading as much as fits per read call.
// atBoundary says whether running out of input with nothing buffered is a clean io.EOF.
func (r *Reader) fill(n int, atBoundary bool) error {
	if r.end-r.start >= n {
		return nil
	}
	// Make room: move the partial frame to the front (so each read gets the whole free buffer),
	// growing the buffer when the frame does not fit.
	if n > len(r.buf) {
		size := min(max(2*len(r.buf), n), PrefixLen+r.maxFrame)
		nb := make([]byte, size)
		r.end = copy(nb, r.buf[r.start:r.end])
		r.start = 0
		r.buf = nb
	} else if r.start > 0 {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	empty := 0
	for r.end-r.start < n {
		if r.err != nil {
			if r.err == io.EOF {
				if atBoundary && r.end == r.start {
					return io.EOF
				}
				return io.ErrUnexpectedEOF
			}
			return r.err
		}
		m, err := r.r.Read(r.buf[r.end:])
		if m < 0 || m > len(r.buf)-r.end {
			r.err = fmt.Errorf("protocol: reader returned %d bytes: %w", m, io.ErrShortBuffer)
			continue
		}
		r.end += m
		if err != nil {
			r.err = err
		} else if m == 0 {
			if empty++; empty >= maxEmptyReads {
				r.err = io.ErrNoProgress
			}
		} else {
			empty = 0
		}
	}
	return nil
}

// Buffered reports how many bytes beyond the last returned payload are already in memory; 0
// means the next Next will block on a read. (A non-zero count may still be a partial frame: see
// Ready.)
func (r *Reader) Buffered() int { return r.end - r.start }

// Ready reports whether the next Next returns without reading: a whole frame (or a length prefix
// that Next rejects, or the underlying reader's final error) is buffered.
func (r *Reader) Ready() bool {
	if r.fatal != nil || r.err != nil {
		return true
	}
	if r.end-r.start < PrefixLen {
		return false
	}
	n := binary.BigEndian.Uint32(r.buf[r.start:])
	if n == 0 || uint64(n) > uint64(r.maxFrame) {
		return true
	}
	return r.end-r.start >= PrefixLen+int(n)
}

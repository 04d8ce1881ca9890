package http1

import (
	"bytes"
	"math"
)

const (
	maxChunkLine    = 4096  // chunk-size line, extensions included, CRLF excluded
	maxTrailerBytes = 16384 // trailer section, every CRLF included
)

// Decoder states.
const (
	chunkSize    uint8 = iota // expecting a chunk-size line
	chunkData                 // inside chunk data
	chunkDataEnd              // expecting the CRLF after chunk data
	chunkTrailer              // expecting a trailer field line or the final CRLF
	chunkDone
)

// ChunkedDecoder decodes a chunked request body (RFC 9112 7.1)
// incrementally. Its zero value is ready to use; Reset makes it ready for the
// next body.
//
// Framing lines are consumed only when complete, so the caller must keep
// unconsumed bytes and present them again with more appended: a chunk-size
// line may be up to 4098 bytes and a trailer line up to 16 KiB.
//
// Unlike request heads, chunked framing requires exact CRLF line endings:
// a bare LF (or anything else) after chunk data, on a chunk-size line, or on
// a trailer line is an error.
type ChunkedDecoder struct {
	state     uint8
	remaining uint64 // chunk data bytes still to come
	trailer   int    // trailer bytes consumed so far
	err       error
}

// Reset makes d ready to decode a new body.
func (d *ChunkedDecoder) Reset() { *d = ChunkedDecoder{} }

// Decode consumes framing and data from src. It returns how many bytes of src
// it consumed, the body data found (a sub-slice of src; may be empty), and
// done=true once the last chunk and the trailer section have been consumed;
// bytes after that belong to the next message. n == 0 with no data and no
// error means src holds no complete framing element yet (call again with more
// bytes). Errors are *Error{400, ...}; once Decode has failed it keeps
// returning the same error. A call returns at most one run of data, and never
// data together with an error.
func (d *ChunkedDecoder) Decode(src []byte) (n int, data []byte, done bool, err error) {
	if d.err != nil {
		return 0, nil, false, d.err
	}
	for {
		switch d.state {
		case chunkDone:
			return n, data, true, nil

		case chunkSize:
			size, m, err := parseChunkLine(src[n:])
			if err != nil {
				return d.fail(n, data, err)
			}
			if m == 0 {
				return n, data, false, nil
			}
			n += m
			if size == 0 {
				d.state = chunkTrailer
			} else {
				d.state, d.remaining = chunkData, size
			}

		case chunkData:
			if data != nil || n == len(src) {
				return n, data, false, nil
			}
			k := len(src) - n
			if uint64(k) > d.remaining {
				k = int(d.remaining)
			}
			data = src[n : n+k]
			n += k
			d.remaining -= uint64(k)
			if d.remaining == 0 {
				d.state = chunkDataEnd
			}

		case chunkDataEnd:
			rest := src[n:]
			if len(rest) > 0 && rest[0] != '\r' || len(rest) > 1 && rest[1] != '\n' {
				return d.fail(n, data, errChunkDataEnd)
			}
			if len(rest) < 2 {
				return n, data, false, nil
			}
			n += 2
			d.state = chunkSize

		case chunkTrailer:
			m, err := parseTrailerLine(src[n:], maxTrailerBytes-d.trailer)
			if err != nil {
				return d.fail(n, data, err)
			}
			if m == 0 {
				return n, data, false, nil
			}
			n += m
			d.trailer += m
			if m == 2 {
				d.state = chunkDone
			}
		}
	}
}

// fail reports err, unless data was already found in this call: then the
// data is returned first and the error on the next call, which will run into
// it again.
func (d *ChunkedDecoder) fail(n int, data []byte, err error) (int, []byte, bool, error) {
	if data != nil {
		return n, data, false, nil
	}
	d.err = err
	return n, nil, false, err
}

// findLineEnd finds the CRLF ending the line at the start of b, looking at no
// more than limit content bytes. It returns the index of the CR, or -1 if the
// line is not complete yet, or an error for a bare CR or LF or for more than
// limit content bytes.
func findLineEnd(b []byte, limit int, tooLong error) (int, error) {
	w := b[:max(0, min(len(b), limit+1))]
	cr, lf := bytes.IndexByte(w, '\r'), bytes.IndexByte(w, '\n')
	switch {
	case lf >= 0 && (cr < 0 || lf < cr):
		return 0, errChunkLineEnd
	case cr >= 0:
		if cr+1 == len(b) {
			return -1, nil
		}
		if b[cr+1] != '\n' {
			return 0, errChunkLineEnd
		}
		return cr, nil
	case len(b) > limit:
		return 0, tooLong
	}
	return -1, nil
}

// parseChunkLine parses chunk-size [chunk-ext] CRLF at the start of b. It
// returns the size and the length of the line including CRLF, or m == 0 if
// the line is incomplete.
func parseChunkLine(b []byte) (size uint64, m int, err error) {
	end, err := findLineEnd(b, maxChunkLine, errChunkLineLen)
	if end < 0 || err != nil {
		return 0, 0, err
	}
	line := b[:end]
	i := 0
	for ; i < len(line); i++ {
		v := unhex[line[i]]
		if v == 0xFF {
			break
		}
		if i == 16 {
			return 0, 0, errChunkOverflow
		}
		size = size<<4 | uint64(v)
	}
	if i == 0 {
		return 0, 0, errChunkSize
	}
	if size > math.MaxInt64 {
		return 0, 0, errChunkOverflow
	}
	if !validChunkExt(line[i:]) {
		if line[i] == ' ' || line[i] == '\t' || line[i] == ';' {
			return 0, 0, errChunkExt
		}
		return 0, 0, errChunkSize
	}
	return size, end + 2, nil
}

// validChunkExt reports whether b is a valid chunk-ext:
//
//	chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//	chunk-ext-val = token / quoted-string
func validChunkExt(b []byte) bool {
	for len(b) > 0 {
		b = trimLeftWS(b)
		if len(b) == 0 || b[0] != ';' {
			return false
		}
		b = trimLeftWS(b[1:])
		n := tokenLen(b)
		if n == 0 {
			return false
		}
		b = b[n:]
		if v := trimLeftWS(b); len(v) > 0 && v[0] == '=' {
			v = trimLeftWS(v[1:])
			if len(v) > 0 && v[0] == '"' {
				n = quotedStringLen(v)
			} else {
				n = tokenLen(v)
			}
			if n <= 0 {
				return false
			}
			b = v[n:]
		}
	}
	return true
}

func trimLeftWS(b []byte) []byte {
	for len(b) > 0 && isWS(b[0]) {
		b = b[1:]
	}
	return b
}

// quotedStringLen returns the length of the quoted-string at the start of b
// (which starts with '"'), or -1 if it is not terminated or contains a
// forbidden byte.
func quotedStringLen(b []byte) int {
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			i++
			if i == len(b) || byteClass[b[i]]&classValue == 0 {
				return -1
			}
		case byteClass[c]&classValue == 0:
			return -1
		}
	}
	return -1
}

// parseTrailerLine parses one trailer field line, or the final empty line,
// at the start of b; budget is how many trailer bytes may still be consumed.
// It returns the length of the line including CRLF (2 for the final line),
// or 0 if the line is incomplete.
func parseTrailerLine(b []byte, budget int) (int, error) {
	end, err := findLineEnd(b, budget-2, errTrailerLen)
	if end < 0 || err != nil {
		return 0, err
	}
	if end > 0 {
		if _, _, err := parseField(b[:end], false); err != nil {
			return 0, errTrailer
		}
	}
	return end + 2, nil
}

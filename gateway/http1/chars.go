package http1

import "encoding/binary"

// Byte classes, as 256-entry tables so that the hot loops do one load per
// byte and no branches on ranges.
const (
	classToken   = 1 << iota // tchar (RFC 9110 5.6.2)
	classTarget              // visible ASCII allowed in a request-target: 0x21-0x7E except '#'
	classRegName             // unreserved, sub-delims: a reg-name's bytes but pct-encoded (RFC 3986 3.2.2)
	classValue               // field-vchar, SP, HTAB, obs-text: anything but CTLs other than HTAB
	classPathBad             // not allowed raw in a request-target's path (validPath)
)

var byteClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		var k uint8
		if c >= 0x21 && c <= 0x7E && c != '#' {
			k |= classTarget
		}
		if c == '\t' || (c >= 0x20 && c != 0x7F) {
			k |= classValue
		}
		t[c] = k
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
		t[c] |= classToken
	}
	for _, c := range []byte("-._~!$&'()*+,;=0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
		t[c] |= classRegName
	}
	for _, c := range []byte("\"<>`{}") {
		t[c] |= classPathBad
	}
	return t
}()

// unhex maps a hex digit to its value and anything else to 0xFF.
var unhex = func() (t [256]uint8) {
	for c := range t {
		t[c] = 0xFF
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = uint8(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = uint8(c - 'a' + 10)
		t[c-'a'+'A'] = uint8(c - 'a' + 10)
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if byteClass[c]&classToken == 0 {
			return false
		}
	}
	return true
}

// HasLower reports whether b holds an ASCII lowercase letter (a method that is not all uppercase).
func HasLower[T ~string | ~[]byte](b T) bool {
	for i := 0; i < len(b); i++ {
		if c := b[i]; 'a' <= c && c <= 'z' {
			return true
		}
	}
	return false
}

// tokenLen returns the length of the token at the start of b.
func tokenLen(b []byte) int {
	for i, c := range b {
		if byteClass[c]&classToken == 0 {
			return i
		}
	}
	return len(b)
}

// equal reports whether b is exactly s.
func equal(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if b[i] != s[i] {
			return false
		}
	}
	return true
}

// equalFold reports whether b equals the lower-case ASCII string lower,
// ignoring ASCII case.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func hasPrefixFold(b []byte, lower string) bool {
	return len(b) >= len(lower) && equalFold(b[:len(lower)], lower)
}

func isWS(c byte) bool { return c == ' ' || c == '\t' }

// trimOWS removes leading and trailing SP and HTAB.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && isWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// nextElement splits the comma-separated list at its first comma. It returns
// the first element with OWS trimmed, the rest after the comma, and whether
// there was a comma (so that a trailing empty element is still seen).
func nextElement(list []byte) (elem, rest []byte, more bool) {
	for i, c := range list {
		if c == ',' {
			return trimOWS(list[:i]), list[i+1:], true
		}
	}
	return trimOWS(list), nil, false
}

// Word-at-a-time tests (SWAR) for the long runs of a head: field values and
// request-targets. Each reports exactly whether any byte of the 8-byte word x
// has the property.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// hasLess reports whether a byte of x is less than n (n <= 128).
func hasLess(x uint64, n byte) bool { return (x-lsb*uint64(n))&^x&msb != 0 }

// hasByte reports whether a byte of x equals c.
func hasByte(x uint64, c byte) bool { return hasLess(x^(lsb*uint64(c)), 1) }

// validValue reports whether b contains only field-value bytes: no CTL other
// than HTAB.
func validValue(b []byte) bool {
	for len(b) >= 8 {
		if x := binary.LittleEndian.Uint64(b); hasLess(x, 0x20) || hasByte(x, 0x7F) {
			for _, c := range b[:8] { // HTAB, or an error
				if byteClass[c]&classValue == 0 {
					return false
				}
			}
		}
		b = b[8:]
	}
	for _, c := range b {
		if byteClass[c]&classValue == 0 {
			return false
		}
	}
	return true
}

// validTarget reports whether b contains only request-target bytes: visible
// ASCII other than '#'.
func validTarget(b []byte) bool {
	for len(b) >= 8 {
		x := binary.LittleEndian.Uint64(b)
		if hasLess(x, 0x21) || x&msb != 0 || hasByte(x, 0x7F) || hasByte(x, '#') {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if byteClass[c]&classTarget == 0 {
			return false
		}
	}
	return true
}

// validPath reports whether a request-target's path part (before any '?') is free of the bytes
// outside RFC 3986's pchar that every common client percent-encodes in a path: '"', '<', '>', '`',
// '{' and '}' (browsers: the WHATWG URL path percent-encode set; Python's requests and httpx too).
// RFC 9112 §3.2 says a recipient of an invalid request-line SHOULD answer 400. '|', '\' and '^',
// outside pchar too, are left alone: browsers send '|' and '^' raw. So is the query, which
// browsers and curl send with raw '{', '}' and '"' (curl -g 'http://h/?q={"a":1}'), as uvicorn, h11
// and nginx take them.
func validPath(b []byte) bool {
	for _, c := range b {
		if byteClass[c]&classPathBad != 0 {
			return false
		}
	}
	return true
}

// Exported forms of the field-value helpers, for the other engines' header handling (WebSocket
// handshake, response headers), so that the rules live in one place.

// IsToken reports whether b is a non-empty RFC 9110 token.
func IsToken(b []byte) bool { return isToken(b) }

// TokenLen returns the length of the token at the start of b.
func TokenLen(b []byte) int { return tokenLen(b) }

// EqualFold reports whether b equals lower (which must be lower-case ASCII), ignoring ASCII case.
func EqualFold(b []byte, lower string) bool { return equalFold(b, lower) }

// TrimOWS removes leading and trailing SP and HTAB.
func TrimOWS(b []byte) []byte { return trimOWS(b) }

// NextElement splits a comma-separated list at its first comma: the first element (OWS trimmed),
// the rest, and whether there was a comma.
func NextElement(list []byte) (elem, rest []byte, more bool) { return nextElement(list) }

// HasToken reports whether a comma-separated field value lists token (ASCII case-insensitively).
func HasToken(v []byte, lower string) bool {
	for more := true; more && len(v) > 0; {
		var e []byte
		e, v, more = nextElement(v)
		if equalFold(e, lower) {
			return true
		}
	}
	return false
}

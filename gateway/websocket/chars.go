package websocket

// tchar (RFC 9110 section 5.6.2).
var tokenChar = func() (t [256]bool) {
	for _, c := range []byte("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	return len(b) > 0 && tokenLen(b) == len(b)
}

// tokenLen returns the length of the token at the start of b.
func tokenLen(b []byte) int {
	for i, c := range b {
		if !tokenChar[c] {
			return i
		}
	}
	return len(b)
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
// there was a comma.
func nextElement(list []byte) (elem, rest []byte, more bool) {
	for i, c := range list {
		if c == ',' {
			return trimOWS(list[:i]), list[i+1:], true
		}
	}
	return trimOWS(list), nil, false
}

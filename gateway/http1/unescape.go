package http1

// AppendUnescapedPath appends the percent-decoding of raw to dst as valid
// UTF-8. Byte sequences that are not valid UTF-8 after decoding become U+FFFD,
// one per maximal subpart of an ill-formed sequence (Unicode's recommended
// practice), exactly as Python's urllib.parse.unquote(s, errors="replace")
// does. ok is false, and dst is returned unchanged, if raw contains a '%' not
// followed by two hex digits.
func AppendUnescapedPath(dst, raw []byte) (out []byte, ok bool) {
	plain := true // no '%' and no byte >= 0x80: raw is its own decoding
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '%':
			if i+2 >= len(raw) || unhex[raw[i+1]] == 0xFF || unhex[raw[i+2]] == 0xFF {
				return dst, false
			}
			plain = false
			i += 2
		case c >= 0x80:
			plain = false
		}
	}
	if plain {
		return append(dst, raw...), true
	}
	for p := 0; p < len(raw); {
		b, q := decodedAt(raw, p)
		if b < 0x80 {
			dst = append(dst, b)
			p = q
			continue
		}
		need, lo, hi := utf8Lead(b)
		if need == 0 {
			dst = append(dst, "\uFFFD"...)
			p = q
			continue
		}
		// Check the continuation bytes; the first one out of range ends
		// the maximal subpart and is not consumed.
		r := q
		valid := true
		for k := 0; k < need; k++ {
			if r == len(raw) {
				valid = false
				break
			}
			c, r2 := decodedAt(raw, r)
			if c < lo || c > hi {
				valid = false
				break
			}
			r = r2
			lo, hi = 0x80, 0xBF
		}
		if !valid {
			dst = append(dst, "\uFFFD"...)
			p = r
			continue
		}
		for p < r {
			b, p = decodedAt(raw, p)
			dst = append(dst, b)
		}
	}
	return dst, true
}

// decodedAt returns the decoded byte at raw[p] (which has been checked to be
// well-formed) and the position after it.
func decodedAt(raw []byte, p int) (byte, int) {
	if raw[p] == '%' {
		return unhex[raw[p+1]]<<4 | unhex[raw[p+2]], p + 3
	}
	return raw[p], p + 1
}

// utf8Lead returns, for a non-ASCII byte, how many continuation bytes it
// needs and the allowed range of the first one (Unicode table 3-7); need is
// 0 if b cannot start a sequence.
func utf8Lead(b byte) (need int, lo, hi byte) {
	switch {
	case b >= 0xC2 && b <= 0xDF:
		return 1, 0x80, 0xBF
	case b == 0xE0:
		return 2, 0xA0, 0xBF
	case b == 0xED:
		return 2, 0x80, 0x9F
	case b >= 0xE1 && b <= 0xEF:
		return 2, 0x80, 0xBF
	case b == 0xF0:
		return 3, 0x90, 0xBF
	case b >= 0xF1 && b <= 0xF3:
		return 3, 0x80, 0xBF
	case b == 0xF4:
		return 3, 0x80, 0x8F
	}
	return 0, 0, 0
}

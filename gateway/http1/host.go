package http1

// The syntax of a Host field value and of an absolute-form authority (RFC 9110 7.2 and 4.2,
// RFC 3986 3.2.2-3.2.3; userinfo is refused, RFC 9110 4.2.4):
//
//	Host        = uri-host [ ":" port ]
//	uri-host    = IP-literal / IPv4address / reg-name
//	IP-literal  = "[" ( IPv6address / IPvFuture ) "]"
//	IPvFuture   = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
//	reg-name    = *( unreserved / pct-encoded / sub-delims )
//	port        = *DIGIT
//
// An IPv4address is also a reg-name, so it needs no check of its own outside brackets. The
// RFC 6874 zone identifier ("[fe80::1%25eth0]") is not part of this grammar and is refused.
//
// Port numbers above 65535 are refused too: the grammar allows any number of digits, but no
// client means such a port, and an app that parses the value as a TCP port would fail on it.
// Leading zeros are allowed ("a:0080" is port 80), so the check is on the value, which is never
// accumulated past 65535: any number of digits is safe.

// ValidHost reports whether v is a valid Host field value (or HTTP/2 :authority without
// userinfo), as the parser checks Host: see validHost.
func ValidHost(v string) bool {
	return validHost([]byte(v))
}

// validHost reports whether b is a valid Host field value: uri-host [ ":" port ], where
// uri-host may be empty (an empty value is valid).
func validHost(b []byte) bool {
	if len(b) > 0 && b[0] == '[' {
		return validIPLiteralHost(b)
	}
	// reg-name, then the port. The loop is the hot path: one table load per byte of an
	// ordinary name.
	for i := 0; i < len(b); i++ {
		c := b[i]
		if byteClass[c]&classRegName != 0 {
			continue
		}
		switch c {
		case '%':
			if i+2 >= len(b) || unhex[b[i+1]] == 0xFF || unhex[b[i+2]] == 0xFF {
				return false
			}
			i += 2
		case ':':
			return validPort(b[i+1:])
		default:
			return false
		}
	}
	return true
}

// validIPLiteralHost reports whether b, which starts with '[', is IP-literal [ ":" port ].
func validIPLiteralHost(b []byte) bool {
	end := 1
	for end < len(b) && b[end] != ']' {
		end++
	}
	if end == len(b) || !validIPv6(b[1:end]) && !validIPvFuture(b[1:end]) {
		return false
	}
	rest := b[end+1:]
	if len(rest) == 0 {
		return true
	}
	return rest[0] == ':' && validPort(rest[1:])
}

// validPort reports whether p is *DIGIT with a value of at most 65535.
func validPort(p []byte) bool {
	n := 0
	for _, c := range p {
		if !isDigit(c) {
			return false
		}
		if n = n*10 + int(c-'0'); n > 65535 {
			return false
		}
	}
	return true
}

// validIPv6 reports whether b is an IPv6address (RFC 3986 3.2.2): eight h16 pieces of 1 to 4
// hex digits separated by ':', the last two of which may be an IPv4address, or fewer pieces
// with one "::" standing for at least one piece of zeros.
func validIPv6(b []byte) bool {
	pieces, ellipsis := 0, false
	if len(b) >= 2 && b[0] == ':' && b[1] == ':' {
		b, ellipsis = b[2:], true
		if len(b) == 0 {
			return true // "::"
		}
	}
	for {
		n := 0
		for n < len(b) && n < 4 && unhex[b[n]] != 0xFF {
			n++
		}
		if n < len(b) && b[n] == '.' {
			// ls32 as an IPv4address: the rest of b, two pieces.
			if !validIPv4(b) {
				return false
			}
			pieces += 2
			break
		}
		if n == 0 {
			return false
		}
		pieces++
		b = b[n:]
		if len(b) == 0 {
			break
		}
		if b[0] != ':' || len(b) == 1 {
			return false // a fifth hex digit, another byte, or a ':' at the end
		}
		b = b[1:]
		if b[0] == ':' {
			if ellipsis {
				return false
			}
			b, ellipsis = b[1:], true
			if len(b) == 0 {
				break
			}
		}
	}
	if ellipsis {
		return pieces <= 7
	}
	return pieces == 8
}

// validIPv4 reports whether b is an IPv4address: four dec-octets (0 to 255, no leading zeros)
// separated by '.'.
func validIPv4(b []byte) bool {
	for k := range 4 {
		if k > 0 {
			if len(b) == 0 || b[0] != '.' {
				return false
			}
			b = b[1:]
		}
		n, v := 0, 0
		for n < len(b) && n < 3 && isDigit(b[n]) {
			v = v*10 + int(b[n]-'0')
			n++
		}
		if n == 0 || v > 255 || n > 1 && b[0] == '0' {
			return false
		}
		b = b[n:]
	}
	return len(b) == 0
}

// validIPvFuture reports whether b is an IPvFuture: "v" 1*HEXDIG "." 1*( unreserved /
// sub-delims / ":" ).
func validIPvFuture(b []byte) bool {
	if len(b) == 0 || b[0] != 'v' && b[0] != 'V' {
		return false
	}
	n := 1
	for n < len(b) && unhex[b[n]] != 0xFF {
		n++
	}
	if n == 1 || n == len(b) || b[n] != '.' || n+1 == len(b) {
		return false
	}
	for _, c := range b[n+1:] {
		if byteClass[c]&classRegName == 0 && c != ':' {
			return false
		}
	}
	return true
}

package http1

import (
	"bytes"
	"math"
)

// Header is one header field line of a request. Name is lower-cased (in
// place, in the parsed buffer) and Value has its surrounding OWS trimmed.
type Header struct{ Name, Value []byte }

// Request is a parsed request head. After a successful ParseHead all its
// slices alias the parsed buffer; they are valid only as long as the buffer
// is not reused.
type Request struct {
	Method []byte
	Target []byte // request-target as received
	// Path is the raw path: the origin-form path, the path of an
	// absolute-form URI ("/" if empty), or "*" for asterisk-form.
	Path  []byte
	Query []byte // raw bytes after '?'; nil if the target has none
	Minor int    // HTTP/1.<Minor>: 0 or 1 (1.2 and above are processed as 1.1)
	// Headers holds the header fields in order, duplicates kept. ParseHead
	// reuses its backing array (req.Headers[:0]).
	Headers []Header
	// Host is the authority: from an absolute-form target if given, else the
	// Host header (nil for HTTP/1.0 without Host).
	Host          []byte
	ContentLength int64 // -1 when absent
	Chunked       bool
	// Close reports that the connection must close after this exchange:
	// "Connection: close", or HTTP/1.0 without "Connection: keep-alive".
	Close bool
	// ExpectContinue reports "Expect: 100-continue" in an HTTP/1.1 request
	// (RFC 9110 10.1.1: ignored in HTTP/1.0).
	ExpectContinue bool
	// Upgrade is the value of the first Upgrade field line if Connection
	// lists "upgrade" in an HTTP/1.1 request, else nil (Headers holds every
	// line; several are one list).
	Upgrade []byte
}

// Limits bounds the size of a request head. Zero fields mean the default. By default only the
// head's size is bounded (as uvicorn's h11 and httptools parsers do): a request line as long as the
// head allows (RFC 9112 §3 recommends at least 8000 octets), and any number of fields in it.
type Limits struct {
	MaxRequestLine int // request-line length without CRLF; default MaxHeaderBytes; longer → 414
	MaxHeaderBytes int // whole head incl. request line and final CRLF; default 16384; larger → 431
	MaxHeaders     int // header field lines; default no limit of their own; more → 431
}

const (
	defaultMaxHeaderBytes = 16384

	maxEmptyLines = 4 // empty lines ignored before a request-line
)

// RequestLine is the request-line limit in effect (MaxRequestLine, or the head's).
func (l *Limits) RequestLine() int {
	if l.MaxRequestLine > 0 {
		return l.MaxRequestLine
	}
	if l.MaxHeaderBytes > 0 {
		return l.MaxHeaderBytes
	}
	return defaultMaxHeaderBytes
}

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{MaxHeaderBytes: defaultMaxHeaderBytes}
}

// ParseHead parses one request head at the start of buf. It returns the
// number of bytes consumed (through the blank line) and nil when complete;
// (0, ErrNeedMore) when buf does not yet hold a whole head and no limit is
// exceeded yet; or (0, *Error). On success req's slices alias buf. Header
// names are lower-cased in place in buf, also when ParseHead fails. lim may
// be nil for the defaults.
//
// Calling ParseHead again on the same bytes (after ErrNeedMore, with more
// bytes appended) gives the same result as calling it once on all of them.
// Each call parses from the start of buf. A head can only complete when a
// '\n' arrives, so to keep a client that trickles bytes from causing
// quadratic work a caller may skip calls after reads that brought no '\n'
// (some refusals are then found later, at the latest when the buffer reaches
// MaxHeaderBytes).
func ParseHead(buf []byte, req *Request, lim *Limits) (int, error) {
	maxLine, maxBytes, maxFields := 0, defaultMaxHeaderBytes, math.MaxInt
	if lim != nil {
		if lim.MaxRequestLine > 0 {
			maxLine = lim.MaxRequestLine
		}
		if lim.MaxHeaderBytes > 0 {
			maxBytes = lim.MaxHeaderBytes
		}
		if lim.MaxHeaders > 0 {
			maxFields = lim.MaxHeaders
		}
	}
	if maxLine == 0 {
		maxLine = maxBytes
	}
	*req = Request{Headers: req.Headers[:0], ContentLength: -1}

	// RFC 9112 2.2: ignore at least one empty line before the request-line
	// (clients may send a stray CRLF after a body). A few are ignored, more
	// are refused, so that a client cannot make every call rescan them. They
	// count toward MaxHeaderBytes.
	pos := 0
	for empty := 0; ; empty++ {
		if pos >= maxBytes {
			return 0, errHeadTooLarge
		}
		if pos == len(buf) {
			return 0, ErrNeedMore
		}
		if buf[pos] != '\r' && buf[pos] != '\n' {
			break
		}
		if empty == maxEmptyLines {
			return 0, errEmptyLines
		}
		if buf[pos] == '\n' {
			pos++
			continue
		}
		if pos+1 == len(buf) {
			return needMore(buf, maxBytes)
		}
		if buf[pos+1] != '\n' {
			return 0, errBareCR
		}
		pos += 2
	}

	// Request-line.
	start := pos
	end := min(len(buf), start+maxLine+2)
	i := bytes.IndexByte(buf[start:end], '\n')
	if i < 0 {
		// Decide 414 as soon as the line content is known to exceed maxLine:
		// maxLine+1 bytes that do not end in CR cannot be followed by LF
		// without exceeding it.
		if seen := end - start; seen > maxLine+1 || seen == maxLine+1 && buf[end-1] != '\r' {
			return 0, errURITooLong
		}
		return needMore(buf, maxBytes)
	}
	line := dropCR(buf[start : start+i])
	if len(line) > maxLine {
		return 0, errURITooLong
	}
	pos = start + i + 1
	if pos > maxBytes {
		return 0, errHeadTooLarge
	}
	authority, err := parseRequestLine(line, req)
	if err != nil {
		return 0, err
	}

	// Header fields.
	var h headState
	for {
		i := -1
		if hend := min(len(buf), maxBytes); pos < hend {
			i = bytes.IndexByte(buf[pos:hend], '\n')
		}
		if i < 0 {
			if len(buf) >= maxBytes {
				return 0, errHeadTooLarge
			}
			if len(req.Headers) >= maxFields && pos < len(buf) && buf[pos] != '\r' && buf[pos] != '\n' {
				return 0, errTooManyFields // a further field line has started
			}
			return 0, ErrNeedMore
		}
		line := dropCR(buf[pos : pos+i])
		pos += i + 1
		if len(line) == 0 {
			break
		}
		if len(req.Headers) >= maxFields {
			return 0, errTooManyFields
		}
		name, value, err := parseField(line, true)
		if err != nil {
			return 0, err
		}
		req.Headers = append(req.Headers, Header{})
		f := &req.Headers[len(req.Headers)-1] // filled in place: cheaper than copying a Header
		f.Name, f.Value = name, value
		if err := h.process(req, name, value); err != nil {
			return 0, err
		}
	}
	if err := h.finish(req, authority); err != nil {
		return 0, err
	}
	return pos, nil
}

func needMore(buf []byte, maxBytes int) (int, error) {
	if len(buf) >= maxBytes {
		return 0, errHeadTooLarge
	}
	return 0, ErrNeedMore
}

// dropCR removes the CR of a CRLF line ending.
func dropCR(line []byte) []byte {
	if len(line) > 0 && line[len(line)-1] == '\r' {
		return line[:len(line)-1]
	}
	return line
}

// parseRequestLine parses method SP request-target SP HTTP-version into req.
// It returns the authority of an absolute-form target.
func parseRequestLine(line []byte, req *Request) (authority []byte, err error) {
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, errBareCR
	}
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return nil, errRequestLine
	}
	method, rest := line[:sp], line[sp+1:]
	if !isToken(method) {
		if len(method) == 0 {
			return nil, errRequestLine
		}
		return nil, errMethod
	}
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return nil, errRequestLine // no version, or empty target (double space)
	}
	target, version := rest[:sp], rest[sp+1:]
	minor, err := parseVersion(version)
	if err != nil {
		return nil, err
	}
	req.Method, req.Target, req.Minor = method, target, minor
	if equal(method, "CONNECT") {
		return nil, errConnect
	}
	if HasLower(method) {
		// RFC 9110 §9.1: "The method token is case-sensitive"; "get" is not GET, and an origin
		// server answers a method it does not implement with 501 (as nginx and uvicorn's
		// httptools refuse it). Uppercasing it instead (the scope's method is "uppercased",
		// www.rst) would frame "head" as HEAD behind a proxy that takes it for another method.
		return nil, errMethodCase
	}

	if !validTarget(target) {
		return nil, errTarget
	}
	q := bytes.IndexByte(target, '?')
	if q < 0 {
		q = len(target)
	} else {
		req.Query = target[q+1:]
	}
	if !validEscapes(target[:q]) {
		return nil, errPercent
	}
	if !validPath(target[:q]) {
		return nil, errTarget
	}

	switch {
	case target[0] == '/':
		req.Path = target[:q]
	case len(target) == 1 && target[0] == '*':
		if !equal(method, "OPTIONS") {
			return nil, errAsterisk
		}
		req.Path = target
	default:
		var n int // length of "http://" or "https://"
		switch {
		case hasPrefixFold(target, "http://"):
			n = len("http://")
		case hasPrefixFold(target, "https://"):
			n = len("https://")
		default:
			if bytes.IndexByte(target, '/') < 0 && bytes.IndexByte(target, ':') >= 0 {
				// RFC 9112 3.2.3: the authority-form is only for CONNECT (refused above); in
				// another request it makes an invalid request-line (section 3: 400).
				return nil, errAuthorityForm
			}
			return nil, errTarget
		}
		hier := target[n:q]
		if s := bytes.IndexByte(hier, '/'); s >= 0 {
			authority, req.Path = hier[:s], hier[s:]
		} else {
			// Empty path: use the "/" that ends the scheme's "//", so that
			// Path still aliases buf.
			authority, req.Path = hier, target[n-1:n]
		}
		// RFC 9110 4.2.1: an http(s) URI with an empty host is invalid
		// ("http://:80/" too); 4.2.4: userinfo is treated as an error ('@'
		// is not a host byte).
		if len(authority) == 0 || authority[0] == ':' || !validHost(authority) {
			return nil, errAuthority
		}
	}
	return authority, nil
}

// parseVersion parses HTTP-version and returns its minor version. A minor version above 1
// (HTTP/1.2 ...) is processed as HTTP/1.1, the highest this server conforms to (RFC 9110 §2.5);
// another major version is refused (505).
func parseVersion(v []byte) (int, error) {
	if len(v) != len("HTTP/1.1") || !equal(v[:5], "HTTP/") || !isDigit(v[5]) || v[6] != '.' || !isDigit(v[7]) {
		return 0, errVersion
	}
	if v[5] != '1' {
		return 0, errHTTPVersion
	}
	return min(int(v[7]-'0'), 1), nil
}

// validEscapes reports whether every '%' in b is followed by two hex digits.
func validEscapes(b []byte) bool {
	for {
		i := bytes.IndexByte(b, '%')
		if i < 0 {
			return true
		}
		if i+2 >= len(b) || unhex[b[i+1]] == 0xFF || unhex[b[i+2]] == 0xFF {
			return false
		}
		b = b[i+3:]
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseField parses a field line (without its line ending) into name and
// value, lower-casing the name in place if lower is set.
func parseField(line []byte, lower bool) (name, value []byte, err error) {
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		if byteClass[c]&classToken == 0 {
			break
		}
		if lower && 'A' <= c && c <= 'Z' {
			line[i] = c + ('a' - 'A')
		}
	}
	if i == len(line) || line[i] != ':' || i == 0 {
		switch {
		case i == 0 && isWS(line[0]):
			return nil, nil, errObsFold
		case i < len(line) && line[i] == '\r':
			return nil, nil, errBareCR
		}
		return nil, nil, errHeaderName
	}
	name, value = line[:i], trimOWS(line[i+1:])
	if !validValue(value) {
		if bytes.IndexByte(value, '\r') >= 0 {
			return nil, nil, errBareCR
		}
		return nil, nil, errHeaderValue
	}
	return name, value, nil
}

// headState accumulates what the header fields say about message framing
// and the connection.
type headState struct {
	hosts       int
	host        []byte
	sawCL       bool
	sawTE       bool
	teChunked   int  // how many times chunked was listed
	teLast      bool // the last transfer coding so far is chunked
	teOther     bool // a coding other than chunked was listed
	connClose   bool
	connKeep    bool
	connUpgrade bool
	upgrade     []byte
}

func (h *headState) process(req *Request, name, value []byte) error {
	switch len(name) {
	case len("host"):
		if equal(name, "host") {
			h.hosts++
			if h.hosts > 1 {
				return errDuplicateHost
			}
			if !validHost(value) {
				return errHost
			}
			h.host = value
		}
	case len("expect"):
		if equal(name, "expect") {
			// A list (RFC 9110 §10.1.1): empty elements are ignored (§5.6.1.2), any expectation
			// other than 100-continue is refused (417).
			for more := true; more; {
				var e []byte
				e, value, more = nextElement(value)
				switch {
				case len(e) == 0:
				case equalFold(e, "100-continue"):
					req.ExpectContinue = req.Minor == 1
				default:
					return errExpectation
				}
			}
		}
	case len("upgrade"):
		if equal(name, "upgrade") && len(h.upgrade) == 0 {
			h.upgrade = value
		}
	case len("connection"):
		if equal(name, "connection") {
			for more := true; more; {
				var e []byte
				e, value, more = nextElement(value)
				switch {
				case equalFold(e, "close"):
					h.connClose = true
				case equalFold(e, "keep-alive"):
					h.connKeep = true
				case equalFold(e, "upgrade"):
					h.connUpgrade = true
				}
			}
		}
	case len("content-length"):
		if equal(name, "content-length") {
			if h.sawCL {
				return errDupContentLength
			}
			h.sawCL = true
			n, ok := parseContentLength(value)
			if !ok {
				return errContentLength
			}
			req.ContentLength = n
		}
	case len("transfer-encoding"):
		if equal(name, "transfer-encoding") {
			if req.Minor == 0 {
				return errTEOnHTTP10
			}
			h.sawTE = true
			return h.transferEncoding(value)
		}
	}
	return nil
}

// transferEncoding folds one Transfer-Encoding field value into h.
func (h *headState) transferEncoding(value []byte) error {
	for more := true; more; {
		var e []byte
		e, value, more = nextElement(value)
		if len(e) == 0 {
			continue // an empty list element is ignored (RFC 9110 §5.6.1.2): "chunked," is chunked
		}
		if !isToken(e) {
			// Parameters ("chunked;q=1") and anything that is not a plain coding name are refused
			// outright.
			return errTransferEncoding
		}
		h.teLast = equalFold(e, "chunked")
		if h.teLast {
			h.teChunked++
		} else {
			h.teOther = true
		}
	}
	return nil
}

// parseContentLength parses 1 to 18 decimal digits.
func parseContentLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// finish applies the checks that need the whole head.
func (h *headState) finish(req *Request, authority []byte) error {
	if h.sawTE {
		switch {
		case h.sawCL:
			return errTEAndCL
		case h.teChunked > 1 || !h.teLast:
			// RFC 9112 §6.3: chunked must be the final coding, once, or the body's length cannot
			// be determined: 400 and close ("gzip" alone, "xchunked", "chunked, gzip").
			return errChunkedNotLast
		case h.teOther:
			// chunked is final but another coding is not one we decode: 501 (RFC 9112 §6.1).
			return errTECoding
		}
		req.Chunked = true
	}
	if req.Minor == 1 && h.hosts == 0 {
		return errMissingHost
	}
	if authority != nil {
		req.Host = authority
	} else {
		req.Host = h.host
	}
	if req.Minor == 1 {
		req.Close = h.connClose
		if h.connUpgrade && len(h.upgrade) > 0 {
			req.Upgrade = h.upgrade
		}
	} else {
		req.Close = h.connClose || !h.connKeep
	}
	return nil
}

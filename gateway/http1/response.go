package http1

import "strconv"

// statusLines holds the precomputed status lines of the known status codes.
var statusLines = func() (t [600]string) {
	for status := 100; status < 600; status++ {
		if reason := statusText(status); reason != "" {
			t[status] = "HTTP/1.1 " + strconv.Itoa(status) + " " + reason + "\r\n"
		}
	}
	return t
}()

// AppendStatusLine appends the status line for status to dst, for example
// "HTTP/1.1 200 OK\r\n". It is HTTP/1.1 for HTTP/1.0 requests too: a server
// sends the highest version it conforms to with the request's major version
// (RFC 9110 §2.5); the response's framing follows the request's version.
// Codes without a registered reason phrase get an empty one
// ("HTTP/1.1 599 \r\n").
func AppendStatusLine(dst []byte, status int) []byte {
	if status >= 100 && status < 600 {
		if line := statusLines[status]; line != "" {
			return append(dst, line...)
		}
	}
	dst = append(dst, "HTTP/1.1 "...)
	if status >= 100 && status < 1000 {
		dst = append(dst, byte('0'+status/100), byte('0'+status/10%10), byte('0'+status%10))
	} else {
		dst = strconv.AppendInt(dst, int64(status), 10)
	}
	return append(dst, " \r\n"...)
}

// AppendHeader appends the field line "name: value\r\n" to dst. It does not
// validate; see ValidHeaderName and ValidHeaderValue.
func AppendHeader(dst []byte, name, value []byte) []byte {
	dst = append(dst, name...)
	dst = append(dst, ':', ' ')
	dst = append(dst, value...)
	return append(dst, '\r', '\n')
}

// ValidHeaderName reports whether b is a valid field name: a non-empty token.
func ValidHeaderName(b []byte) bool { return isToken(b) }

// ValidHeaderValue reports whether b may be sent as a field value: it
// contains no CR, LF, NUL or other control character except HTAB.
func ValidHeaderValue(b []byte) bool {
	for _, c := range b {
		if byteClass[c]&classValue == 0 {
			return false
		}
	}
	return true
}

// AppendChunk appends data as one chunk, "<hex size>\r\n<data>\r\n", to dst.
// Empty data appends nothing, since a zero-size chunk would end the body.
func AppendChunk(dst []byte, data []byte) []byte {
	if len(data) == 0 {
		return dst
	}
	dst = AppendChunkHead(dst, len(data))
	dst = append(dst, data...)
	return append(dst, '\r', '\n')
}

// AppendChunkHead appends the chunk-size line of a chunk of n bytes (n > 0); the chunk's data and
// its CRLF follow (AppendChunk writes all three).
func AppendChunkHead(dst []byte, n int) []byte {
	dst = strconv.AppendUint(dst, uint64(n), 16)
	return append(dst, '\r', '\n')
}

// AppendLastChunk appends the last chunk and an empty trailer section,
// "0\r\n\r\n", to dst.
func AppendLastChunk(dst []byte) []byte { return append(dst, "0\r\n\r\n"...) }

// BodyAllowed reports whether a response with the given status to a request
// with the given method may have content: not for 1xx, 204, 304, or HEAD.
func BodyAllowed(status int, method []byte) bool {
	if status >= 100 && status < 200 || status == 204 || status == 304 {
		return false
	}
	return !equal(method, "HEAD")
}

// statusText returns the RFC 9110 (and IANA registry) reason phrase for
// status, or "" if it has none.
func statusText(status int) string {
	switch status {
	case 100:
		return "Continue"
	case 101:
		return "Switching Protocols"
	case 102:
		return "Processing"
	case 103:
		return "Early Hints"
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 202:
		return "Accepted"
	case 203:
		return "Non-Authoritative Information"
	case 204:
		return "No Content"
	case 205:
		return "Reset Content"
	case 206:
		return "Partial Content"
	case 207:
		return "Multi-Status"
	case 208:
		return "Already Reported"
	case 226:
		return "IM Used"
	case 300:
		return "Multiple Choices"
	case 301:
		return "Moved Permanently"
	case 302:
		return "Found"
	case 303:
		return "See Other"
	case 304:
		return "Not Modified"
	case 305:
		return "Use Proxy"
	case 307:
		return "Temporary Redirect"
	case 308:
		return "Permanent Redirect"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 402:
		return "Payment Required"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 406:
		return "Not Acceptable"
	case 407:
		return "Proxy Authentication Required"
	case 408:
		return "Request Timeout"
	case 409:
		return "Conflict"
	case 410:
		return "Gone"
	case 411:
		return "Length Required"
	case 412:
		return "Precondition Failed"
	case 413:
		return "Content Too Large"
	case 414:
		return "URI Too Long"
	case 415:
		return "Unsupported Media Type"
	case 416:
		return "Range Not Satisfiable"
	case 417:
		return "Expectation Failed"
	case 418:
		return "I'm a teapot"
	case 421:
		return "Misdirected Request"
	case 422:
		return "Unprocessable Content"
	case 423:
		return "Locked"
	case 424:
		return "Failed Dependency"
	case 425:
		return "Too Early"
	case 426:
		return "Upgrade Required"
	case 428:
		return "Precondition Required"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 451:
		return "Unavailable For Legal Reasons"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	case 506:
		return "Variant Also Negotiates"
	case 507:
		return "Insufficient Storage"
	case 508:
		return "Loop Detected"
	case 510:
		return "Not Extended"
	case 511:
		return "Network Authentication Required"
	}
	return ""
}

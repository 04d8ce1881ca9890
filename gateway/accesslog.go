package gateway

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// AccessFormat is a parsed --access-log-format: text with %(name)s fields in the style of uvicorn's
// and gunicorn's formats, e.g. '%(client)s - "%(request_line)s" %(status)s %(bytes)s %(duration_ms)s'.
type AccessFormat struct {
	parts []accessPart
}

type accessPart struct {
	literal string
	field   accessField
}

type accessField int

const (
	fieldNone accessField = iota
	fieldClient
	fieldClientAddr
	fieldMethod
	fieldPath
	fieldRequestLine
	fieldHTTPVersion
	fieldStatus
	fieldBytes
	fieldDuration
	fieldDurationMS
	fieldWorker
)

var accessFields = map[string]accessField{
	"client": fieldClient, "client_addr": fieldClientAddr, "method": fieldMethod, "path": fieldPath,
	"request_line": fieldRequestLine, "http_version": fieldHTTPVersion, "status": fieldStatus,
	"status_code": fieldStatus, "bytes": fieldBytes, "duration": fieldDuration,
	"duration_ms": fieldDurationMS, "worker": fieldWorker,
}

// AccessFieldNames lists the fields a format may use.
func AccessFieldNames() []string {
	names := make([]string, 0, len(accessFields))
	for n := range accessFields {
		names = append(names, n)
	}
	return names
}

// ParseAccessFormat parses a format; an unknown field is an error naming the known ones.
func ParseAccessFormat(s string) (*AccessFormat, error) {
	f := &AccessFormat{}
	for s != "" {
		i := strings.Index(s, "%(")
		if i < 0 {
			f.parts = append(f.parts, accessPart{literal: s})
			break
		}
		if i > 0 {
			f.parts = append(f.parts, accessPart{literal: s[:i]})
		}
		end := strings.Index(s[i:], ")s")
		if end < 0 {
			return nil, fmt.Errorf("--access-log-format: unterminated field at %q (fields are written %%(name)s)", s[i:])
		}
		name := s[i+2 : i+end]
		field, ok := accessFields[name]
		if !ok {
			return nil, fmt.Errorf("--access-log-format: unknown field %q (known: client, client_addr, method, path, request_line, http_version, status, bytes, duration, duration_ms, worker)", name)
		}
		f.parts = append(f.parts, accessPart{field: field})
		s = s[i+end+2:]
	}
	return f, nil
}

// accessEntry is what a line says about one request, over HTTP/1.1 or HTTP/2.
type accessEntry struct {
	client  *protocol.Addr // nil: unknown (a Unix socket)
	method  []byte
	target  []byte // the request-target as sent (HTTP/2: :path)
	version string // "1.0", "1.1" or "2"
	status  int
	bytes   int64 // response body bytes
	worker  int   // -1: none (the gateway answered)
}

// append renders the line for e, d after the request began.
func (f *AccessFormat) append(dst []byte, e *accessEntry, d time.Duration) []byte {
	for _, p := range f.parts {
		switch p.field {
		case fieldNone:
			dst = append(dst, p.literal...)
		case fieldClient:
			if e.client != nil {
				dst = append(dst, e.client.Host...)
			} else {
				dst = append(dst, '-')
			}
		case fieldClientAddr:
			if e.client != nil {
				dst = append(append(append(dst, e.client.Host...), ':'), strconv.Itoa(e.client.Port)...)
			} else {
				dst = append(dst, '-')
			}
		case fieldMethod:
			dst = append(dst, e.method...)
		case fieldPath:
			dst = append(dst, e.target...)
		case fieldRequestLine:
			dst = append(append(append(append(append(dst, e.method...), ' '), e.target...), " HTTP/"...), e.version...)
		case fieldHTTPVersion:
			dst = append(dst, e.version...)
		case fieldStatus:
			dst = strconv.AppendInt(dst, int64(e.status), 10)
		case fieldBytes:
			dst = strconv.AppendInt(dst, e.bytes, 10)
		case fieldDuration:
			dst = strconv.AppendFloat(dst, d.Seconds(), 'f', 6, 64)
		case fieldDurationMS:
			dst = strconv.AppendFloat(dst, float64(d.Microseconds())/1000, 'f', 3, 64)
		case fieldWorker:
			if e.worker >= 0 {
				dst = strconv.AppendInt(dst, int64(e.worker), 10)
			} else {
				dst = append(dst, '-')
			}
		}
	}
	return dst
}

package protocol

import (
	"fmt"
	"math"
	"unicode/utf8"
)

// Reasons a value is rejected. They become part of the error text.
const (
	rTruncated = "truncated"
	rNotInt    = "not an integer"
	rNegative  = "negative integer"
	rRange     = "integer out of range"
	rNotStr    = "not a str"
	rNotBin    = "not a bin"
	rNotData   = "not a str or bin"
	rNotBool   = "not a bool"
	rNotArray  = "not an array"
	rNotMap    = "not a map"
	rArity     = "wrong array length"
	rUTF8      = "invalid UTF-8"
	rTooLong   = "length exceeds payload"
)

// dec reads canonical-or-not msgpack values from a payload, bounds-checking every length against
// the bytes that remain. Methods return a reason ("" on success) instead of an error, so that the
// success path never allocates.
type dec struct {
	b []byte
	p int
}

func (d *dec) rest() int { return len(d.b) - d.p }

// need returns whether n more bytes are available.
func (d *dec) need(n int) bool { return n >= 0 && n <= len(d.b)-d.p }

func (d *dec) be(n int) uint64 {
	var v uint64
	for _, c := range d.b[d.p : d.p+n] {
		v = v<<8 | uint64(c)
	}
	d.p += n
	return v
}

// uint reads any msgpack integer that is >= 0 and <= max.
func (d *dec) uint(max uint64) (uint64, string) {
	if !d.need(1) {
		return 0, rTruncated
	}
	c := d.b[d.p]
	var v uint64
	switch {
	case c <= 0x7f:
		d.p++
		v = uint64(c)
	case c >= 0xe0:
		return 0, rNegative
	case c >= 0xcc && c <= 0xcf: // uint8..uint64
		n := 1 << (c - 0xcc)
		if !d.need(1 + n) {
			return 0, rTruncated
		}
		d.p++
		v = d.be(n)
	case c >= 0xd0 && c <= 0xd3: // int8..int64
		n := 1 << (c - 0xd0)
		if !d.need(1 + n) {
			return 0, rTruncated
		}
		d.p++
		u := d.be(n)
		if u&(1<<(uint(n)*8-1)) != 0 {
			return 0, rNegative
		}
		v = u
	default:
		return 0, rNotInt
	}
	if v > max {
		return 0, rRange
	}
	return v, ""
}

// length reads a big-endian length of 1, 2 or 4 bytes after the code byte and checks that at
// least min(length)*unit bytes remain.
func (d *dec) length(n int, unit int) (int, string) {
	if !d.need(1 + n) {
		return 0, rTruncated
	}
	d.p++
	l := d.be(n)
	if l > uint64(d.rest()/unit) {
		return 0, rTooLong
	}
	return int(l), ""
}

// str reads a str and returns its bytes (aliasing the payload), checked to be valid UTF-8.
func (d *dec) str() ([]byte, string) {
	if !d.need(1) {
		return nil, rTruncated
	}
	c := d.b[d.p]
	var l int
	var r string
	switch {
	case c >= 0xa0 && c <= 0xbf:
		d.p++
		l = int(c & 0x1f)
		if l > d.rest() {
			return nil, rTruncated
		}
	case c == 0xd9:
		l, r = d.length(1, 1)
	case c == 0xda:
		l, r = d.length(2, 1)
	case c == 0xdb:
		l, r = d.length(4, 1)
	default:
		return nil, rNotStr
	}
	if r != "" {
		if r == rTooLong {
			r = rTruncated
		}
		return nil, r
	}
	s := d.b[d.p : d.p+l : d.p+l]
	d.p += l
	if !utf8.Valid(s) {
		return nil, rUTF8
	}
	return s, ""
}

// bin reads a bin and returns its bytes, aliasing the payload (capacity clipped).
func (d *dec) bin() ([]byte, string) {
	if !d.need(1) {
		return nil, rTruncated
	}
	var l int
	var r string
	switch c := d.b[d.p]; c {
	case 0xc4:
		l, r = d.length(1, 1)
	case 0xc5:
		l, r = d.length(2, 1)
	case 0xc6:
		l, r = d.length(4, 1)
	default:
		return nil, rNotBin
	}
	if r != "" {
		if r == rTooLong {
			r = rTruncated
		}
		return nil, r
	}
	s := d.b[d.p : d.p+l : d.p+l]
	d.p += l
	return s, ""
}

// data reads a str or a bin (a WebSocket message) and returns its bytes, aliasing the payload,
// and whether it was a str (then checked to be valid UTF-8).
func (d *dec) data() ([]byte, bool, string) {
	if !d.need(1) {
		return nil, false, rTruncated
	}
	switch c := d.b[d.p]; {
	case c >= 0xa0 && c <= 0xbf, c >= 0xd9 && c <= 0xdb:
		s, r := d.str()
		return s, true, r
	case c >= 0xc4 && c <= 0xc6:
		b, r := d.bin()
		return b, false, r
	}
	return nil, false, rNotData
}

func (d *dec) bool() (bool, string) {
	if !d.need(1) {
		return false, rTruncated
	}
	switch d.b[d.p] {
	case 0xc2:
		d.p++
		return false, ""
	case 0xc3:
		d.p++
		return true, ""
	}
	return false, rNotBool
}

// nil consumes a nil and reports whether there was one.
func (d *dec) nil() bool {
	if d.need(1) && d.b[d.p] == 0xc0 {
		d.p++
		return true
	}
	return false
}

// arrayLen reads an array header whose items each take at least minItem bytes; the length is
// checked against the bytes that remain.
func (d *dec) arrayLen(minItem int) (int, string) {
	if !d.need(1) {
		return 0, rTruncated
	}
	c := d.b[d.p]
	switch {
	case c >= 0x90 && c <= 0x9f:
		d.p++
		n := int(c & 0x0f)
		if n > d.rest()/minItem {
			return 0, rTooLong
		}
		return n, ""
	case c == 0xdc:
		return d.length(2, minItem)
	case c == 0xdd:
		return d.length(4, minItem)
	}
	return 0, rNotArray
}

// mapLen reads a map header; each entry takes at least 2 bytes.
func (d *dec) mapLen() (int, string) {
	if !d.need(1) {
		return 0, rTruncated
	}
	c := d.b[d.p]
	switch {
	case c >= 0x80 && c <= 0x8f:
		d.p++
		n := int(c & 0x0f)
		if n > d.rest()/2 {
			return 0, rTooLong
		}
		return n, ""
	case c == 0xde:
		return d.length(2, 2)
	case c == 0xdf:
		return d.length(4, 2)
	}
	return 0, rNotMap
}

// skip skips one msgpack value of any type, iteratively (no recursion, so hostile nesting costs
// nothing but time), bounds-checking every length.
func (d *dec) skip() string {
	for pending := 1; pending > 0; pending-- {
		if !d.need(1) {
			return rTruncated
		}
		c := d.b[d.p]
		var n, unit, lenBytes, extra int
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
			d.p++
			continue
		case c >= 0x80 && c <= 0x8f, c >= 0x90 && c <= 0x9f:
			d.p++
			n = int(c & 0x0f)
			if c <= 0x8f {
				n *= 2
			}
			if n > d.rest() {
				return rTruncated
			}
			pending += n
			continue
		case c >= 0xa0 && c <= 0xbf:
			d.p++
			n = int(c & 0x1f)
			if n > d.rest() {
				return rTruncated
			}
			d.p += n
			continue
		case c == 0xcc || c == 0xd0:
			n = 1
		case c == 0xcd || c == 0xd1:
			n = 2
		case c == 0xce || c == 0xd2 || c == 0xca:
			n = 4
		case c == 0xcf || c == 0xd3 || c == 0xcb:
			n = 8
		case c >= 0xd4 && c <= 0xd8: // fixext: type byte + 1..16
			n = 1 + 1<<(c-0xd4)
		case c == 0xc4 || c == 0xd9:
			lenBytes, unit = 1, 1
		case c == 0xc5 || c == 0xda:
			lenBytes, unit = 2, 1
		case c == 0xc6 || c == 0xdb:
			lenBytes, unit = 4, 1
		case c == 0xc7:
			lenBytes, unit, extra = 1, 1, 1
		case c == 0xc8:
			lenBytes, unit, extra = 2, 1, 1
		case c == 0xc9:
			lenBytes, unit, extra = 4, 1, 1
		case c == 0xdc || c == 0xde:
			lenBytes, unit = 2, 0
		case c == 0xdd || c == 0xdf:
			lenBytes, unit = 4, 0
		default: // 0xc1 never used
			return "invalid msgpack code"
		}
		if lenBytes == 0 {
			if !d.need(1 + n) {
				return rTruncated
			}
			d.p += 1 + n
			continue
		}
		if !d.need(1 + lenBytes) {
			return rTruncated
		}
		d.p++
		l := d.be(lenBytes)
		if unit == 0 { // array or map
			if c == 0xde || c == 0xdf {
				l *= 2
			}
			if l > uint64(d.rest()) {
				return rTruncated
			}
			pending += int(l)
			continue
		}
		if l+uint64(extra) > uint64(d.rest()) {
			return rTruncated
		}
		d.p += int(l) + extra
	}
	return ""
}

// arity is the exact payload array length of each type (HTTP_REQUEST and WS_CONNECT: without the
// tls item of flag TLS).
func arity(t Type) int {
	switch t {
	case TypeHello, TypeWorkerHello, TypeCreditG2W, TypeCreditW2G, TypePing, TypePong,
		TypeWSReceive, TypeWSSend, TypeShutdown, TypeResponsePathsend, TypeEarlyHint:
		return 3
	case TypeHTTPRequest:
		return 15
	case TypeWSConnect:
		return 13
	case TypeRequestBody, TypeResponseBody, TypeEnd, TypeWSDisconnect, TypeWSClose, TypeWSAccept,
		TypeResponseTrailers:
		return 4
	case TypeDisconnect, TypeCancel:
		return 2
	case TypeResponseStart:
		return 7
	case TypeRequestBodyRing, TypeResponseBodyRing:
		return 5
	}
	return -1
}

func fieldErr(t Type, field, reason string) error {
	if reason == rUTF8 {
		return fmt.Errorf("protocol: %s field %s: %w: %w", t, field, ErrInvalidUTF8, ErrMalformed)
	}
	return fmt.Errorf("protocol: %s field %s: %s: %w", t, field, reason, ErrMalformed)
}

func (f *Frame) reset() {
	f.Type = 0
	f.Stream = 0
	f.Request = HTTPRequest{}
	f.Status = 0
	f.Headers = nil
	f.Flags = 0
	f.Body = nil
	f.MoreBody = false
	f.Increment = 0
	f.Token = 0
	f.Outcome = 0
	f.Message = nil
	f.Links = nil
	f.GatewayHello = nil
	f.WorkerHello = nil
	f.WS = WSConnect{}
	f.Text = false
	f.Code = 0
	f.Subprotocol = nil
	f.HasSubprotocol = false
	f.Grace = 0
	f.RingPos = 0
	f.RingLen = 0
}

// Decode decodes one payload (without the length prefix) strictly per SPEC: exact array arity
// per type, str vs bin enforced, str fields valid UTF-8, integers any msgpack int encoding that
// fits and is >= 0, sid == 0 for HELLO/PING/PONG/SHUTDOWN and != 0 for stream frames, status
// 200..999 (SPEC §3), ports and close codes 0..65535, no trailing bytes. It does not check the
// direction: the receiver compares Type.FromGateway() with what it expects. Errors wrap
// ErrMalformed or ErrUnknownType.
func (f *Frame) Decode(payload []byte) error {
	f.reset()
	d := dec{b: payload}
	n, r := d.arrayLen(1)
	if r != "" {
		return fmt.Errorf("protocol: payload: %s: %w", r, ErrMalformed)
	}
	if n < 2 {
		return fmt.Errorf("protocol: payload: array of %d items: %w", n, ErrMalformed)
	}
	tv, r := d.uint(math.MaxUint8)
	if r != "" {
		return fmt.Errorf("protocol: payload field type: %s: %w", r, ErrMalformed)
	}
	t := Type(tv)
	if !t.Known() {
		return fmt.Errorf("protocol: type %d: %w", tv, ErrUnknownType)
	}
	f.Type = t
	want := arity(t)
	tlsItem := n == want+1 && (t == TypeHTTPRequest || t == TypeWSConnect)
	if n != want && !tlsItem {
		if t == TypeHTTPRequest || t == TypeWSConnect {
			return fmt.Errorf("protocol: %s: array of %d items, want %d (%d with flag TLS): %w", t, n, want, want+1, ErrMalformed)
		}
		return fmt.Errorf("protocol: %s: array of %d items, want %d: %w", t, n, want, ErrMalformed)
	}
	sid, r := d.uint(math.MaxUint32)
	if r != "" {
		return fieldErr(t, "stream", r)
	}
	f.Stream = uint32(sid)
	switch t {
	case TypeHello, TypeWorkerHello, TypePing, TypePong, TypeShutdown:
		if sid != 0 {
			return fmt.Errorf("protocol: %s: stream %d on a connection frame: %w", t, sid, ErrMalformed)
		}
	default:
		if sid == 0 {
			return fmt.Errorf("protocol: %s: stream 0 on a stream frame: %w", t, ErrMalformed)
		}
	}

	var err error
	switch t {
	case TypeHello:
		f.GatewayHello, d.p, err = decodeGatewayHello(payload, d.p)
	case TypeWorkerHello:
		f.WorkerHello, d.p, err = decodeWorkerHello(payload, d.p)
	case TypeHTTPRequest:
		err = f.decodeHTTPRequest(&d, tlsItem)
	case TypeRequestBody, TypeResponseBody:
		if f.Body, r = d.bin(); r != "" {
			return fieldErr(t, "body", r)
		}
		if f.MoreBody, r = d.bool(); r != "" {
			return fieldErr(t, "more_body", r)
		}
	case TypeRequestBodyRing, TypeResponseBodyRing:
		if f.RingPos, r = d.uint(math.MaxUint64); r != "" {
			return fieldErr(t, "position", r)
		}
		if f.RingLen, r = d.uint(math.MaxUint64); r != "" {
			return fieldErr(t, "length", r)
		}
		if f.MoreBody, r = d.bool(); r != "" {
			return fieldErr(t, "more_body", r)
		}
	case TypeDisconnect, TypeCancel:
	case TypeCreditG2W, TypeCreditW2G:
		if f.Increment, r = d.uint(math.MaxUint64); r != "" {
			return fieldErr(t, "increment", r)
		}
	case TypePing, TypePong:
		if f.Token, r = d.uint(math.MaxUint64); r != "" {
			return fieldErr(t, "token", r)
		}
	case TypeResponseStart:
		err = f.decodeResponseStart(&d)
	case TypeEnd:
		if f.Outcome, r = d.uint(math.MaxUint64); r != "" {
			return fieldErr(t, "outcome", r)
		}
		if f.Message, r = d.str(); r != "" {
			return fieldErr(t, "message", r)
		}
	case TypeWSConnect:
		err = f.decodeWSConnect(&d, tlsItem)
	case TypeWSReceive, TypeWSSend:
		if f.Body, f.Text, r = d.data(); r != "" {
			return fieldErr(t, "data", r)
		}
	case TypeWSDisconnect, TypeWSClose:
		var code uint64
		if code, r = d.uint(MaxCloseCode); r != "" {
			return fieldErr(t, "code", r)
		}
		f.Code = int(code)
		if f.Message, r = d.str(); r != "" {
			return fieldErr(t, "reason", r)
		}
	case TypeWSAccept:
		err = f.decodeWSAccept(&d)
	case TypeShutdown:
		if f.Grace, r = d.uint(math.MaxUint64); r != "" {
			return fieldErr(t, "grace_ms", r)
		}
	case TypeResponseTrailers:
		err = f.decodeResponseTrailers(&d)
	case TypeResponsePathsend:
		if f.Message, r = d.str(); r != "" {
			return fieldErr(t, "path", r)
		}
	case TypeEarlyHint:
		err = f.decodeEarlyHint(&d)
	}
	if err != nil {
		return err
	}
	if d.p != len(payload) {
		return fmt.Errorf("protocol: %s: %d trailing bytes: %w", t, len(payload)-d.p, ErrMalformed)
	}
	return nil
}

// minHeaderLen is the smallest encoding of one header: 92 c4 00 c4 00.
const minHeaderLen = 5

func (d *dec) headers(t Type, hs []Header) ([]Header, error) {
	n, r := d.arrayLen(minHeaderLen)
	if r != "" {
		return hs, fieldErr(t, "headers", r)
	}
	for i := 0; i < n; i++ {
		m, r := d.arrayLen(1)
		if r == "" && m != 2 {
			r = rArity
		}
		if r != "" {
			return hs, fieldErr(t, "headers", r)
		}
		name, r := d.bin()
		if r != "" {
			return hs, fieldErr(t, "header name", r)
		}
		value, r := d.bin()
		if r != "" {
			return hs, fieldErr(t, "header value", r)
		}
		hs = append(hs, Header{Name: name, Value: value})
	}
	return hs, nil
}

func (f *Frame) decodeResponseStart(d *dec) error {
	const t = TypeResponseStart
	st, r := d.uint(math.MaxUint64)
	if r == "" && (st < MinStatus || st > MaxStatus) {
		r = rRange
	}
	if r != "" {
		return fieldErr(t, "status", r)
	}
	f.Status = int(st)
	hs, err := d.headers(t, f.respHeaders[:0])
	f.respHeaders = hs[:0]
	if err != nil {
		return err
	}
	f.Headers = hs
	if f.Flags, r = d.uint(math.MaxUint64); r != "" {
		return fieldErr(t, "flags", r)
	}
	if f.Body, r = d.bin(); r != "" {
		return fieldErr(t, "body", r)
	}
	if f.MoreBody, r = d.bool(); r != "" {
		return fieldErr(t, "more_body", r)
	}
	return nil
}

func (f *Frame) decodeResponseTrailers(d *dec) error {
	const t = TypeResponseTrailers
	hs, err := d.headers(t, f.respHeaders[:0])
	f.respHeaders = hs[:0]
	if err != nil {
		return err
	}
	f.Headers = hs
	var r string
	if f.MoreBody, r = d.bool(); r != "" {
		return fieldErr(t, "more_trailers", r)
	}
	return nil
}

// minLinkLen is the smallest encoding of one link: an empty bin, c4 00.
const minLinkLen = 2

func (f *Frame) decodeEarlyHint(d *dec) error {
	const t = TypeEarlyHint
	n, r := d.arrayLen(minLinkLen)
	if r != "" {
		return fieldErr(t, "links", r)
	}
	ls := f.links[:0]
	for i := 0; i < n; i++ {
		l, r := d.bin()
		if r != "" {
			f.links = ls[:0]
			return fieldErr(t, "links", r)
		}
		ls = append(ls, l)
	}
	f.links = ls[:0]
	f.Links = ls
	return nil
}

func (f *Frame) decodeWSAccept(d *dec) error {
	const t = TypeWSAccept
	if !d.nil() {
		var r string
		if f.Subprotocol, r = d.str(); r != "" {
			return fieldErr(t, "subprotocol", r)
		}
		f.HasSubprotocol = true
	}
	hs, err := d.headers(t, f.respHeaders[:0])
	f.respHeaders = hs[:0]
	if err != nil {
		return err
	}
	f.Headers = hs
	return nil
}

// cached returns s if it equals b, else a new string of b (stored for next time).
func cached(cache *string, b []byte) string {
	if string(b) != *cache {
		*cache = string(b)
	}
	return *cache
}

func (f *Frame) decodeAddr(d *dec, t Type, field string, a *Addr, cache *string, portOptional bool) (*Addr, error) {
	if d.nil() {
		return nil, nil
	}
	n, r := d.arrayLen(1)
	if r == "" && n != 2 {
		r = rArity
	}
	if r != "" {
		return nil, fieldErr(t, field, r)
	}
	host, r := d.str()
	if r != "" {
		return nil, fieldErr(t, field+" host", r)
	}
	a.Host = cached(cache, host)
	a.Port, a.HasPort = 0, false
	if portOptional && d.nil() {
		return a, nil
	}
	port, r := d.uint(0xffff)
	if r != "" {
		return nil, fieldErr(t, field+" port", r)
	}
	a.Port, a.HasPort = int(port), true
	return a, nil
}

// version returns the http_version b as a string, without allocating for the usual values.
func (f *Frame) version(b []byte) string {
	switch string(b) {
	case "1.1":
		return "1.1"
	case "1.0":
		return "1.0"
	case "2":
		return "2"
	}
	return cached(&f.otherVersion, b)
}

// scheme returns the scheme b as a string, without allocating for the usual values.
func (f *Frame) scheme(b []byte) string {
	switch string(b) {
	case "http":
		return "http"
	case "https":
		return "https"
	case "ws":
		return "ws"
	case "wss":
		return "wss"
	}
	return cached(&f.otherScheme, b)
}

// decodeTLS reads the tls item, if the frame has one (item), after checking that flag TLS says the
// same. It returns nil without an item.
func (f *Frame) decodeTLS(d *dec, t Type, flags uint64, item bool) (*TLSInfo, error) {
	if flag := flags&FlagTLS != 0; flag != item {
		if flag {
			return nil, fmt.Errorf("protocol: %s: flag TLS without the tls item: %w", t, ErrMalformed)
		}
		return nil, fmt.Errorf("protocol: %s: a tls item without flag TLS: %w", t, ErrMalformed)
	}
	if !item {
		return nil, nil
	}
	n, r := d.arrayLen(1)
	if r == "" && n != TLSItems {
		r = rArity
	}
	if r != "" {
		return nil, fieldErr(t, "tls", r)
	}
	ti := &f.tls
	*ti = TLSInfo{}
	v, r := d.uint(0xffff)
	if r != "" {
		return nil, fieldErr(t, "tls.tls_version", r)
	}
	ti.Version = uint16(v)
	if v, r = d.uint(0xffff); r != "" {
		return nil, fieldErr(t, "tls.cipher_suite", r)
	}
	ti.CipherSuite = uint16(v)
	if n, r = d.arrayLen(1); r != "" { // the smallest str is fixstr a0
		return nil, fieldErr(t, "tls.client_cert_chain", r)
	}
	cs := f.certChain[:0]
	for i := 0; i < n; i++ {
		c, r := d.str()
		if r != "" {
			f.certChain = cs[:0]
			return nil, fieldErr(t, "tls.client_cert_chain", r)
		}
		cs = append(cs, c)
	}
	f.certChain = cs[:0]
	ti.ClientCertChain = cs
	if !d.nil() {
		if ti.ClientCertName, r = d.str(); r != "" {
			return nil, fieldErr(t, "tls.client_cert_name", r)
		}
		ti.HasClientCertName = true
	}
	if !d.nil() {
		if ti.ClientCertError, r = d.str(); r != "" {
			return nil, fieldErr(t, "tls.client_cert_error", r)
		}
		ti.HasClientCertError = true
	}
	return ti, nil
}

// scopeItems are the items HTTP_REQUEST and WS_CONNECT share, path to server, in that order.
type scopeItems struct {
	path, rawPath, query []byte
	rootPath             string
	headers              []Header
	client, server       *Addr
}

func (f *Frame) decodeScopeItems(d *dec, t Type, sc *scopeItems) error {
	var r string
	if sc.path, r = d.str(); r != "" {
		return fieldErr(t, "path", r)
	}
	if sc.rawPath, r = d.bin(); r != "" {
		return fieldErr(t, "raw_path", r)
	}
	if sc.query, r = d.bin(); r != "" {
		return fieldErr(t, "query_string", r)
	}
	b, r := d.str()
	if r != "" {
		return fieldErr(t, "root_path", r)
	}
	sc.rootPath = cached(&f.rootPath, b)
	hs, err := d.headers(t, f.reqHeaders[:0])
	f.reqHeaders = hs[:0]
	if err != nil {
		return err
	}
	sc.headers = hs
	if sc.client, err = f.decodeAddr(d, t, "client", &f.client, &f.clientHost, false); err != nil {
		return err
	}
	sc.server, err = f.decodeAddr(d, t, "server", &f.server, &f.serverHost, true)
	return err
}

func (f *Frame) decodeHTTPRequest(d *dec, tlsItem bool) error {
	const t = TypeHTTPRequest
	q := &f.Request
	b, r := d.str()
	if r != "" {
		return fieldErr(t, "http_version", r)
	}
	q.HTTPVersion = f.version(b)
	if q.Method, r = d.str(); r != "" {
		return fieldErr(t, "method", r)
	}
	if b, r = d.str(); r != "" {
		return fieldErr(t, "scheme", r)
	}
	q.Scheme = f.scheme(b)
	var sc scopeItems
	err := f.decodeScopeItems(d, t, &sc)
	if err != nil {
		return err
	}
	q.Path, q.RawPath, q.QueryString, q.RootPath = sc.path, sc.rawPath, sc.query, sc.rootPath
	q.Headers, q.Client, q.Server = sc.headers, sc.client, sc.server
	if q.Flags, r = d.uint(math.MaxUint64); r != "" {
		return fieldErr(t, "flags", r)
	}
	if q.Body, r = d.bin(); r != "" {
		return fieldErr(t, "body", r)
	}
	if q.MoreBody, r = d.bool(); r != "" {
		return fieldErr(t, "more_body", r)
	}
	q.TLS, err = f.decodeTLS(d, t, q.Flags, tlsItem)
	return err
}

func (f *Frame) decodeWSConnect(d *dec, tlsItem bool) error {
	const t = TypeWSConnect
	c := &f.WS
	b, r := d.str()
	if r != "" {
		return fieldErr(t, "http_version", r)
	}
	c.HTTPVersion = f.version(b)
	if b, r = d.str(); r != "" {
		return fieldErr(t, "scheme", r)
	}
	c.Scheme = f.scheme(b)
	var sc scopeItems
	err := f.decodeScopeItems(d, t, &sc)
	if err != nil {
		return err
	}
	c.Path, c.RawPath, c.QueryString, c.RootPath = sc.path, sc.rawPath, sc.query, sc.rootPath
	c.Headers, c.Client, c.Server = sc.headers, sc.client, sc.server
	n, r := d.arrayLen(1) // the smallest str is fixstr a0
	if r != "" {
		return fieldErr(t, "subprotocols", r)
	}
	ps := f.subprotocols[:0]
	for i := 0; i < n; i++ {
		p, r := d.str()
		if r != "" {
			f.subprotocols = ps[:0]
			return fieldErr(t, "subprotocols", r)
		}
		ps = append(ps, p)
	}
	f.subprotocols = ps[:0]
	c.Subprotocols = ps
	if c.Flags, r = d.uint(math.MaxUint64); r != "" {
		return fieldErr(t, "flags", r)
	}
	c.TLS, err = f.decodeTLS(d, t, c.Flags, tlsItem)
	return err
}

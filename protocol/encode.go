package protocol

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Canonical msgpack appenders (SPEC.md §2): the shortest encoding of each value, as
// msgpack-python packb(obj, use_bin_type=True) writes it.

func appendUint(dst []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(dst, byte(v))
	case v <= 0xff:
		return append(dst, 0xcc, byte(v))
	case v <= 0xffff:
		return append(dst, 0xcd, byte(v>>8), byte(v))
	case v <= 0xffffffff:
		return append(dst, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(dst, 0xcf, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32),
		byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendStrLen(dst []byte, n int) []byte {
	switch {
	case n < 32:
		return append(dst, 0xa0|byte(n))
	case n <= 0xff:
		return append(dst, 0xd9, byte(n))
	case n <= 0xffff:
		return append(dst, 0xda, byte(n>>8), byte(n))
	}
	return append(dst, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendStr(dst []byte, s string) []byte {
	return append(appendStrLen(dst, len(s)), s...)
}

func appendStrBytes(dst []byte, s []byte) []byte {
	return append(appendStrLen(dst, len(s)), s...)
}

// appendValidStr appends s as str, replacing each run of invalid UTF-8 bytes by one U+FFFD (as
// strings.ToValidUTF8 does), so that the frame stays valid. It does not allocate.
func appendValidStr(dst []byte, s string) []byte {
	if utf8.ValidString(s) {
		return appendStr(dst, s)
	}
	return forValidUTF8(forValidUTF8(dst, s, true), s, false)
}

// forValidUTF8 appends the str header (header true) or the repaired bytes (header false) of s.
func forValidUTF8(dst []byte, s string, header bool) []byte {
	n := 0
	invalid := false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			if !invalid {
				invalid = true
				n += 3
				if !header {
					dst = utf8.AppendRune(dst, utf8.RuneError)
				}
			}
		} else {
			invalid = false
			n += size
			if !header {
				dst = append(dst, s[i:i+size]...)
			}
		}
		i += size
	}
	if header {
		return appendStrLen(dst, n)
	}
	return dst
}

func appendBin(dst []byte, b []byte) []byte {
	n := len(b)
	switch {
	case n <= 0xff:
		dst = append(dst, 0xc4, byte(n))
	case n <= 0xffff:
		dst = append(dst, 0xc5, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0xc6, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, b...)
}

func appendArrayLen(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x90|byte(n))
	case n <= 0xffff:
		return append(dst, 0xdc, byte(n>>8), byte(n))
	}
	return append(dst, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 0xc3)
	}
	return append(dst, 0xc2)
}

func appendNil(dst []byte) []byte { return append(dst, 0xc0) }

// beginFrame appends a placeholder length prefix, the array header and [type, sid].
// It returns the extended slice and the offset of the prefix.
func beginFrame(dst []byte, n int, t Type, sid uint32) ([]byte, int) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = appendArrayLen(dst, n)
	dst = append(dst, byte(t)) // all types are positive fixints
	dst = appendUint(dst, uint64(sid))
	return dst, start
}

// endFrame writes the payload length into the prefix at start.
func endFrame(dst []byte, start int) []byte {
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-PrefixLen))
	return dst
}

func appendHeaders(dst []byte, hs []Header) []byte {
	dst = appendArrayLen(dst, len(hs))
	for i := range hs {
		dst = append(dst, 0x92)
		dst = appendBin(dst, hs[i].Name)
		dst = appendBin(dst, hs[i].Value)
	}
	return dst
}

func appendAddr(dst []byte, a *Addr) []byte {
	if a == nil {
		return appendNil(dst)
	}
	dst = append(dst, 0x92)
	dst = appendStr(dst, a.Host)
	if !a.HasPort {
		return appendNil(dst)
	}
	return appendUint(dst, uint64(a.Port))
}

func checkStr(t Type, field, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("protocol: %s field %s: %w", t, field, ErrInvalidUTF8)
	}
	return nil
}

func checkAddr(t Type, field string, a *Addr) error {
	if a == nil {
		return nil
	}
	if !utf8.ValidString(a.Host) {
		return fmt.Errorf("protocol: %s field %s.host: %w", t, field, ErrInvalidUTF8)
	}
	if a.HasPort && (a.Port < 0 || a.Port > 0xffff) {
		return fmt.Errorf("protocol: %s field %s.port %d: %w", t, field, a.Port, ErrMalformed)
	}
	return nil
}

// checkScope checks the scope fields HTTP_REQUEST and WS_CONNECT share, in their order.
func checkScope(t Type, path []byte, version, scheme, rootPath string, client, server *Addr) error {
	if !utf8.Valid(path) {
		return fmt.Errorf("protocol: %s field path: %w", t, ErrInvalidUTF8)
	}
	if err := checkStr(t, "http_version", version); err != nil {
		return err
	}
	if err := checkStr(t, "scheme", scheme); err != nil {
		return err
	}
	if err := checkStr(t, "root_path", rootPath); err != nil {
		return err
	}
	if err := checkAddr(t, "client", client); err != nil {
		return err
	}
	return checkAddr(t, "server", server)
}

// checkTLS checks the str fields of a tls item (nil: no item).
func checkTLS(t Type, ti *TLSInfo) error {
	if ti == nil {
		return nil
	}
	for _, c := range ti.ClientCertChain {
		if !utf8.Valid(c) {
			return fmt.Errorf("protocol: %s field tls.client_cert_chain: %w", t, ErrInvalidUTF8)
		}
	}
	if ti.HasClientCertName && !utf8.Valid(ti.ClientCertName) {
		return fmt.Errorf("protocol: %s field tls.client_cert_name: %w", t, ErrInvalidUTF8)
	}
	if ti.HasClientCertError && !utf8.Valid(ti.ClientCertError) {
		return fmt.Errorf("protocol: %s field tls.client_cert_error: %w", t, ErrInvalidUTF8)
	}
	return nil
}

// tlsFlags returns flags with FlagTLS set exactly when there is a tls item, and the frame's array
// length: n, or n+1 with the item.
func tlsFlags(flags uint64, ti *TLSInfo, n int) (uint64, int) {
	if ti == nil {
		return flags &^ FlagTLS, n
	}
	return flags | FlagTLS, n + 1
}

func appendOptStr(dst []byte, s []byte, present bool) []byte {
	if !present {
		return appendNil(dst)
	}
	return appendStrBytes(dst, s)
}

// appendTLS appends the tls item [tls_version, cipher_suite, client_cert_chain, client_cert_name,
// client_cert_error].
func appendTLS(dst []byte, ti *TLSInfo) []byte {
	dst = appendArrayLen(dst, TLSItems)
	dst = appendUint(dst, uint64(ti.Version))
	dst = appendUint(dst, uint64(ti.CipherSuite))
	dst = appendArrayLen(dst, len(ti.ClientCertChain))
	for _, c := range ti.ClientCertChain {
		dst = appendStrBytes(dst, c)
	}
	dst = appendOptStr(dst, ti.ClientCertName, ti.HasClientCertName)
	return appendOptStr(dst, ti.ClientCertError, ti.HasClientCertError)
}

// AppendHTTPRequest appends an HTTP_REQUEST frame, with the tls item and FlagTLS when r.TLS is not
// nil. It returns an error and dst unchanged if Method, Path, HTTPVersion, Scheme, RootPath, an
// Addr host or a str of r.TLS is not valid UTF-8 (or a port is outside 0..65535).
func AppendHTTPRequest(dst []byte, sid uint32, r *HTTPRequest) ([]byte, error) {
	if !utf8.Valid(r.Method) {
		return dst, fmt.Errorf("protocol: HTTP_REQUEST field method: %w", ErrInvalidUTF8)
	}
	if err := checkScope(TypeHTTPRequest, r.Path, r.HTTPVersion, r.Scheme, r.RootPath, r.Client, r.Server); err != nil {
		return dst, err
	}
	if err := checkTLS(TypeHTTPRequest, r.TLS); err != nil {
		return dst, err
	}
	flags, n := tlsFlags(r.Flags, r.TLS, 15)
	dst, start := beginFrame(dst, n, TypeHTTPRequest, sid)
	dst = appendStr(dst, r.HTTPVersion)
	dst = appendStrBytes(dst, r.Method)
	dst = appendStr(dst, r.Scheme)
	dst = appendStrBytes(dst, r.Path)
	dst = appendBin(dst, r.RawPath)
	dst = appendBin(dst, r.QueryString)
	dst = appendStr(dst, r.RootPath)
	dst = appendHeaders(dst, r.Headers)
	dst = appendAddr(dst, r.Client)
	dst = appendAddr(dst, r.Server)
	dst = appendUint(dst, flags)
	dst = appendBin(dst, r.Body)
	dst = appendBool(dst, r.MoreBody)
	if r.TLS != nil {
		dst = appendTLS(dst, r.TLS)
	}
	return endFrame(dst, start), nil
}

func appendBodyFrame(dst []byte, t Type, sid uint32, body []byte, more bool) []byte {
	dst, start := beginFrame(dst, 4, t, sid)
	dst = appendBin(dst, body)
	dst = appendBool(dst, more)
	return endFrame(dst, start)
}

// AppendRequestBody appends a REQUEST_BODY frame.
func AppendRequestBody(dst []byte, sid uint32, body []byte, more bool) []byte {
	return appendBodyFrame(dst, TypeRequestBody, sid, body, more)
}

// AppendResponseBody appends a RESPONSE_BODY frame.
func AppendResponseBody(dst []byte, sid uint32, body []byte, more bool) []byte {
	return appendBodyFrame(dst, TypeResponseBody, sid, body, more)
}

// AppendBodyRing appends a REQUEST_BODY_RING or RESPONSE_BODY_RING frame (SPEC §6); t is
// TypeRequestBodyRing or TypeResponseBodyRing (it panics otherwise: a programming error).
func AppendBodyRing(dst []byte, t Type, sid uint32, pos, length uint64, more bool) []byte {
	if t != TypeRequestBodyRing && t != TypeResponseBodyRing {
		panic("protocol: AppendBodyRing with type " + t.String())
	}
	dst, start := beginFrame(dst, 5, t, sid)
	dst = appendUint(dst, pos)
	dst = appendUint(dst, length)
	dst = appendBool(dst, more)
	return endFrame(dst, start)
}

// AppendDisconnect appends a DISCONNECT frame.
func AppendDisconnect(dst []byte, sid uint32) []byte {
	dst, start := beginFrame(dst, 2, TypeDisconnect, sid)
	return endFrame(dst, start)
}

// AppendCredit appends a CREDIT frame; t is TypeCreditG2W or TypeCreditW2G (it panics otherwise:
// a programming error).
func AppendCredit(dst []byte, t Type, sid uint32, increment uint64) []byte {
	if t != TypeCreditG2W && t != TypeCreditW2G {
		panic("protocol: AppendCredit with type " + t.String())
	}
	dst, start := beginFrame(dst, 3, t, sid)
	dst = appendUint(dst, increment)
	return endFrame(dst, start)
}

// AppendPing appends a PING or PONG frame; t is TypePing or TypePong (it panics otherwise:
// a programming error).
func AppendPing(dst []byte, t Type, token uint64) []byte {
	if t != TypePing && t != TypePong {
		panic("protocol: AppendPing with type " + t.String())
	}
	dst, start := beginFrame(dst, 3, t, 0)
	dst = appendUint(dst, token)
	return endFrame(dst, start)
}

// AppendResponseStart appends a RESPONSE_START frame. A start alone is body nil, more true.
// status must not be negative (it panics: a programming error); decoders accept 200..999 only.
func AppendResponseStart(dst []byte, sid uint32, status int, headers []Header, flags uint64, body []byte, more bool) []byte {
	if status < 0 {
		panic("protocol: AppendResponseStart with negative status")
	}
	dst, start := beginFrame(dst, 7, TypeResponseStart, sid)
	dst = appendUint(dst, uint64(status))
	dst = appendHeaders(dst, headers)
	dst = appendUint(dst, flags)
	dst = appendBin(dst, body)
	dst = appendBool(dst, more)
	return endFrame(dst, start)
}

// AppendEnd appends an END frame. Invalid UTF-8 in message is replaced by U+FFFD.
func AppendEnd(dst []byte, sid uint32, outcome uint64, message string) []byte {
	dst, start := beginFrame(dst, 4, TypeEnd, sid)
	dst = appendUint(dst, outcome)
	dst = appendValidStr(dst, message)
	return endFrame(dst, start)
}

// AppendWSConnect appends a WS_CONNECT frame, with the tls item and FlagTLS when c.TLS is not nil.
// It returns an error and dst unchanged if Path, HTTPVersion, Scheme, RootPath, an Addr host, a
// subprotocol or a str of c.TLS is not valid UTF-8 (or a port is outside 0..65535).
func AppendWSConnect(dst []byte, sid uint32, c *WSConnect) ([]byte, error) {
	const t = TypeWSConnect
	if err := checkScope(t, c.Path, c.HTTPVersion, c.Scheme, c.RootPath, c.Client, c.Server); err != nil {
		return dst, err
	}
	for _, p := range c.Subprotocols {
		if !utf8.Valid(p) {
			return dst, fmt.Errorf("protocol: %s field subprotocols: %w", t, ErrInvalidUTF8)
		}
	}
	if err := checkTLS(t, c.TLS); err != nil {
		return dst, err
	}
	flags, n := tlsFlags(c.Flags, c.TLS, 13)
	dst, start := beginFrame(dst, n, t, sid)
	dst = appendStr(dst, c.HTTPVersion)
	dst = appendStr(dst, c.Scheme)
	dst = appendStrBytes(dst, c.Path)
	dst = appendBin(dst, c.RawPath)
	dst = appendBin(dst, c.QueryString)
	dst = appendStr(dst, c.RootPath)
	dst = appendHeaders(dst, c.Headers)
	dst = appendAddr(dst, c.Client)
	dst = appendAddr(dst, c.Server)
	dst = appendArrayLen(dst, len(c.Subprotocols))
	for _, p := range c.Subprotocols {
		dst = appendStrBytes(dst, p)
	}
	dst = appendUint(dst, flags)
	if c.TLS != nil {
		dst = appendTLS(dst, c.TLS)
	}
	return endFrame(dst, start), nil
}

// AppendWSMessage appends a WS_RECEIVE or WS_SEND frame; t is TypeWSReceive or TypeWSSend (it
// panics otherwise: a programming error). A text message (text true) is encoded as str: the
// caller guarantees that data is valid UTF-8 (decoders check it); a binary one as bin.
func AppendWSMessage(dst []byte, t Type, sid uint32, text bool, data []byte) []byte {
	if t != TypeWSReceive && t != TypeWSSend {
		panic("protocol: AppendWSMessage with type " + t.String())
	}
	dst, start := beginFrame(dst, 3, t, sid)
	if text {
		dst = appendStrBytes(dst, data)
	} else {
		dst = appendBin(dst, data)
	}
	return endFrame(dst, start)
}

// AppendWSClose appends a WS_DISCONNECT or WS_CLOSE frame; t is TypeWSDisconnect or TypeWSClose
// and code is in 0..MaxCloseCode (it panics otherwise: a programming error). Invalid UTF-8 in
// reason is replaced by U+FFFD.
func AppendWSClose(dst []byte, t Type, sid uint32, code int, reason string) []byte {
	if t != TypeWSDisconnect && t != TypeWSClose {
		panic("protocol: AppendWSClose with type " + t.String())
	}
	if code < 0 || code > MaxCloseCode {
		panic("protocol: AppendWSClose with code out of range")
	}
	dst, start := beginFrame(dst, 4, t, sid)
	dst = appendUint(dst, uint64(code))
	dst = appendValidStr(dst, reason)
	return endFrame(dst, start)
}

// AppendWSAccept appends a WS_ACCEPT frame. The subprotocol is encoded as str when
// hasSubprotocol (the caller guarantees that it is valid UTF-8; decoders check it), else as nil.
func AppendWSAccept(dst []byte, sid uint32, subprotocol []byte, hasSubprotocol bool, headers []Header) []byte {
	dst, start := beginFrame(dst, 4, TypeWSAccept, sid)
	if hasSubprotocol {
		dst = appendStrBytes(dst, subprotocol)
	} else {
		dst = appendNil(dst)
	}
	dst = appendHeaders(dst, headers)
	return endFrame(dst, start)
}

// AppendShutdown appends a SHUTDOWN frame (stream 0) with the grace period in milliseconds.
func AppendShutdown(dst []byte, graceMS uint64) []byte {
	dst, start := beginFrame(dst, 3, TypeShutdown, 0)
	dst = appendUint(dst, graceMS)
	return endFrame(dst, start)
}

// AppendCancel appends a CANCEL frame (G→W): the request timed out, the worker cancels the app.
func AppendCancel(dst []byte, sid uint32) []byte {
	dst, start := beginFrame(dst, 2, TypeCancel, sid)
	return endFrame(dst, start)
}

// AppendResponseTrailers appends a RESPONSE_TRAILERS frame; more is more_trailers.
func AppendResponseTrailers(dst []byte, sid uint32, headers []Header, more bool) []byte {
	dst, start := beginFrame(dst, 4, TypeResponseTrailers, sid)
	dst = appendHeaders(dst, headers)
	dst = appendBool(dst, more)
	return endFrame(dst, start)
}

// AppendResponsePathsend appends a RESPONSE_PATHSEND frame. Invalid UTF-8 in path is replaced
// by U+FFFD (so that the frame stays decodable; such a path names no file the gateway can open).
func AppendResponsePathsend(dst []byte, sid uint32, path string) []byte {
	dst, start := beginFrame(dst, 3, TypeResponsePathsend, sid)
	dst = appendValidStr(dst, path)
	return endFrame(dst, start)
}

// AppendEarlyHint appends an EARLY_HINT frame: one bin per Link header value.
func AppendEarlyHint(dst []byte, sid uint32, links [][]byte) []byte {
	dst, start := beginFrame(dst, 3, TypeEarlyHint, sid)
	dst = appendArrayLen(dst, len(links))
	for _, l := range links {
		dst = appendBin(dst, l)
	}
	return endFrame(dst, start)
}

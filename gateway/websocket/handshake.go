package websocket

import (
	"crypto/sha1"
	"encoding/base64"
	"strconv"

	"github.com/asgi-gateway/asgi-gateway/gateway/http1"
)

// keyGUID is the GUID of RFC 6455 section 1.3, appended to the client's key
// to compute Sec-WebSocket-Accept.
const keyGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Offer is what a valid upgrade request asks for, as far as the server
// answers it.
type Offer struct {
	Key          []byte   // Sec-WebSocket-Key (aliases the request)
	Subprotocols []string // from all Sec-WebSocket-Protocol fields, comma-split, trimmed, in order
	// Deflate reports that the client offered permessage-deflate in a form
	// we accept (always false when CheckHandshake was told not to allow it).
	Deflate bool
	// DeflateParams is what we answer to the accepted offer; it configures
	// the Decoder (SetDeflate) and the Compressor (NewCompressor).
	DeflateParams DeflateParams
	// ExpectContinue reports "Expect: 100-continue" in the request: the 101
	// must then follow a 100 (Continue) (RFC 9110 section 7.8).
	ExpectContinue bool
}

// HasSubprotocol reports whether the client offered the subprotocol s.
func (o *Offer) HasSubprotocol(s string) bool {
	for _, p := range o.Subprotocols {
		if p == s {
			return true
		}
	}
	return false
}

// HandshakeError is an upgrade request the server must refuse with an HTTP
// response: Status (400 or 426), a short Reason for the log or the body, and
// header fields to add to the response (426 lists the versions we speak).
//
// CheckHandshake returns a small set of fixed *HandshakeError values; callers
// must not modify them.
type HandshakeError struct {
	Status int
	Reason string
	Header [][2]string
}

func (e *HandshakeError) Error() string {
	return "websocket: " + strconv.Itoa(e.Status) + " " + e.Reason
}

func handshakeError(reason string) *HandshakeError {
	return &HandshakeError{Status: 400, Reason: reason}
}

// Handshake errors.
var (
	errNotUpgrade  = handshakeError("not a WebSocket upgrade request")
	errMethod      = handshakeError("WebSocket handshake requires GET")
	errHTTPVersion = handshakeError("WebSocket handshake requires HTTP/1.1")
	errNoHost      = handshakeError("missing Host header")
	errContent     = handshakeError("WebSocket handshake with content")
	errNoKey       = handshakeError("missing Sec-WebSocket-Key")
	errDupKey      = handshakeError("duplicate Sec-WebSocket-Key")
	errBadKey      = handshakeError("Sec-WebSocket-Key is not the base64 encoding of 16 bytes")
	errSubprotocol = handshakeError("invalid Sec-WebSocket-Protocol")
	// 426 names the version spoken (RFC 6455 §4.4) and, as every 426 must, the protocol to upgrade
	// to, with the upgrade connection option (RFC 9110 §15.5.22, §7.8).
	errVersion = &HandshakeError{Status: 426, Reason: "unsupported WebSocket version",
		Header: [][2]string{{"Sec-WebSocket-Version", "13"}, {"Upgrade", "websocket"}, {"Connection", "Upgrade"}}}
)

// IsUpgrade reports whether req asks for a WebSocket upgrade: an HTTP/1.1
// request whose Connection header lists "upgrade" and whose Upgrade field
// lines list the protocol "websocket" (ASCII case-insensitively; several
// lines are one list, RFC 9110 §5.3). The http1 parser sets req.Upgrade
// only when Connection lists "upgrade" and there is an Upgrade line.
func IsUpgrade(req *http1.Request) bool {
	if req.Upgrade == nil {
		return false
	}
	for i := range req.Headers {
		if string(req.Headers[i].Name) != "upgrade" {
			continue
		}
		for list, more := req.Headers[i].Value, true; more; {
			var e []byte
			e, list, more = http1.NextElement(list)
			if http1.EqualFold(e, "websocket") {
				return true
			}
		}
	}
	return false
}

// CheckHandshake validates an upgrade request (RFC 6455 section 4.2.1) and
// returns what it offers, or a *HandshakeError to answer with.
//
//   - The method must be GET, else 400: section 4.2.1 requires a GET and
//     tells the server to answer a handshake that does not match with "an
//     appropriate error code (such as 400 Bad Request)". 405 would have to
//     carry an Allow header naming the methods the target supports, which
//     only the application knows.
//   - The request must be HTTP/1.1 with a Host (the parser checks Host) and
//     must be an upgrade (IsUpgrade), else 400.
//   - It must have no content (a Content-Length above 0, or chunked), else
//     400: content in a GET has no semantics and may be refused as a request
//     smuggling attempt (RFC 9110 section 9.3.1); accepted, its bytes would
//     be read as the client's first frames.
//   - There must be exactly one Sec-WebSocket-Version field, "13", else 426 with "Sec-WebSocket-Version: 13" (section 4.2.2), also when
//     it is missing.
//   - Sec-WebSocket-Key must appear once and be the base64 encoding of
//     exactly 16 bytes, else 400.
//   - Sec-WebSocket-Protocol fields must be comma-separated lists of tokens,
//     else 400 (empty list elements are skipped).
//   - Sec-WebSocket-Extensions is only looked at when allowDeflate is set.
//     The first permessage-deflate offer we can honour is accepted (RFC 7692
//     section 5); other extensions and offers we cannot honour are declined,
//     never refused. A syntax error anywhere in the extension fields declines
//     all extensions.
func CheckHandshake(req *http1.Request, allowDeflate bool) (Offer, error) {
	var o Offer
	if !IsUpgrade(req) {
		return o, errNotUpgrade
	}
	if string(req.Method) != "GET" {
		return o, errMethod
	}
	if req.Minor != 1 {
		return o, errHTTPVersion
	}
	if req.Host == nil {
		return o, errNoHost
	}
	if req.Chunked || req.ContentLength > 0 {
		return o, errContent
	}
	o.ExpectContinue = req.ExpectContinue
	var (
		keys      int
		version   []byte
		versions  int
		sawDeflOK bool
		extSyntax = true
		params    DeflateParams
	)
	for i := range req.Headers {
		h := &req.Headers[i]
		switch string(h.Name) {
		case "sec-websocket-key":
			keys++
			o.Key = h.Value
		case "sec-websocket-version":
			versions++
			version = h.Value
		case "sec-websocket-protocol":
			for list, more := h.Value, true; more; {
				var e []byte
				e, list, more = http1.NextElement(list)
				if len(e) == 0 {
					continue
				}
				if !http1.IsToken(e) {
					return Offer{}, errSubprotocol
				}
				o.Subprotocols = append(o.Subprotocols, string(e))
			}
		case "sec-websocket-extensions":
			if allowDeflate && extSyntax {
				ok := parseExtensions(h.Value, func(name []byte, ps []extParam) {
					if sawDeflOK || !http1.EqualFold(name, "permessage-deflate") {
						return
					}
					if p, ok := acceptDeflate(ps); ok {
						sawDeflOK, params = true, p
					}
				})
				if !ok {
					extSyntax = false
				}
			}
		}
	}
	if versions != 1 || string(version) != "13" {
		return Offer{}, errVersion
	}
	switch {
	case keys == 0:
		return Offer{}, errNoKey
	case keys > 1:
		return Offer{}, errDupKey
	case !validKey(o.Key):
		return Offer{}, errBadKey
	}
	if sawDeflOK && extSyntax {
		o.Deflate, o.DeflateParams = true, params
	}
	return o, nil
}

// validKey reports whether key is the base64 encoding of exactly 16 bytes.
func validKey(key []byte) bool {
	if len(key) != 24 || key[22] != '=' || key[23] != '=' {
		return false
	}
	var b [18]byte
	n, err := base64.StdEncoding.Decode(b[:], key)
	return err == nil && n == 16
}

// extParam is one extension parameter; value is nil when it has none (a
// quoted value is stored unquoted).
type extParam struct{ name, value []byte }

// parseExtensions parses one Sec-WebSocket-Extensions field value (RFC 6455
// section 9.1) and calls f for each extension in it. It reports false on a
// syntax error. At most 8 parameters per extension are kept; more make the
// field invalid.
func parseExtensions(v []byte, f func(name []byte, ps []extParam)) bool {
	var store [8]extParam
	var unq [8][16]byte // unquoted values
	i := 0
	skipWS := func() {
		for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
			i++
		}
	}
	token := func() []byte {
		n := http1.TokenLen(v[i:])
		t := v[i : i+n]
		i += n
		return t
	}
	for {
		skipWS()
		if i == len(v) {
			return true
		}
		if v[i] == ',' { // empty list element
			i++
			continue
		}
		name := token()
		if len(name) == 0 {
			return false
		}
		ps := store[:0]
		for {
			skipWS()
			if i == len(v) || v[i] == ',' {
				break
			}
			if v[i] != ';' {
				return false
			}
			i++
			skipWS()
			p := extParam{name: token()}
			if len(p.name) == 0 || len(ps) == len(store) {
				return false
			}
			skipWS()
			if i < len(v) && v[i] == '=' {
				i++
				skipWS()
				if i < len(v) && v[i] == '"' {
					// quoted-string whose unescaped content must be a token
					u := unq[len(ps)][:0]
					for i++; ; i++ {
						if i == len(v) {
							return false
						}
						c := v[i]
						if c == '"' {
							i++
							break
						}
						if c == '\\' {
							if i++; i == len(v) {
								return false
							}
							c = v[i]
						}
						if len(u) == cap(u) {
							return false
						}
						u = append(u, c)
					}
					if !http1.IsToken(u) {
						return false
					}
					p.value = u
				} else {
					p.value = token()
					if len(p.value) == 0 {
						return false
					}
				}
			}
			ps = append(ps, p)
		}
		f(name, ps)
	}
}

// acceptDeflate decides whether we can honour one permessage-deflate offer
// (RFC 7692 section 7.1) and what we answer. We decline an offer with an
// unknown, duplicate or invalid parameter (section 7.1). We always answer
// server_no_context_takeover (allowed unrequested, section 7.1.1.1). A
// requested server_max_window_bits is echoed; the Compressor then compresses
// only messages no longer than that window, which keeps every back-reference
// inside it. We never answer client_max_window_bits: the inflater always has
// a 32 KiB window.
func acceptDeflate(ps []extParam) (DeflateParams, bool) {
	p := DeflateParams{ServerNoContextTakeover: true}
	var seen [4]bool
	for _, q := range ps {
		var k int
		switch {
		case http1.EqualFold(q.name, "server_no_context_takeover"):
			k = 0
		case http1.EqualFold(q.name, "client_no_context_takeover"):
			k = 1
		case http1.EqualFold(q.name, "server_max_window_bits"):
			k = 2
		case http1.EqualFold(q.name, "client_max_window_bits"):
			k = 3
		default:
			return DeflateParams{}, false
		}
		if seen[k] {
			return DeflateParams{}, false
		}
		seen[k] = true
		switch k {
		case 0:
			if q.value != nil {
				return DeflateParams{}, false
			}
		case 1:
			if q.value != nil {
				return DeflateParams{}, false
			}
			p.ClientNoContextTakeover = true
		case 2:
			bits, ok := windowBits(q.value)
			if !ok {
				return DeflateParams{}, false
			}
			p.ServerMaxWindowBits = bits
		case 3:
			if q.value != nil {
				if _, ok := windowBits(q.value); !ok {
					return DeflateParams{}, false
				}
			}
		}
	}
	return p, true
}

// windowBits parses a window size: an integer 8 to 15 without leading zeros.
func windowBits(v []byte) (int, bool) {
	switch {
	case len(v) == 1 && v[0] >= '8' && v[0] <= '9':
		return int(v[0] - '0'), true
	case len(v) == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5':
		return 10 + int(v[1]-'0'), true
	}
	return 0, false
}

// AcceptKey returns the Sec-WebSocket-Accept value for the client's key:
// base64(SHA-1(key + GUID)) (RFC 6455 section 4.2.2).
func AcceptKey(key []byte) string {
	var b [28]byte
	return string(appendAcceptKey(b[:0], key))
}

func appendAcceptKey(dst, key []byte) []byte {
	var buf [64]byte
	h := sha1.Sum(append(append(buf[:0], key...), keyGUID...))
	return base64.StdEncoding.AppendEncode(dst, h[:])
}

// AppendAccept appends the whole 101 response head for the offer o to dst,
// after a 100 (Continue) when o.ExpectContinue (RFC 9110 section 7.8: a
// server that switches protocols for a request with Upgrade and
// "Expect: 100-continue" must send the 100 first):
// the status line, Upgrade, Connection, Sec-WebSocket-Accept, then
// Sec-WebSocket-Protocol when subprotocol is not empty (it should be one of
// o.Subprotocols; see HasSubprotocol), Sec-WebSocket-Extensions when
// o.Deflate, then the extra header fields in the order given, then the empty
// line. It validates nothing.
func AppendAccept(dst []byte, o *Offer, subprotocol string, extra [][2][]byte) []byte {
	if o.ExpectContinue {
		dst = append(dst, "HTTP/1.1 100 Continue\r\n\r\n"...)
	}
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: "...)
	dst = appendAcceptKey(dst, o.Key)
	dst = append(dst, '\r', '\n')
	if subprotocol != "" {
		dst = append(dst, "sec-websocket-protocol: "...)
		dst = append(dst, subprotocol...)
		dst = append(dst, '\r', '\n')
	}
	if o.Deflate {
		dst = append(dst, "sec-websocket-extensions: "...)
		dst = o.DeflateParams.appendExtension(dst)
		dst = append(dst, '\r', '\n')
	}
	for _, h := range extra {
		dst = append(dst, h[0]...)
		dst = append(dst, ':', ' ')
		dst = append(dst, h[1]...)
		dst = append(dst, '\r', '\n')
	}
	return append(dst, '\r', '\n')
}

// appendExtension appends the permessage-deflate extension with p's
// parameters, as a server answers it.
func (p *DeflateParams) appendExtension(dst []byte) []byte {
	dst = append(dst, "permessage-deflate"...)
	if p.ServerNoContextTakeover {
		dst = append(dst, "; server_no_context_takeover"...)
	}
	if p.ClientNoContextTakeover {
		dst = append(dst, "; client_no_context_takeover"...)
	}
	if p.ServerMaxWindowBits != 0 {
		dst = append(dst, "; server_max_window_bits="...)
		dst = strconv.AppendInt(dst, int64(p.ServerMaxWindowBits), 10)
	}
	if p.ClientMaxWindowBits != 0 {
		dst = append(dst, "; client_max_window_bits="...)
		dst = strconv.AppendInt(dst, int64(p.ClientMaxWindowBits), 10)
	}
	return dst
}

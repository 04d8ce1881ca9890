package protocol

import (
	"errors"
	"strconv"
)

// Protocol constants (SPEC.md §1, §3, §4).
const (
	Version         = 1
	PrefixLen       = 4       // length prefix bytes
	DefaultMaxFrame = 1 << 20 // default frame limit (payload bytes)
	DefaultWindow   = 256 << 10
	BodyOverhead    = 64 // max body piece = min(window, maxFrame-BodyOverhead)
)

// Type is a frame type, the first item of every payload.
type Type uint8

// Frame types. 0x01..0x0F go from gateway to worker, 0x11..0x1F from worker to gateway.
const (
	TypeHello        Type = 0x01 // G→W
	TypeHTTPRequest  Type = 0x02
	TypeRequestBody  Type = 0x03
	TypeDisconnect   Type = 0x04
	TypeCreditG2W    Type = 0x05
	TypePing         Type = 0x06
	TypeWSConnect    Type = 0x07
	TypeWSReceive    Type = 0x08
	TypeWSDisconnect Type = 0x09
	TypeShutdown     Type = 0x0A
	TypeCancel       Type = 0x0B
	// TypeRequestBodyRing is REQUEST_BODY with the body in the body ring (SPEC.md §6).
	TypeRequestBodyRing Type = 0x0C
	TypeWorkerHello     Type = 0x11 // W→G
	TypeResponseStart   Type = 0x12
	TypeResponseBody    Type = 0x13
	TypeCreditW2G       Type = 0x14
	TypeEnd             Type = 0x15
	TypePong            Type = 0x16
	TypeWSAccept        Type = 0x17
	TypeWSSend          Type = 0x18
	TypeWSClose         Type = 0x19

	TypeResponseTrailers Type = 0x1A
	TypeResponsePathsend Type = 0x1B
	TypeEarlyHint        Type = 0x1C
	// TypeResponseBodyRing is RESPONSE_BODY with the body in the body ring (SPEC.md §6).
	TypeResponseBodyRing Type = 0x1D
)

// String returns the SPEC name of t, with the direction for the names both sides use
// ("HELLO" / "WORKER_HELLO", "CREDIT_G2W" / "CREDIT_W2G").
func (t Type) String() string {
	switch t {
	case TypeHello:
		return "HELLO"
	case TypeHTTPRequest:
		return "HTTP_REQUEST"
	case TypeRequestBody:
		return "REQUEST_BODY"
	case TypeDisconnect:
		return "DISCONNECT"
	case TypeCreditG2W:
		return "CREDIT_G2W"
	case TypePing:
		return "PING"
	case TypeWSConnect:
		return "WS_CONNECT"
	case TypeWSReceive:
		return "WS_RECEIVE"
	case TypeWSDisconnect:
		return "WS_DISCONNECT"
	case TypeShutdown:
		return "SHUTDOWN"
	case TypeCancel:
		return "CANCEL"
	case TypeRequestBodyRing:
		return "REQUEST_BODY_RING"
	case TypeWorkerHello:
		return "WORKER_HELLO"
	case TypeResponseStart:
		return "RESPONSE_START"
	case TypeResponseBody:
		return "RESPONSE_BODY"
	case TypeCreditW2G:
		return "CREDIT_W2G"
	case TypeEnd:
		return "END"
	case TypePong:
		return "PONG"
	case TypeWSAccept:
		return "WS_ACCEPT"
	case TypeWSSend:
		return "WS_SEND"
	case TypeWSClose:
		return "WS_CLOSE"
	case TypeResponseTrailers:
		return "RESPONSE_TRAILERS"
	case TypeResponsePathsend:
		return "RESPONSE_PATHSEND"
	case TypeEarlyHint:
		return "EARLY_HINT"
	case TypeResponseBodyRing:
		return "RESPONSE_BODY_RING"
	}
	return "Type(0x" + strconv.FormatUint(uint64(t), 16) + ")"
}

// FromGateway reports whether t is in the gateway-to-worker range 0x01..0x0F.
func (t Type) FromGateway() bool { return t >= 0x01 && t <= 0x0F }

// Known reports whether t is one of the frame types of this protocol version.
func (t Type) Known() bool {
	switch t {
	case TypeHello, TypeHTTPRequest, TypeRequestBody, TypeDisconnect, TypeCreditG2W, TypePing,
		TypeWSConnect, TypeWSReceive, TypeWSDisconnect, TypeShutdown, TypeCancel, TypeRequestBodyRing,
		TypeWorkerHello, TypeResponseStart, TypeResponseBody, TypeCreditW2G, TypeEnd, TypePong,
		TypeWSAccept, TypeWSSend, TypeWSClose, TypeResponseTrailers, TypeResponsePathsend, TypeEarlyHint,
		TypeResponseBodyRing:
		return true
	}
	return false
}

// Close code bounds a decoder accepts in WS_DISCONNECT and WS_CLOSE (any uint16; the users
// validate the meaning).
const MaxCloseCode = 0xffff

// HTTP_REQUEST flags (SPEC.md §3).
const (
	// FlagExpectContinue, bit 0: the client sent "Expect: 100-continue".
	FlagExpectContinue uint64 = 1
	// FlagTrailersAllowed, bit 1: the response may carry trailers (http.response.trailers).
	FlagTrailersAllowed uint64 = 2
	// FlagPathsend, bit 2: the gateway can send a file as the body (http.response.pathsend).
	FlagPathsend uint64 = 4
	// FlagEarlyHints, bit 3: the gateway can send 103 Early Hints (http.response.early_hint).
	FlagEarlyHints uint64 = 8
	// FlagTLS, bit 4 (HTTP_REQUEST and WS_CONNECT): the connection is TLS, and the frame has one
	// more item, the tls item (TLSInfo) of the ASGI TLS extension. The encoders set it from
	// HTTPRequest.TLS / WSConnect.TLS; the decoders require it to match the item.
	FlagTLS uint64 = 16
	// FlagSmallWindow, bit 5: the stream's response-body window starts at min(W, SmallWindow)
	// instead of W (HTTP/2 streams: CREDITs grow it as the client takes the response).
	FlagSmallWindow uint64 = 32
)

// SmallWindow is the initial response-body window of a stream with FlagSmallWindow.
const SmallWindow = 32 << 10

// TLSItems is the length of the tls item: [tls_version, cipher_suite, client_cert_chain,
// client_cert_name, client_cert_error].
const TLSItems = 5

// RESPONSE_START flags (SPEC.md §3).
const (
	// FlagTrailers, bit 0: the app asked for trailers.
	FlagTrailers uint64 = 1
	// FlagNoBodyYet, bit 1: a start alone (no body), sent before the app's first http.response.body:
	// the gateway holds the head until the stream's next frame (www.rst: not sent before a body
	// event).
	FlagNoBodyYet uint64 = 2
)

// END outcomes.
const (
	OutcomeOK         uint64 = 0
	OutcomeAppError   uint64 = 1
	OutcomeNoResponse uint64 = 2
)

// Status bounds a decoder accepts in RESPONSE_START (SPEC.md §3, "status 200–999").
const (
	MinStatus = 200
	MaxStatus = 999
)

// Errors. Decode and Reader errors wrap one of these, with the frame type and field as context.
var (
	ErrMalformed     = errors.New("protocol: malformed frame")
	ErrUnknownType   = errors.New("protocol: unknown frame type")
	ErrFrameTooLarge = errors.New("protocol: frame too large")
	ErrEmptyFrame    = errors.New("protocol: empty frame")
	ErrInvalidUTF8   = errors.New("protocol: invalid UTF-8 in str field")
)

// Header is one HTTP header: name and value as bytes.
type Header struct{ Name, Value []byte }

// Addr is a client or server address of an HTTP_REQUEST.
type Addr struct {
	Host    string
	Port    int
	HasPort bool // false → port encoded as nil (Unix socket server address)
}

// HTTPRequest is the ASGI http scope plus the first body piece. Path and RawPath are the full
// values sent on the wire (root_path already in front, see SPEC); all []byte fields may alias
// caller buffers.
type HTTPRequest struct {
	HTTPVersion string   // "1.0", "1.1", "2"
	Method      []byte   // encoded as str; must be valid UTF-8
	Scheme      string   // "http", "https"
	Path        []byte   // encoded as str; must be valid UTF-8
	RawPath     []byte   // bin
	QueryString []byte   // bin
	RootPath    string   // str
	Headers     []Header // each encoded [bin, bin]
	Client      *Addr    // nil → nil
	Server      *Addr    // nil → nil
	Flags       uint64   // FlagTLS is written from TLS, whatever Flags says
	Body        []byte
	MoreBody    bool
	TLS         *TLSInfo // nil: not a TLS connection (no tls item)
}

// WSConnect is the ASGI websocket scope of a WS_CONNECT. It shares HTTPRequest's scope fields
// (an HTTPRequest's Method and Body have no counterpart); all []byte fields may alias caller buffers.
type WSConnect struct {
	HTTPVersion  string   // "1.1", "2"
	Scheme       string   // "ws", "wss"
	Path         []byte   // encoded as str; must be valid UTF-8
	RawPath      []byte   // bin
	QueryString  []byte   // bin
	RootPath     string   // str
	Headers      []Header // each encoded [bin, bin]
	Client       *Addr    // nil → nil
	Server       *Addr    // nil → nil
	Subprotocols [][]byte // each encoded as str; must be valid UTF-8
	Flags        uint64   // FlagTLS is written from TLS, whatever Flags says
	TLS          *TLSInfo // nil: not a TLS connection (no tls item)
}

// TLSInfo is the tls item of an HTTP_REQUEST or WS_CONNECT on a TLS connection: the per-connection
// part of the ASGI TLS extension (scope["extensions"]["tls"]); server_cert, the same for every
// connection, is in the gateway's HELLO instead. The str fields must be valid UTF-8; all []byte
// fields may alias caller buffers.
type TLSInfo struct {
	Version            uint16   // tls_version, e.g. 0x0304 (TLS 1.3)
	CipherSuite        uint16   // cipher_suite, e.g. 0x1301 (TLS_AES_128_GCM_SHA256)
	ClientCertChain    [][]byte // client_cert_chain: PEM each, the client's certificate first; str
	ClientCertName     []byte   // client_cert_name: the RFC 4514 subject, when HasClientCertName; str
	HasClientCertName  bool     // false → nil (no client certificate)
	ClientCertError    []byte   // client_cert_error, when HasClientCertError; str
	HasClientCertError bool     // false → nil (no certificate, or a verified one)
}

// GatewayHello is the gateway's HELLO map.
type GatewayHello struct {
	Protocol, PID, MaxFrame, Window, WorkerID uint64
	ServerCert                                string // PEM of the TLS listener's certificate; "": no TLS, key not written
	Ring                                      uint64 // the body ring's size R per direction (SPEC §6); 0: no ring, key not written
}

// WorkerHello is the worker's HELLO map.
type WorkerHello struct {
	Protocol, PID uint64
	Python        string
	Features      []string
	Error         string // non-empty → encoded instead of python/features, as the SPEC says
}

// Frame is one decoded payload. Decode fills only the fields of its type and zeroes the others;
// []byte fields and Headers alias the payload and are valid until the next Decode (Headers' backing
// array is reused: zero allocations in steady state). Hello fields are allocated (once per
// connection). A Frame must not be copied after its first Decode (Request.Client/Server/TLS and
// WS.Client/Server/TLS point into it).
type Frame struct {
	Type      Type
	Stream    uint32
	Request   HTTPRequest // HTTP_REQUEST
	Status    int         // RESPONSE_START
	Headers   []Header    // RESPONSE_START, WS_ACCEPT, RESPONSE_TRAILERS
	Flags     uint64      // RESPONSE_START
	Body      []byte      // REQUEST_BODY, RESPONSE_START, RESPONSE_BODY; WS_RECEIVE/WS_SEND data
	MoreBody  bool        // REQUEST_BODY, RESPONSE_START, RESPONSE_BODY; RESPONSE_TRAILERS more_trailers
	Increment uint64      // CREDIT
	Token     uint64      // PING/PONG
	Outcome   uint64      // END
	Message   []byte      // END; WS_DISCONNECT/WS_CLOSE reason; RESPONSE_PATHSEND path (valid UTF-8 checked)
	Links     [][]byte    // EARLY_HINT (backing array reused)

	WS             WSConnect // WS_CONNECT (Subprotocols' backing array is reused)
	Text           bool      // WS_RECEIVE/WS_SEND: the data was a str (valid UTF-8 checked), not a bin
	Code           int       // WS_DISCONNECT/WS_CLOSE close code, 0..65535
	Subprotocol    []byte    // WS_ACCEPT, when HasSubprotocol (valid UTF-8 checked)
	HasSubprotocol bool      // WS_ACCEPT: the subprotocol was not nil
	Grace          uint64    // SHUTDOWN grace_ms
	RingPos        uint64    // REQUEST_BODY_RING/RESPONSE_BODY_RING position (SPEC §6); MoreBody is their more_body
	RingLen        uint64    // REQUEST_BODY_RING/RESPONSE_BODY_RING length

	GatewayHello *GatewayHello // HELLO (G→W)
	WorkerHello  *WorkerHello  // HELLO (W→G)

	// Reused storage, so that steady-state decoding does not allocate.
	client, server Addr
	reqHeaders     []Header
	respHeaders    []Header
	subprotocols   [][]byte
	links          [][]byte
	tls            TLSInfo
	certChain      [][]byte
	rootPath       string
	clientHost     string
	serverHost     string
	otherVersion   string
	otherScheme    string
}

package protocol

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

type vector struct {
	Name      string          `json:"name"`
	Direction string          `json:"direction"`
	Value     json.RawMessage `json:"value"`
	Hex       string          `json:"hex"`
	Malformed string          `json:"malformed"` // why the frame breaks the SPEC: decoders must reject it
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	data, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(data, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("no vectors")
	}
	return vs
}

// typedJSON converts the vectors' typed JSON ({"bin": hex} for msgpack bin, everything else
// itself) into the generic form used for comparisons: []byte, string, uint64 (int64 if negative),
// bool, nil, []any, map[string]any.
func typedJSON(t testing.TB, raw json.RawMessage) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	out, err := fromJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func fromJSON(v any) (any, error) {
	switch v := v.(type) {
	case json.Number:
		if u, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			return u, nil
		}
		return strconv.ParseInt(string(v), 10, 64)
	case map[string]any:
		if h, ok := v["bin"].(string); ok && len(v) == 1 {
			return hex.DecodeString(h)
		}
		m := make(map[string]any, len(v))
		for k, x := range v {
			y, err := fromJSON(x)
			if err != nil {
				return nil, err
			}
			m[k] = y
		}
		return m, nil
	case []any:
		a := make([]any, len(v))
		for i, x := range v {
			y, err := fromJSON(x)
			if err != nil {
				return nil, err
			}
			a[i] = y
		}
		return a, nil
	}
	return v, nil // string, bool, nil
}

// generic normalises a value decoded by msgpack.Decoder.DecodeInterface into the same form.
func generic(v any) any {
	switch v := v.(type) {
	case int8:
		return normInt(int64(v))
	case int16:
		return normInt(int64(v))
	case int32:
		return normInt(int64(v))
	case int64:
		return normInt(v)
	case uint8:
		return uint64(v)
	case uint16:
		return uint64(v)
	case uint32:
		return uint64(v)
	case uint64:
		return v
	case []any:
		a := make([]any, len(v))
		for i, x := range v {
			a[i] = generic(x)
		}
		return a
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = generic(x)
		}
		return m
	}
	return v
}

func normInt(v int64) any {
	if v >= 0 {
		return uint64(v)
	}
	return v
}

func headersValue(hs []Header) []any {
	a := make([]any, len(hs))
	for i, h := range hs {
		a[i] = []any{bytesOf(h.Name), bytesOf(h.Value)}
	}
	return a
}

// bytesOf returns b, with nil as empty (a decoded empty bin is an empty slice either way).
func bytesOf(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func addrValue(a *Addr) any {
	if a == nil {
		return nil
	}
	var port any
	if a.HasPort {
		port = uint64(a.Port)
	}
	return []any{a.Host, port}
}

// optStr is a str that may be nil.
func optStr(s []byte, present bool) any {
	if !present {
		return nil
	}
	return string(s)
}

// appendTLSValue appends the tls item, when there is one.
func appendTLSValue(v []any, ti *TLSInfo) []any {
	if ti == nil {
		return v
	}
	chain := make([]any, len(ti.ClientCertChain))
	for i, c := range ti.ClientCertChain {
		chain[i] = string(c)
	}
	return append(v, []any{uint64(ti.Version), uint64(ti.CipherSuite), chain,
		optStr(ti.ClientCertName, ti.HasClientCertName), optStr(ti.ClientCertError, ti.HasClientCertError)})
}

// frameValue turns a decoded Frame back into the generic payload value [type, sid, fields...].
func frameValue(f *Frame) any {
	v := []any{uint64(f.Type), uint64(f.Stream)}
	switch f.Type {
	case TypeHello:
		h := f.GatewayHello
		m := map[string]any{"protocol": h.Protocol, "pid": h.PID, "max_frame": h.MaxFrame,
			"window": h.Window, "worker_id": h.WorkerID}
		if h.ServerCert != "" {
			m["server_cert"] = h.ServerCert
		}
		if h.Ring != 0 {
			m["ring"] = h.Ring
		}
		v = append(v, m)
	case TypeWorkerHello:
		h := f.WorkerHello
		m := map[string]any{"protocol": h.Protocol, "pid": h.PID}
		if h.Error != "" {
			m["error"] = h.Error
		} else {
			feats := make([]any, len(h.Features))
			for i, s := range h.Features {
				feats[i] = s
			}
			m["python"] = h.Python
			m["features"] = feats
		}
		v = append(v, m)
	case TypeHTTPRequest:
		q := &f.Request
		v = append(v, q.HTTPVersion, string(q.Method), q.Scheme, string(q.Path), bytesOf(q.RawPath),
			bytesOf(q.QueryString), q.RootPath, headersValue(q.Headers), addrValue(q.Client),
			addrValue(q.Server), q.Flags, bytesOf(q.Body), q.MoreBody)
		v = appendTLSValue(v, q.TLS)
	case TypeRequestBody, TypeResponseBody:
		v = append(v, bytesOf(f.Body), f.MoreBody)
	case TypeDisconnect:
	case TypeCreditG2W, TypeCreditW2G:
		v = append(v, f.Increment)
	case TypePing, TypePong:
		v = append(v, f.Token)
	case TypeResponseStart:
		v = append(v, uint64(f.Status), headersValue(f.Headers), f.Flags, bytesOf(f.Body), f.MoreBody)
	case TypeEnd:
		v = append(v, f.Outcome, string(f.Message))
	case TypeWSConnect:
		c := &f.WS
		subs := make([]any, len(c.Subprotocols))
		for i, p := range c.Subprotocols {
			subs[i] = string(p)
		}
		v = append(v, c.HTTPVersion, c.Scheme, string(c.Path), bytesOf(c.RawPath), bytesOf(c.QueryString),
			c.RootPath, headersValue(c.Headers), addrValue(c.Client), addrValue(c.Server), subs, c.Flags)
		v = appendTLSValue(v, c.TLS)
	case TypeWSReceive, TypeWSSend:
		if f.Text {
			v = append(v, string(f.Body))
		} else {
			v = append(v, bytesOf(f.Body))
		}
	case TypeWSDisconnect, TypeWSClose:
		v = append(v, uint64(f.Code), string(f.Message))
	case TypeWSAccept:
		var sub any
		if f.HasSubprotocol {
			sub = string(f.Subprotocol)
		}
		v = append(v, sub, headersValue(f.Headers))
	case TypeShutdown:
		v = append(v, f.Grace)
	case TypeCancel:
	case TypeRequestBodyRing, TypeResponseBodyRing:
		v = append(v, f.RingPos, f.RingLen, f.MoreBody)
	case TypeResponseTrailers:
		v = append(v, headersValue(f.Headers), f.MoreBody)
	case TypeResponsePathsend:
		v = append(v, string(f.Message))
	case TypeEarlyHint:
		links := make([]any, len(f.Links))
		for i, l := range f.Links {
			links[i] = bytesOf(l)
		}
		v = append(v, links)
	}
	return v
}

// appendFrame re-encodes a decoded Frame with the matching Append* function.
func appendFrame(dst []byte, f *Frame) ([]byte, error) {
	switch f.Type {
	case TypeHello:
		return AppendGatewayHello(dst, f.GatewayHello), nil
	case TypeWorkerHello:
		return AppendWorkerHello(dst, f.WorkerHello), nil
	case TypeHTTPRequest:
		return AppendHTTPRequest(dst, f.Stream, &f.Request)
	case TypeRequestBodyRing, TypeResponseBodyRing:
		return AppendBodyRing(dst, f.Type, f.Stream, f.RingPos, f.RingLen, f.MoreBody), nil
	case TypeRequestBody:
		return AppendRequestBody(dst, f.Stream, f.Body, f.MoreBody), nil
	case TypeDisconnect:
		return AppendDisconnect(dst, f.Stream), nil
	case TypeCreditG2W, TypeCreditW2G:
		return AppendCredit(dst, f.Type, f.Stream, f.Increment), nil
	case TypePing, TypePong:
		return AppendPing(dst, f.Type, f.Token), nil
	case TypeResponseStart:
		return AppendResponseStart(dst, f.Stream, f.Status, f.Headers, f.Flags, f.Body, f.MoreBody), nil
	case TypeResponseBody:
		return AppendResponseBody(dst, f.Stream, f.Body, f.MoreBody), nil
	case TypeEnd:
		return AppendEnd(dst, f.Stream, f.Outcome, string(f.Message)), nil
	case TypeWSConnect:
		return AppendWSConnect(dst, f.Stream, &f.WS)
	case TypeWSReceive, TypeWSSend:
		return AppendWSMessage(dst, f.Type, f.Stream, f.Text, f.Body), nil
	case TypeWSDisconnect, TypeWSClose:
		return AppendWSClose(dst, f.Type, f.Stream, f.Code, string(f.Message)), nil
	case TypeWSAccept:
		return AppendWSAccept(dst, f.Stream, f.Subprotocol, f.HasSubprotocol, f.Headers), nil
	case TypeShutdown:
		return AppendShutdown(dst, f.Grace), nil
	case TypeCancel:
		return AppendCancel(dst, f.Stream), nil
	case TypeResponseTrailers:
		return AppendResponseTrailers(dst, f.Stream, f.Headers, f.MoreBody), nil
	case TypeResponsePathsend:
		return AppendResponsePathsend(dst, f.Stream, string(f.Message)), nil
	case TypeEarlyHint:
		return AppendEarlyHint(dst, f.Stream, f.Links), nil
	}
	return nil, fmt.Errorf("appendFrame: type %v", f.Type)
}

func TestVectors(t *testing.T) {
	seen := map[Type]bool{}
	for _, vec := range loadVectors(t) {
		t.Run(vec.Name, func(t *testing.T) {
			frame, err := hex.DecodeString(vec.Hex)
			if err != nil {
				t.Fatal(err)
			}
			want := typedJSON(t, vec.Value)

			// Framing: the Reader yields exactly the payload.
			rd := NewReader(bytes.NewReader(frame), DefaultMaxFrame)
			payload, err := rd.Next()
			if err != nil {
				t.Fatalf("Reader.Next: %v", err)
			}
			if !bytes.Equal(payload, frame[PrefixLen:]) {
				t.Fatalf("Reader payload mismatch")
			}

			// Cross-check the vector itself with a generic msgpack decoder.
			dec := msgpack.NewDecoder(bytes.NewReader(payload))
			gv, err := dec.DecodeInterface()
			if err != nil {
				t.Fatalf("DecodeInterface: %v", err)
			}
			if g := generic(gv); !reflect.DeepEqual(g, want) {
				t.Fatalf("generic decode:\n got %#v\nwant %#v", g, want)
			}

			var f Frame
			if vec.Malformed != "" {
				err := f.Decode(payload)
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Decode of a malformed frame (%s): %v, want ErrMalformed", vec.Malformed, err)
				}
				t.Logf("rejected: %v", err)
				return
			}
			if err := f.Decode(payload); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			seen[f.Type] = true
			if got := f.Type.FromGateway(); got != (vec.Direction == "g2w") {
				t.Errorf("FromGateway() = %v for direction %s", got, vec.Direction)
			}
			if got := frameValue(&f); !reflect.DeepEqual(got, want) {
				t.Fatalf("Decode:\n got %#v\nwant %#v", got, want)
			}

			out, err := appendFrame([]byte("prefix"), &f)
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			if string(out[:6]) != "prefix" {
				t.Fatalf("append clobbered dst")
			}
			if got := hex.EncodeToString(out[6:]); got != vec.Hex {
				t.Fatalf("re-encode:\n got %s\nwant %s", got, vec.Hex)
			}
		})
	}
	for _, typ := range []Type{TypeHello, TypeHTTPRequest, TypeRequestBody, TypeDisconnect, TypeCreditG2W,
		TypePing, TypeWSConnect, TypeWSReceive, TypeWSDisconnect, TypeShutdown, TypeCancel,
		TypeWorkerHello, TypeResponseStart, TypeResponseBody, TypeCreditW2G, TypeEnd, TypePong,
		TypeWSAccept, TypeWSSend, TypeWSClose, TypeResponseTrailers, TypeResponsePathsend, TypeEarlyHint,
		TypeRequestBodyRing, TypeResponseBodyRing} {
		if !seen[typ] {
			t.Errorf("no vector for %v", typ)
		}
	}
}

func TestTypeString(t *testing.T) {
	for typ, want := range map[Type]string{TypeHello: "HELLO", TypeHTTPRequest: "HTTP_REQUEST",
		TypeResponseStart: "RESPONSE_START", TypeEnd: "END", TypePong: "PONG", 0x7f: "Type(0x7f)",
		TypeWSConnect: "WS_CONNECT", TypeWSReceive: "WS_RECEIVE", TypeWSDisconnect: "WS_DISCONNECT",
		TypeShutdown: "SHUTDOWN", TypeWSAccept: "WS_ACCEPT", TypeWSSend: "WS_SEND", TypeWSClose: "WS_CLOSE",
		TypeCancel: "CANCEL", TypeResponseTrailers: "RESPONSE_TRAILERS", TypeResponsePathsend: "RESPONSE_PATHSEND",
		TypeEarlyHint: "EARLY_HINT", TypeRequestBodyRing: "REQUEST_BODY_RING",
		TypeResponseBodyRing: "RESPONSE_BODY_RING", 0x0d: "Type(0xd)", 0x1e: "Type(0x1e)"} {
		if got := typ.String(); got != want {
			t.Errorf("%d: %q, want %q", typ, got, want)
		}
	}
	if !TypePing.FromGateway() || TypePong.FromGateway() || Type(0).FromGateway() {
		t.Error("FromGateway")
	}
	for _, typ := range []Type{TypeWSConnect, TypeWSReceive, TypeWSDisconnect, TypeShutdown, TypeCancel} {
		if !typ.FromGateway() || !typ.Known() {
			t.Errorf("%v: FromGateway %v, Known %v", typ, typ.FromGateway(), typ.Known())
		}
	}
	for _, typ := range []Type{TypeWSAccept, TypeWSSend, TypeWSClose, TypeResponseTrailers, TypeResponsePathsend,
		TypeEarlyHint} {
		if typ.FromGateway() || !typ.Known() {
			t.Errorf("%v: FromGateway %v, Known %v", typ, typ.FromGateway(), typ.Known())
		}
	}
	if !TypeRequestBodyRing.FromGateway() || !TypeRequestBodyRing.Known() || TypeResponseBodyRing.FromGateway() ||
		!TypeResponseBodyRing.Known() {
		t.Error("ring frame types: direction or Known")
	}
	for _, typ := range []Type{0x00, 0x0d, 0x0f, 0x10, 0x1e, 0x1f, 0x20} {
		if typ.Known() {
			t.Errorf("%v known", typ)
		}
	}
}

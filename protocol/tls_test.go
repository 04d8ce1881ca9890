package protocol

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func testTLSInfo() *TLSInfo {
	return &TLSInfo{
		Version:           0x0304,
		CipherSuite:       0x1301,
		ClientCertChain:   [][]byte{[]byte("-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n"), bytes.Repeat([]byte("p"), 300)},
		ClientCertName:    []byte("CN=client,O=Example"),
		HasClientCertName: true,
	}
}

// The tls item goes with flag TLS, both ways, in HTTP_REQUEST and WS_CONNECT.
func TestTLSRoundTrip(t *testing.T) {
	ti := testTLSInfo()
	req := realisticRequest()
	req.Scheme = "https"
	req.Flags = FlagPathsend
	req.TLS = ti
	out, err := AppendHTTPRequest(nil, 7, req)
	if err != nil {
		t.Fatal(err)
	}
	f := mustDecode(t, "request", payloadOf(t, out))
	if f.Request.Flags != FlagPathsend|FlagTLS {
		t.Errorf("flags %d, want %d", f.Request.Flags, FlagPathsend|FlagTLS)
	}
	if f.Request.TLS == nil || !reflect.DeepEqual(*f.Request.TLS, *ti) {
		t.Errorf("tls %+v, want %+v", f.Request.TLS, ti)
	}

	ws := realisticWSConnect()
	ws.TLS = &TLSInfo{Version: 0x0303, CipherSuite: 0xc02f, ClientCertChain: [][]byte{}, ClientCertError: []byte(""), HasClientCertError: true}
	out, err = AppendWSConnect(nil, 9, ws)
	if err != nil {
		t.Fatal(err)
	}
	f = mustDecode(t, "ws_connect", payloadOf(t, out))
	got := f.WS.TLS
	if f.WS.Flags != FlagTLS || got == nil || got.Version != 0x0303 || got.CipherSuite != 0xc02f ||
		len(got.ClientCertChain) != 0 || got.HasClientCertName || got.ClientCertName != nil ||
		!got.HasClientCertError || got.ClientCertError == nil || len(got.ClientCertError) != 0 {
		t.Errorf("ws tls: flags %d, %+v", f.WS.Flags, got)
	}

	// A following frame without the item leaves no TLS behind.
	req.TLS = nil
	out, _ = AppendHTTPRequest(nil, 7, req)
	if err := f.Decode(payloadOf(t, out)); err != nil {
		t.Fatal(err)
	}
	if f.Request.TLS != nil || f.Request.Flags != FlagPathsend {
		t.Errorf("stale tls: flags %d, %+v", f.Request.Flags, f.Request.TLS)
	}
}

// Without TLS the frames are what they were before the extension: FlagTLS in Flags is not written.
func TestTLSFlagFollowsTheItem(t *testing.T) {
	req := realisticRequest()
	plain, _ := AppendHTTPRequest(nil, 7, req)
	req.Flags = FlagTLS
	flagged, err := AppendHTTPRequest(nil, 7, req)
	if err != nil || !bytes.Equal(plain, flagged) {
		t.Fatalf("FlagTLS without TLS changed the frame (%v)", err)
	}
	if plain[PrefixLen] != 0x9f { // fixarray of 15
		t.Fatalf("array header %#x", plain[PrefixLen])
	}
	ws := realisticWSConnect()
	plain, _ = AppendWSConnect(nil, 7, ws)
	ws.Flags = FlagTLS
	flagged, _ = AppendWSConnect(nil, 7, ws)
	if !bytes.Equal(plain, flagged) || plain[PrefixLen] != 0x9d {
		t.Fatalf("WS_CONNECT: FlagTLS without TLS changed the frame")
	}
	ws.TLS = &TLSInfo{}
	withTLS, _ := AppendWSConnect(nil, 7, ws)
	if withTLS[PrefixLen] != 0x9e {
		t.Fatalf("WS_CONNECT with TLS: array header %#x", withTLS[PrefixLen])
	}
}

func TestTLSAppendRefusesInvalidUTF8(t *testing.T) {
	for name, mut := range map[string]func(ti *TLSInfo){
		"chain": func(ti *TLSInfo) { ti.ClientCertChain = [][]byte{[]byte("ok"), []byte("\xff")} },
		"name":  func(ti *TLSInfo) { ti.ClientCertName = []byte("CN=\xc3") },
		"error": func(ti *TLSInfo) { ti.ClientCertError, ti.HasClientCertError = []byte("\xfe"), true },
	} {
		ti := testTLSInfo()
		mut(ti)
		req := realisticRequest()
		req.TLS = ti
		out, err := AppendHTTPRequest([]byte("keep"), 1, req)
		if !errors.Is(err, ErrInvalidUTF8) || string(out) != "keep" || !strings.Contains(err.Error(), "tls.client_cert_"+name) {
			t.Errorf("HTTP_REQUEST %s: err %v, out %q", name, err, out)
		}
		ws := realisticWSConnect()
		ws.TLS = ti
		out, err = AppendWSConnect([]byte("keep"), 1, ws)
		if !errors.Is(err, ErrInvalidUTF8) || string(out) != "keep" {
			t.Errorf("WS_CONNECT %s: err %v, out %q", name, err, out)
		}
	}
	// A str that is not present is not checked.
	ti := testTLSInfo()
	ti.ClientCertName, ti.HasClientCertName = []byte("\xff"), false
	req := realisticRequest()
	req.TLS = ti
	if _, err := AppendHTTPRequest(nil, 1, req); err != nil {
		t.Errorf("absent name: %v", err)
	}
}

// requestWithTLS is a minimal HTTP_REQUEST of 16 items with flag TLS; tls is the item's hex.
func requestWithTLS(t *testing.T, tls string) []byte {
	return raw(t, "dc0010 02 01 a3312e31 a3474554 a56874747073 a12f c4012f c400 a0 90 c0 c0 10 c400 c2", tls)
}

func TestTLSItemStrict(t *testing.T) {
	f := mustDecode(t, "minimal", requestWithTLS(t, "95 cd0304 cd1301 90 c0 c0"))
	if ti := f.Request.TLS; ti == nil || ti.Version != 0x0304 || ti.CipherSuite != 0x1301 || ti.HasClientCertName {
		t.Fatalf("got %+v", ti)
	}
	// Integers in any encoding that fits.
	f = mustDecode(t, "loose ints", requestWithTLS(t, "95 d2 00000304 d1 1301 90 c0 c0"))
	if f.Request.TLS.Version != 0x0304 || f.Request.TLS.CipherSuite != 0x1301 {
		t.Fatalf("got %+v", f.Request.TLS)
	}
	for name, tls := range map[string]string{
		"nil item":            "c0",
		"map item":            "81 a161 01",
		"4 items":             "94 cd0304 cd1301 90 c0",
		"6 items":             "96 cd0304 cd1301 90 c0 c0 c0",
		"version 65536":       "95 ce00010000 cd1301 90 c0 c0",
		"version negative":    "95 ff cd1301 90 c0 c0",
		"version str":         "95 a3312e33 cd1301 90 c0 c0",
		"cipher nil":          "95 cd0304 c0 90 c0 c0",
		"chain nil":           "95 cd0304 cd1301 c0 c0 c0",
		"chain of bin":        "95 cd0304 cd1301 91 c400 c0 c0",
		"chain invalid utf8":  "95 cd0304 cd1301 91 a1ff c0 c0",
		"chain huge":          "95 cd0304 cd1301 ddffffffff a0 c0 c0",
		"name bin":            "95 cd0304 cd1301 90 c40141 c0",
		"name invalid utf8":   "95 cd0304 cd1301 90 a2c328 c0",
		"error int":           "95 cd0304 cd1301 90 c0 00",
		"error false":         "95 cd0304 cd1301 90 c0 c2",
		"truncated":           "95 cd0304 cd1301 90 c0",
		"trailing after item": "95 cd0304 cd1301 90 c0 c0 c0",
	} {
		p := requestWithTLS(t, tls)
		mustFail(t, name, p, ErrMalformed)
		var f Frame
		if n := allocBytes(func() { _ = f.Decode(p) }); n > 4096 { // the error value only
			t.Errorf("%s: %d bytes allocated", name, n)
		}
	}
	// The same item in WS_CONNECT.
	ws := "9e 07 01 a3312e31 a3777373 a12f c4012f c400 a0 90 c0 c0 90 10"
	mustDecode(t, "ws minimal", raw(t, ws, "95 cd0304 cd1301 90 c0 c0"))
	mustFail(t, "ws chain of bin", raw(t, ws, "95 cd0304 cd1301 91 c400 c0 c0"), ErrMalformed)
	mustFail(t, "ws 15 items", raw(t, "9f 07 01 a3312e31 a3777373 a12f c4012f c400 a0 90 c0 c0 90 10 c0 c0"), ErrMalformed)
	// A 17-item HTTP_REQUEST is not a TLS request with something more.
	mustFail(t, "17 items", raw(t, "dc0011 02 01 a3312e31 a3474554 a56874747073 a12f c4012f c400 a0 90 c0 c0 10 c400 c2",
		"95 cd0304 cd1301 90 c0 c0 c0"), ErrMalformed)
}

func TestHelloServerCert(t *testing.T) {
	h := &GatewayHello{Protocol: 1, PID: 2, MaxFrame: 3, Window: 4, WorkerID: 5, ServerCert: "-----BEGIN CERTIFICATE-----\n" + strings.Repeat("A", 900)}
	f := mustDecode(t, "hello with server_cert", payloadOf(t, AppendGatewayHello(nil, h)))
	if f.GatewayHello == nil || *f.GatewayHello != *h {
		t.Fatalf("got %+v", f.GatewayHello)
	}
	// Without TLS the key is not written: the frame is the 5-key map it always was.
	h.ServerCert = ""
	out := AppendGatewayHello(nil, h)
	if out[PrefixLen+3] != 0x85 || bytes.Contains(out, []byte("server_cert")) {
		t.Fatalf("hello without TLS: %x", out)
	}
	mustFail(t, "server_cert bin", raw(t, "93 01 00 82 a8 70726f746f636f6c 01 ab 7365727665725f63657274 c400"), ErrMalformed)
	mustFail(t, "server_cert nil", raw(t, "93 01 00 82 a8 70726f746f636f6c 01 ab 7365727665725f63657274 c0"), ErrMalformed)
}

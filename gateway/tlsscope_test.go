package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// getTLSScope fetches /tls, which the fake worker answers with the scope's TLS data.
func getTLSScope(t *testing.T, client *http.Client, url string) (tlsScope, *http.Response) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var got tlsScope
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("GET %s: %d %q: %v", url, resp.StatusCode, body, err)
	}
	return got, resp
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkTLSScope checks the scope's TLS data against what the client negotiated.
func checkTLSScope(t *testing.T, what string, got tlsScope, cs *tls.ConnectionState, serverCert string, clientCert []byte) {
	t.Helper()
	if !got.FlagTLS || !got.HasTLS {
		t.Fatalf("%s: no TLS data: %+v", what, got)
	}
	if got.ServerCert != serverCert {
		t.Errorf("%s: server_cert %q, want %q", what, got.ServerCert, serverCert)
	}
	if got.Version != cs.Version || got.CipherSuite != cs.CipherSuite || got.CipherSuite == 0 {
		t.Errorf("%s: version %#x suite %#x, the client negotiated %#x %#x", what, got.Version, got.CipherSuite, cs.Version, cs.CipherSuite)
	}
	if clientCert == nil {
		if len(got.Chain) != 0 || got.Name != nil || got.Error != nil {
			t.Errorf("%s: client certificate data without a client certificate: %+v", what, got)
		}
		return
	}
	want := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clientCert}))
	if len(got.Chain) != 1 || got.Chain[0] != want {
		t.Errorf("%s: client_cert_chain %q, want [%q]", what, got.Chain, want)
	}
	if got.Name == nil || *got.Name != "CN=test client" {
		t.Errorf("%s: client_cert_name %v", what, got.Name)
	}
	if got.Error != nil {
		t.Errorf("%s: client_cert_error %q", what, *got.Error)
	}
}

func TestTLSScopeHTTP1KeepAlive(t *testing.T) {
	pki := newTestPKI(t)
	_, addr := startTLSGateway(t, "ok", pki, func(c *Config) {
		c.TLS.CACerts = pki.caFile
		c.TLS.CertReqs = 2
	})
	serverCert := readFile(t, pki.certFile)
	var dials int
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}, NextProtos: []string{"http/1.1"}},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			dials++
			return (&net.Dialer{}).DialContext(ctx, network, a)
		},
	}}
	for i := 0; i < 3; i++ { // one connection's data, for each of its requests
		got, resp := getTLSScope(t, client, "https://"+addr+"/tls")
		if resp.ProtoMajor != 1 || got.Scheme != "https" {
			t.Fatalf("%s, scheme %q", resp.Proto, got.Scheme)
		}
		checkTLSScope(t, "HTTP/1.1", got, resp.TLS, serverCert, pki.client.Certificate[0])
	}
	if dials != 1 {
		t.Errorf("%d connections, want 1 (keep-alive)", dials)
	}
}

func TestTLSScopeHTTP2(t *testing.T) {
	pki := newTestPKI(t)
	_, addr := startTLSGateway(t, "ok", pki, func(c *Config) {
		c.TLS.CACerts = pki.caFile
		c.TLS.CertReqs = 1 // optional: asked for, verified when given
	})
	serverCert := readFile(t, pki.certFile)
	for _, certs := range [][]tls.Certificate{nil, {pki.client}} {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http2.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pki.pool, Certificates: certs},
		}}
		var clientCert []byte
		if certs != nil {
			clientCert = certs[0].Certificate[0]
		}
		for i := 0; i < 2; i++ { // two streams of one connection
			got, resp := getTLSScope(t, client, "https://"+addr+"/tls")
			if resp.ProtoMajor != 2 || got.Scheme != "https" {
				t.Fatalf("%s, scheme %q", resp.Proto, got.Scheme)
			}
			checkTLSScope(t, "HTTP/2", got, resp.TLS, serverCert, clientCert)
		}
	}
}

func TestTLSScopeTLS12(t *testing.T) {
	pki := newTestPKI(t)
	_, addr := startTLSGateway(t, "ok", pki, nil)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pki.pool, MaxVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true,
	}}
	got, resp := getTLSScope(t, client, "https://"+addr+"/tls")
	if got.Version != tls.VersionTLS12 {
		t.Errorf("tls_version %#x, want TLS 1.2", got.Version)
	}
	checkTLSScope(t, "TLS 1.2", got, resp.TLS, readFile(t, pki.certFile), nil)
}

// wsOverTLS sends a WebSocket upgrade over TLS; the fake worker denies it with a response that
// carries the scope's TLS data.
func wsOverTLS(t *testing.T, addr string, conf *tls.Config) (tlsScope, tls.ConnectionState) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var got tlsScope
	if resp.StatusCode != 403 || json.Unmarshal(body, &got) != nil {
		t.Fatalf("upgrade: %d %q", resp.StatusCode, body)
	}
	return got, conn.ConnectionState()
}

func TestTLSScopeWebSocket(t *testing.T) {
	pki := newTestPKI(t)
	_, addr := startTLSGateway(t, "ok", pki, func(c *Config) {
		c.TLS.CACerts = pki.caFile
		c.TLS.CertReqs = 1
	})
	serverCert := readFile(t, pki.certFile)
	got, cs := wsOverTLS(t, addr, &tls.Config{RootCAs: pki.pool, NextProtos: []string{"http/1.1"}})
	if got.Scheme != "wss" {
		t.Errorf("scheme %q", got.Scheme)
	}
	checkTLSScope(t, "wss", got, &cs, serverCert, nil)

	withCert := &tls.Config{RootCAs: pki.pool, NextProtos: []string{"http/1.1"}, Certificates: []tls.Certificate{pki.client}}
	got, cs = wsOverTLS(t, addr, withCert)
	checkTLSScope(t, "wss with a client certificate", got, &cs, serverCert, pki.client.Certificate[0])
}

// Plain HTTP, h2c and ws: no TLS data, no server_cert in the HELLO.
func TestTLSScopeAbsentWithoutTLS(t *testing.T) {
	_, addr := startGatewayCfg(t, "ok", func(c *Config) { c.HTTP2Cleartext = true })
	check := func(what string, got tlsScope) {
		t.Helper()
		if got.FlagTLS || got.HasTLS || got.ServerCert != "" {
			t.Errorf("%s: TLS data on a plain connection: %+v", what, got)
		}
	}
	got, _ := getTLSScope(t, &http.Client{Timeout: 5 * time.Second}, "http://"+addr+"/tls")
	if got.Scheme != "http" {
		t.Errorf("scheme %q", got.Scheme)
	}
	check("http", got)

	h2c := &http.Client{Timeout: 5 * time.Second, Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, a)
		},
	}}
	got, resp := getTLSScope(t, h2c, "http://"+addr+"/tls")
	if resp.ProtoMajor != 2 {
		t.Fatalf("h2c: %s", resp.Proto)
	}
	check("h2c", got)

	// A trusted proxy saying https does not make the connection TLS.
	body := rawGet(t, addr, "/tls", "X-Forwarded-Proto: https")
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.Scheme != "https" {
		t.Fatalf("proxied: %q (%v)", body, err)
	}
	check("X-Forwarded-Proto: https", got)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	wsResp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body2, _ := io.ReadAll(wsResp.Body)
	wsResp.Body.Close()
	if err := json.Unmarshal(body2, &got); err != nil || got.Scheme != "ws" {
		t.Fatalf("ws: %d %q (%v)", wsResp.StatusCode, body2, err)
	}
	check("ws", got)
}

// certWithSubject is a self-signed certificate whose subject is the given DER.
func certWithSubject(t *testing.T, rawSubject []byte) *x509.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(9),
		RawSubject:   rawSubject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestSubjectRFC4514(t *testing.T) {
	atv := func(oid asn1.ObjectIdentifier, v any) pkix.AttributeTypeAndValue {
		return pkix.AttributeTypeAndValue{Type: oid, Value: v}
	}
	var (
		cn     = asn1.ObjectIdentifier{2, 5, 4, 3}
		o      = asn1.ObjectIdentifier{2, 5, 4, 10}
		c      = asn1.ObjectIdentifier{2, 5, 4, 6}
		ou     = asn1.ObjectIdentifier{2, 5, 4, 11}
		email  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
		serial = asn1.ObjectIdentifier{2, 5, 4, 5}
		dc     = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
		uid    = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}
	)
	ia5 := func(s string) asn1.RawValue { return asn1.RawValue{Tag: asn1.TagIA5String, Bytes: []byte(s)} }
	for _, tc := range []struct {
		name string
		rdns pkix.RDNSequence
		want string
	}{
		// openssl -subj "/C=US/O=Example/CN=client": the last RDN first.
		{"usual order", pkix.RDNSequence{{atv(c, "US")}, {atv(o, "Example")}, {atv(cn, "client")}}, "CN=client,O=Example,C=US"},
		// The certificate's own order, which Subject.String() would reorder ("CN=client,O=Example").
		{"unusual order", pkix.RDNSequence{{atv(cn, "client")}, {atv(o, "Example")}}, "O=Example,CN=client"},
		{"multi-valued RDN", pkix.RDNSequence{{atv(o, "Example")}, {atv(ou, "Ops"), atv(cn, "client")}}, "OU=Ops+CN=client,O=Example"},
		{"escaping", pkix.RDNSequence{{atv(cn, " a,b+c\"d\\e<f>g;h#\x00 ")}}, `CN=\ a\,b\+c\"d\\e\<f\>g\;h#\00\ `},
		{"leading #", pkix.RDNSequence{{atv(cn, "#1")}}, `CN=\#1`},
		{"UTF-8", pkix.RDNSequence{{atv(cn, "café ☃")}}, "CN=café ☃"},
		{"BMPString", pkix.RDNSequence{{atv(cn, asn1.RawValue{Tag: asn1.TagBMPString, Bytes: []byte{0, 'h', 0x00, 0xe9}})}}, "CN=hé"},
		{"DC and UID", pkix.RDNSequence{{atv(dc, ia5("com"))}, {atv(dc, ia5("example"))}, {atv(uid, "jdoe")}}, "UID=jdoe,DC=example,DC=com"},
		// Types outside RFC 4514's table: the dotted OID and the value's DER as in the certificate
		// (an IA5String "a@b", a PrintableString "123").
		{"emailAddress", pkix.RDNSequence{{atv(email, ia5("a@b"))}, {atv(cn, "x")}}, "CN=x,1.2.840.113549.1.9.1=#1603614062"},
		{"serialNumber", pkix.RDNSequence{{atv(serial, "123")}}, "2.5.4.5=#1303313233"},
		// A T61String is read as Latin-1.
		{"T61String", pkix.RDNSequence{{atv(cn, asn1.RawValue{Tag: asn1.TagT61String, Bytes: []byte("caf\xe9")})}}, "CN=café"},
		{"empty", pkix.RDNSequence{}, ""},
	} {
		der, err := asn1.Marshal(tc.rdns)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := subjectRFC4514(certWithSubject(t, der)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestConnTLSInfoPlain(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if ti := connTLSInfo(a); ti != nil {
		t.Fatalf("plain connection: %+v", ti)
	}
	if serverCertPEM(nil) != "" || serverCertPEM(&tls.Config{}) != "" {
		t.Fatal("server_cert without a certificate")
	}
}

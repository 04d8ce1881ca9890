package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"net"
	"strings"

	"github.com/asgi-gateway/asgi-gateway/protocol"
)

// The ASGI TLS extension (asgiref specs/tls.rst): scope["extensions"]["tls"] on https and wss
// scopes. The data of a connection (protocol version, cipher suite, the client's certificate chain
// as PEM, its subject as an RFC 4514 string) is computed once, after the handshake, and shared by
// every request and stream of the connection (HTTP/1.1 keep-alive, HTTP/2 streams, the WebSocket);
// server_cert, the same for every connection, goes once to each worker in the HELLO.
//
// client_cert_error is always nil: --ssl-cert-reqs 1 and 2 have the handshake verify a certificate
// the client sends against --ssl-ca-certs (a certificate that fails verification fails the
// handshake, so no scope is ever built for it; resumed sessions carry the verified chains), and 0
// does not ask for one, so a client certificate in a scope is a verified one.

// connTLSInfo returns the TLS extension data of a handshaken connection; nil when nc is not TLS.
func connTLSInfo(nc net.Conn) *protocol.TLSInfo {
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return nil
	}
	cs := tc.ConnectionState()
	ti := &protocol.TLSInfo{
		Version:         cs.Version,
		CipherSuite:     cs.CipherSuite,
		ClientCertChain: make([][]byte, len(cs.PeerCertificates)),
	}
	for i, cert := range cs.PeerCertificates {
		ti.ClientCertChain[i] = certPEM(cert.Raw)
	}
	if len(cs.PeerCertificates) > 0 {
		ti.ClientCertName = []byte(subjectRFC4514(cs.PeerCertificates[0]))
		ti.HasClientCertName = true
	}
	return ti
}

// certPEM is the PEM text of a DER certificate.
func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// subjectRFC4514 is the certificate's subject as an RFC 4514 string, e.g. "CN=client,O=Example,C=US":
// the certificate's RDNs, last first, separated by ","; the attributes of a multi-valued RDN joined
// with "+"; the types of RFC 4514's table by their short names, with the string value escaped
// (§2.4); any other type, or a value that is not a string, as "OID=#" and the value's DER in hex, as
// the certificate has it. (Subject.String() is not RFC 4514: it rebuilds the RDNs from the parsed
// fields in a fixed order, which need not be the certificate's, and re-encodes the values it writes
// in hex.) The string types are decoded to UTF-8 by encoding/asn1 (a T61String as Latin-1); should
// anything else be invalid UTF-8, it becomes U+FFFD, so that the scope can always be sent.
func subjectRFC4514(cert *x509.Certificate) string {
	var rdns []attributeSET
	if rest, err := asn1.Unmarshal(cert.RawSubject, &rdns); err != nil || len(rest) != 0 {
		// Not reached: the certificate was parsed, and its subject with it.
		return strings.ToValidUTF8(cert.Subject.String(), "\uFFFD")
	}
	var b strings.Builder
	for i := len(rdns) - 1; i >= 0; i-- {
		if i != len(rdns)-1 {
			b.WriteByte(',')
		}
		for j, atv := range rdns[i] {
			if j > 0 {
				b.WriteByte('+')
			}
			name, named := rfc4514Names[atv.Type.String()]
			if !named {
				name = atv.Type.String()
			} else if s, ok := stringValue(atv.Value.FullBytes); ok {
				b.WriteString(name)
				b.WriteByte('=')
				writeRFC4514Value(&b, s)
				continue
			}
			b.WriteString(name)
			b.WriteString("=#")
			b.WriteString(hex.EncodeToString(atv.Value.FullBytes))
		}
	}
	return strings.ToValidUTF8(b.String(), "\uFFFD")
}

// attributeSET is one RDN, with each value kept as encoded (the SET suffix makes encoding/asn1
// read a SET OF).
type attributeSET []struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

// stringValue decodes a DER value of one of the ASN.1 string types (UTF8String, PrintableString,
// IA5String, T61String, BMPString, NumericString).
func stringValue(der []byte) (string, bool) {
	var v any
	if rest, err := asn1.Unmarshal(der, &v); err != nil || len(rest) != 0 {
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}

// rfc4514Names are the attribute types of RFC 4514 §3's table, by OID.
var rfc4514Names = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"2.5.4.6":                    "C",
	"2.5.4.9":                    "STREET",
	"0.9.2342.19200300.100.1.25": "DC",
	"0.9.2342.19200300.100.1.1":  "UID",
}

// writeRFC4514Value writes a string value with RFC 4514 §2.4's escapes: '"', '+', ',', ';', '<',
// '>' and '\' anywhere, '#' and ' ' at the start, ' ' at the end, and NUL as "\00".
func writeRFC4514Value(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == 0:
			b.WriteString(`\00`)
		case c == '"' || c == '+' || c == ',' || c == ';' || c == '<' || c == '>' || c == '\\',
			(c == '#' || c == ' ') && i == 0, c == ' ' && i == len(s)-1:
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
}

// serverCertPEM is the PEM of the certificate the listener sends: the leaf of --ssl-certfile.
func serverCertPEM(conf *tls.Config) string {
	if conf == nil || len(conf.Certificates) == 0 || len(conf.Certificates[0].Certificate) == 0 {
		return ""
	}
	return string(certPEM(conf.Certificates[0].Certificate[0]))
}

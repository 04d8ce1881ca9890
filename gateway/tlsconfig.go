package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// TLSOptions are the --ssl-* options, with uvicorn's names and meanings. TLS is on when CertFile is
// set; the listener then negotiates HTTP/2 or HTTP/1.1 by ALPN.
type TLSOptions struct {
	KeyFile         string // PEM private key; empty: the key is in CertFile
	CertFile        string // PEM certificate chain, leaf first
	KeyFilePassword string // for a key encrypted in the legacy PEM way ("Proc-Type: 4,ENCRYPTED")
	CACerts         string // PEM CA bundle that client certificates are verified against
	CertReqs        int    // client certificates: 0 not asked (CERT_NONE), 1 optional, 2 required
	Ciphers         string // TLS 1.2 cipher suites, colon-separated (OpenSSL or IANA names); "" or "TLSv1": Go's defaults
}

// Enabled reports whether the listener serves TLS.
func (o *TLSOptions) Enabled() bool { return o.CertFile != "" || o.KeyFile != "" }

// alpnProtocols is what the listener offers, in order of preference.
var alpnProtocols = []string{"h2", "http/1.1"}

// tlsConfig builds the server's tls.Config from the options; errors name the option at fault.
func (o *TLSOptions) tlsConfig() (*tls.Config, error) {
	if o.CertFile == "" {
		return nil, errors.New("--ssl-keyfile needs --ssl-certfile")
	}
	cert, err := loadKeyPair(o.CertFile, o.KeyFile, o.KeyFilePassword)
	if err != nil {
		return nil, err
	}
	conf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   append([]string(nil), alpnProtocols...),
		MinVersion:   tls.VersionTLS12, // HTTP/2 requires 1.2; 1.0 and 1.1 are deprecated (RFC 8996)
	}
	if o.CACerts != "" {
		pemBytes, err := os.ReadFile(o.CACerts)
		if err != nil {
			return nil, fmt.Errorf("--ssl-ca-certs: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("--ssl-ca-certs: no PEM certificate in %s", o.CACerts)
		}
		conf.ClientCAs = pool
	}
	switch o.CertReqs {
	case 0:
		conf.ClientAuth = tls.NoClientCert
	case 1:
		conf.ClientAuth = tls.VerifyClientCertIfGiven
	case 2:
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	default:
		return nil, fmt.Errorf("--ssl-cert-reqs %d: expected 0 (none), 1 (optional) or 2 (required)", o.CertReqs)
	}
	if o.CertReqs != 0 && conf.ClientCAs == nil {
		// Go would fall back to the system roots, which is almost never what a client-certificate
		// setup means: ask for the CA explicitly.
		return nil, fmt.Errorf("--ssl-cert-reqs %d needs --ssl-ca-certs (the CA that signs client certificates)", o.CertReqs)
	}
	suites, err := parseCiphers(o.Ciphers)
	if err != nil {
		return nil, err
	}
	conf.CipherSuites = suites
	return conf, nil
}

// loadKeyPair reads the certificate chain and the private key, decrypting a legacy encrypted PEM key.
func loadKeyPair(certFile, keyFile, password string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--ssl-certfile: %w", err)
	}
	keyPEM := certPEM
	keyOpt := "--ssl-certfile (no --ssl-keyfile given)"
	if keyFile != "" {
		keyOpt = "--ssl-keyfile"
		if keyPEM, err = os.ReadFile(keyFile); err != nil {
			return tls.Certificate{}, fmt.Errorf("--ssl-keyfile: %w", err)
		}
	}
	var block *pem.Block
	for rest := keyPEM; ; {
		block, rest = pem.Decode(rest)
		if block == nil {
			return tls.Certificate{}, fmt.Errorf("%s: no PEM private key found", keyOpt)
		}
		if strings.HasSuffix(block.Type, "PRIVATE KEY") {
			break
		}
	}
	switch {
	case block.Type == "ENCRYPTED PRIVATE KEY":
		// PKCS#8 encryption (PBES2), what "openssl genpkey -aes256" and OpenSSL 3 write.
		if password == "" {
			return tls.Certificate{}, fmt.Errorf("%s: the key is encrypted; give --ssl-keyfile-password", keyOpt)
		}
		der, err := decryptPKCS8(block.Bytes, []byte(password))
		if errors.Is(err, errPKCS8Password) {
			return tls.Certificate{}, fmt.Errorf("%s: cannot decrypt the key (wrong --ssl-keyfile-password?): %w", keyOpt, err)
		}
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("%s: cannot decrypt the encrypted PKCS#8 key: %w", keyOpt, err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	//lint:ignore SA1019 legacy PEM encryption is insecure by design but it is what --ssl-keyfile-password meets in the wild
	case x509.IsEncryptedPEMBlock(block): //nolint:staticcheck
		if password == "" {
			return tls.Certificate{}, fmt.Errorf("%s: the key is encrypted; give --ssl-keyfile-password", keyOpt)
		}
		//lint:ignore SA1019 see above: the only standard-library decryption of "Proc-Type: 4,ENCRYPTED" keys
		der, err := x509.DecryptPEMBlock(block, []byte(password)) //nolint:staticcheck
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("%s: cannot decrypt the key (wrong --ssl-keyfile-password?): %w", keyOpt, err)
		}
		block = &pem.Block{Type: block.Type, Bytes: der}
	}
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(block))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--ssl-certfile/--ssl-keyfile: %w", err)
	}
	return cert, nil
}

// opensslCipherNames maps OpenSSL's names of the TLS 1.2 suites Go implements to Go's ids.
var opensslCipherNames = map[string]uint16{
	"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-ECDSA-AES128-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	"ECDHE-RSA-AES128-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	"ECDHE-ECDSA-AES256-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	"ECDHE-RSA-AES256-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	"ECDHE-ECDSA-AES128-SHA256":     tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
	"ECDHE-RSA-AES128-SHA256":       tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	"AES128-GCM-SHA256":             tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	"AES256-GCM-SHA384":             tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	"AES128-SHA":                    tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	"AES256-SHA":                    tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	"AES128-SHA256":                 tls.TLS_RSA_WITH_AES_128_CBC_SHA256,
}

// parseCiphers turns --ssl-ciphers into Go cipher suite ids. Go's TLS cannot take OpenSSL's cipher
// string language ("HIGH:!aNULL"); it takes an explicit list of suite names (OpenSSL's or the IANA
// names Go uses), separated by colons, commas or spaces. uvicorn's default "TLSv1" (and "") keeps
// Go's default list. TLS 1.3 suites are not configurable in Go and are always enabled.
func parseCiphers(s string) ([]uint16, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "TLSv1" || s == "DEFAULT" {
		return nil, nil
	}
	byName := map[string]uint16{}
	for _, cs := range tls.CipherSuites() {
		byName[cs.Name] = cs.ID
	}
	for _, cs := range tls.InsecureCipherSuites() {
		byName[cs.Name] = cs.ID
	}
	tls13 := map[uint16]bool{}
	for _, cs := range tls.CipherSuites() {
		if len(cs.SupportedVersions) == 1 && cs.SupportedVersions[0] == tls.VersionTLS13 {
			tls13[cs.ID] = true
		}
	}
	var ids []uint16
	for _, name := range strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == ',' || r == ' ' }) {
		id, ok := opensslCipherNames[strings.ToUpper(name)]
		if !ok {
			id, ok = byName[strings.ToUpper(name)]
		}
		if !ok {
			return nil, fmt.Errorf("--ssl-ciphers: unknown or unsupported cipher suite %q (give a list of suite names, "+
				"such as ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256; OpenSSL's cipher-string "+
				"keywords and operators are not supported)", name)
		}
		if !tls13[id] { // a TLS 1.3 suite is enabled anyway
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		// As OpenSSL's "No cipher can be selected" (uvicorn exits with it): a list that leaves
		// TLS 1.2 no suite would refuse every TLS 1.2 client.
		return nil, fmt.Errorf("--ssl-ciphers %q: no TLS 1.2 cipher suite selected (TLS 1.3 suites are always "+
			"enabled and cannot be chosen); name TLS 1.2 suites, or leave the option out", s)
	}
	return ids, nil
}

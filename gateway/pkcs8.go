package gateway

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
)

// Encrypted PKCS#8 private keys ("ENCRYPTED PRIVATE KEY", RFC 5958 §3) with PBES2 (RFC 8018 §6.2):
// what OpenSSL 3 ("openssl genpkey -aes256", "openssl pkcs8 -topk8") and Python's cryptography
// write, and what uvicorn's --ssl-keyfile-password reads through OpenSSL. The Go standard library
// decrypts only the legacy "Proc-Type: 4,ENCRYPTED" keys. Supported: the PBKDF2 key derivation
// with any HMAC-SHA-1/-2 PRF, and AES-128/192/256-CBC or DES-EDE3-CBC; scrypt and PBES1 are refused
// by name.

var (
	oidPBES2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidScrypt    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
	oidPKCS5PBE1 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5}     // PBES1's pbeWith... (.1-.11)
	oidPKCS12PBE = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1} // PKCS#12's pbeWithSHAAnd... (.1-.6)

	pbkdf2PRFs = map[string]func() hash.Hash{
		"1.2.840.113549.2.7":  sha1.New, // hmacWithSHA1, the default
		"1.2.840.113549.2.8":  sha256.New224,
		"1.2.840.113549.2.9":  sha256.New,
		"1.2.840.113549.2.10": sha512.New384,
		"1.2.840.113549.2.11": sha512.New,
	}
	pbes2Ciphers = map[string]struct {
		keyLen int
		block  func(key []byte) (cipher.Block, error)
	}{
		"2.16.840.1.101.3.4.1.2":  {16, aes.NewCipher}, // aes128-CBC
		"2.16.840.1.101.3.4.1.22": {24, aes.NewCipher}, // aes192-CBC
		"2.16.840.1.101.3.4.1.42": {32, aes.NewCipher}, // aes256-CBC
		"1.2.840.113549.3.7":      {24, des.NewTripleDESCipher},
	}
)

// errPKCS8Password: the key did not decrypt to a private key: almost always a wrong password.
var errPKCS8Password = errors.New("the decrypted bytes are not a private key")

type encryptedPrivateKeyInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	Data      []byte
}

type pbes2Params struct {
	KeyDerivation pkix.AlgorithmIdentifier
	Encryption    pkix.AlgorithmIdentifier
}

type pbkdf2Params struct {
	Salt       []byte
	Iterations int
	KeyLength  int                      `asn1:"optional"`
	PRF        pkix.AlgorithmIdentifier `asn1:"optional"`
}

// maxPBKDF2Iterations bounds the work a key file can ask for (OpenSSL writes 2048; 10 million
// takes seconds).
const maxPBKDF2Iterations = 10_000_000

// decryptPKCS8 returns the PKCS#8 PrivateKeyInfo (DER) inside an EncryptedPrivateKeyInfo.
func decryptPKCS8(der []byte, password []byte) ([]byte, error) {
	var info encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(der, &info); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("not an EncryptedPrivateKeyInfo: %v", orTrailing(err, rest))
	}
	alg := info.Algorithm.Algorithm
	switch {
	case alg.Equal(oidPBES2):
	case isUnder(alg, oidPKCS5PBE1) || isUnder(alg, oidPKCS12PBE):
		return nil, fmt.Errorf("its encryption is PBES1 or PKCS#12 PBE (%v), which is not supported (PBES2 is: openssl pkcs8 -topk8 -v2 aes256)", alg)
	default:
		return nil, fmt.Errorf("unknown encryption algorithm %v", alg)
	}
	var params pbes2Params
	if rest, err := asn1.Unmarshal(info.Algorithm.Parameters.FullBytes, &params); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("bad PBES2 parameters: %v", orTrailing(err, rest))
	}
	kdf := params.KeyDerivation.Algorithm
	if kdf.Equal(oidScrypt) {
		return nil, errors.New("its key derivation is scrypt, which is not supported (PBKDF2 is: openssl pkcs8 -topk8 -v2 aes256)")
	}
	if !kdf.Equal(oidPBKDF2) {
		return nil, fmt.Errorf("unknown key derivation %v", kdf)
	}
	var kp pbkdf2Params
	if rest, err := asn1.Unmarshal(params.KeyDerivation.Parameters.FullBytes, &kp); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("bad PBKDF2 parameters: %v", orTrailing(err, rest))
	}
	if kp.Iterations < 1 || kp.Iterations > maxPBKDF2Iterations {
		return nil, fmt.Errorf("PBKDF2 iteration count %d outside 1..%d", kp.Iterations, maxPBKDF2Iterations)
	}
	prf := sha1.New
	if len(kp.PRF.Algorithm) > 0 {
		var ok bool
		if prf, ok = pbkdf2PRFs[kp.PRF.Algorithm.String()]; !ok {
			return nil, fmt.Errorf("unsupported PBKDF2 PRF %v", kp.PRF.Algorithm)
		}
	}
	enc, ok := pbes2Ciphers[params.Encryption.Algorithm.String()]
	if !ok {
		return nil, fmt.Errorf("unsupported cipher %v (AES-CBC and DES-EDE3-CBC are)", params.Encryption.Algorithm)
	}
	if kp.KeyLength != 0 && kp.KeyLength != enc.keyLen {
		return nil, fmt.Errorf("PBKDF2 key length %d does not fit the cipher's %d", kp.KeyLength, enc.keyLen)
	}
	var iv []byte
	if rest, err := asn1.Unmarshal(params.Encryption.Parameters.FullBytes, &iv); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("bad cipher IV: %v", orTrailing(err, rest))
	}
	key, err := pbkdf2.Key(prf, string(password), kp.Salt, kp.Iterations, enc.keyLen)
	if err != nil {
		return nil, fmt.Errorf("PBKDF2: %w", err)
	}
	block, err := enc.block(key)
	if err != nil {
		return nil, err
	}
	bs := block.BlockSize()
	if len(iv) != bs {
		return nil, fmt.Errorf("cipher IV of %d bytes, want %d", len(iv), bs)
	}
	data := info.Data
	if len(data) == 0 || len(data)%bs != 0 {
		return nil, fmt.Errorf("encrypted data of %d bytes is not whole %d-byte blocks", len(data), bs)
	}
	plain := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, data)
	// PKCS#7 padding: a wrong key leaves random bytes here (and, rarely, valid-looking ones, which
	// the parse below catches).
	pad := int(plain[len(plain)-1])
	if pad < 1 || pad > bs || !hmac.Equal(plain[len(plain)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		return nil, errPKCS8Password
	}
	plain = plain[:len(plain)-pad]
	if _, err := x509.ParsePKCS8PrivateKey(plain); err != nil {
		var seq asn1.RawValue
		if rest, aerr := asn1.Unmarshal(plain, &seq); aerr == nil && len(rest) == 0 && seq.Tag == asn1.TagSequence {
			return nil, fmt.Errorf("the decrypted key cannot be used: %w", err)
		}
		return nil, errPKCS8Password
	}
	return plain, nil
}

func isUnder(oid, prefix asn1.ObjectIdentifier) bool {
	return len(oid) > len(prefix) && oid[:len(prefix)].Equal(prefix)
}

func orTrailing(err error, rest []byte) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("%d trailing bytes", len(rest))
}

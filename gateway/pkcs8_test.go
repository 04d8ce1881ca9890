package gateway

import (
	"bytes"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readPEM(t *testing.T, name string) *pem.Block {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "pkcs8", name))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	return block
}

// TestDecryptPKCS8 decrypts keys OpenSSL encrypted (testdata/pkcs8/README.md) to the very key they
// were made from.
func TestDecryptPKCS8(t *testing.T) {
	plain := readPEM(t, "plain.key")
	if plain.Type != "PRIVATE KEY" {
		t.Fatalf("plain.key is a %q", plain.Type)
	}
	for _, name := range []string{"aes256-sha256.key", "aes128-sha1.key", "aes192-sha512.key", "des3-sha256.key"} {
		block := readPEM(t, name)
		if block.Type != "ENCRYPTED PRIVATE KEY" {
			t.Fatalf("%s is a %q", name, block.Type)
		}
		der, err := decryptPKCS8(block.Bytes, []byte("s3cret"))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(der, plain.Bytes) {
			t.Errorf("%s: decrypted to another key", name)
		}
		if _, err := decryptPKCS8(block.Bytes, []byte("s3cret!")); !errors.Is(err, errPKCS8Password) {
			t.Errorf("%s with a wrong password: %v, want errPKCS8Password", name, err)
		}
	}
}

func TestDecryptPKCS8Refusals(t *testing.T) {
	good := readPEM(t, "aes256-sha256.key").Bytes
	for _, c := range []struct {
		name string
		der  []byte
		want string
	}{
		{"scrypt", readPEM(t, "scrypt.key").Bytes, "scrypt, which is not supported"},
		{"pbes1", readPEM(t, "pbes1.key").Bytes, "PBES1 or PKCS#12 PBE"},
		{"garbage", []byte{1, 2, 3}, "not an EncryptedPrivateKeyInfo"},
		{"trailing", append(append([]byte{}, good...), 0), "trailing bytes"},
		{"truncated", good[:len(good)-5], "not an EncryptedPrivateKeyInfo"},
	} {
		_, err := decryptPKCS8(c.der, []byte("s3cret"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}

// FuzzDecryptPKCS8: no input panics (the key file is the operator's, but it is parsed before
// anything else runs).
func FuzzDecryptPKCS8(f *testing.F) {
	for _, name := range []string{"aes256-sha256.key", "aes128-sha1.key", "des3-sha256.key", "scrypt.key", "pbes1.key"} {
		data, err := os.ReadFile(filepath.Join("testdata", "pkcs8", name))
		if err != nil {
			f.Fatal(err)
		}
		block, _ := pem.Decode(data)
		f.Add(block.Bytes)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		decryptPKCS8(der, []byte("s3cret"))
	})
}

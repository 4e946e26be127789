package evidence

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// PEM block types.
const (
	PEMPrivateKey = "PRIVATE KEY" // PKCS #8
	PEMPublicKey  = "PUBLIC KEY"  // PKIX SubjectPublicKeyInfo
)

// GenerateKey makes a new Ed25519 signing key from crypto/rand.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}

// MarshalPrivateKey encodes key as a PKCS #8 "PRIVATE KEY" PEM block (what `openssl genpkey -algorithm ed25519`
// writes).
func MarshalPrivateKey(key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("not an Ed25519 private key (%d bytes)", len(key))
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: PEMPrivateKey, Bytes: der}), nil
}

// ParsePrivateKey decodes the first PEM block of data, which must be a PKCS #8 Ed25519 private key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if block.Type != PEMPrivateKey {
		return nil, fmt.Errorf("PEM block is %q, want %q (PKCS #8)", block.Type, PEMPrivateKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is %T, want Ed25519", k)
	}
	return key, nil
}

// MarshalPublicKey encodes pub as a PKIX "PUBLIC KEY" PEM block (what `openssl pkey -pubout` writes).
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("not an Ed25519 public key (%d bytes)", len(pub))
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: PEMPublicKey, Bytes: der}), nil
}

// ParsePublicKey decodes the first PEM block of data, which must be a PKIX Ed25519 public key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if block.Type != PEMPublicKey {
		return nil, fmt.Errorf("PEM block is %q, want %q", block.Type, PEMPublicKey)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key is %T, want Ed25519", k)
	}
	return pub, nil
}

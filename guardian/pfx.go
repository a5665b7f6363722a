package guardian

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
)

// MaxPFXSize bounds a PFX file read from outside; a guardian's is a few KiB.
const MaxPFXSize = 1 << 20

// PFX is one certificate with its private key, as read from a PFX file.
type PFX struct {
	Key   *rsa.PrivateKey
	Cert  *x509.Certificate   // the certificate that matches Key
	Chain []*x509.Certificate // the file's other certificates
}

// EncodePFX writes key and cert as a PFX under password: AES-256-CBC with
// PBKDF2 and an HMAC-SHA256 MAC, or with legacy 3DES and an HMAC-SHA1 MAC
// for Windows Server 2016 and Windows 10 before 1709. Characters above
// U+FFFF in the password are encoded as UTF-16 surrogate pairs, as OpenSSL 3
// does. The result is decoded again before it is returned, so a file that
// does not read back is never written.
func EncodePFX(key *rsa.PrivateKey, cert *x509.Certificate, password string, legacy bool) ([]byte, error) {
	if password == "" {
		return nil, errorf(KindInvalid, "refusing to protect private keys with an empty password")
	}
	data, err := encodePKCS12(key, cert, password, legacy, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("encoding PFX: %w", err)
	}
	back, err := DecodePFX(data, password)
	if err != nil {
		return nil, fmt.Errorf("the PFX just written does not read back: %w", err)
	}
	if !back.Cert.Equal(cert) || !back.Key.Equal(key) {
		return nil, errors.New("the PFX just written does not read back to the same certificate and key")
	}
	return data, nil
}

// DecodePFX reads a PFX holding one private key and one or more
// certificates: DER or BER, with or without a MAC, its bags in any number
// of SafeContents in any order. It picks the certificate that matches the
// key whatever the order of the chain. A password that does not open the
// file is a KindPassword error, never one about a damaged file.
func DecodePFX(data []byte, password string) (pfx *PFX, err error) {
	if len(data) == 0 {
		return nil, errorf(KindInvalid, "the file is empty")
	}
	if len(data) > MaxPFXSize {
		return nil, errorf(KindInvalid, "the file is %d bytes, too large for a PFX (at most %d)", len(data), MaxPFXSize)
	}
	defer func() {
		// The decoder reads hostile input; a bug there must end as an
		// error about the file, not as a crash.
		if r := recover(); r != nil {
			pfx, err = nil, errorf(KindInvalid, "the file is not a readable PFX (%v)", r)
		}
	}()
	contents, err := decodePKCS12(data, password)
	if err != nil {
		return nil, err
	}
	switch {
	case len(contents.keys) == 0:
		return nil, errorf(KindInvalid, "the file holds no private key (it was exported without one)")
	case len(contents.keys) > 1:
		return nil, errorf(KindInvalid, "the file holds %d private keys; a guardian PFX holds exactly one (export each certificate with its own key)", len(contents.keys))
	case len(contents.certs) == 0:
		return nil, errorf(KindInvalid, "the file holds no certificate")
	}
	key := contents.keys[0]
	var rsaKey *rsa.PrivateKey
	switch k := key.(type) {
	case *rsa.PrivateKey:
		rsaKey = k
	case *ecdsa.PrivateKey:
		return nil, errorf(KindUnsupported, "the file holds an ECDSA %s key; guardians use RSA keys", k.Curve.Params().Name)
	case ed25519.PrivateKey:
		return nil, errorf(KindUnsupported, "the file holds an Ed25519 key; guardians use RSA keys")
	default:
		return nil, errorf(KindUnsupported, "the file holds a %T key; guardians use RSA keys", key)
	}
	if err := rsaKey.Validate(); err != nil {
		return nil, errorf(KindInvalid, "the private key in the file is not a valid RSA key (%v)", err)
	}
	all := contents.certs
	for i, c := range all {
		if rsaKey.PublicKey.Equal(c.PublicKey) {
			rest := append(append([]*x509.Certificate{}, all[:i]...), all[i+1:]...)
			return &PFX{Key: rsaKey, Cert: c, Chain: rest}, nil
		}
	}
	return nil, errorf(KindMismatch, "none of the %d certificates in the file matches its private key", len(all))
}

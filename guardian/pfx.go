package guardian

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
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
// for Windows Server 2016 and Windows 10 before 1709. The result is decoded
// again before it is returned, so a file that does not read back is never
// written.
func EncodePFX(key *rsa.PrivateKey, cert *x509.Certificate, password string, legacy bool) ([]byte, error) {
	if password == "" {
		return nil, errorf(KindInvalid, "refusing to protect private keys with an empty password")
	}
	enc := pkcs12.Modern2023
	if legacy {
		enc = pkcs12.LegacyDES
	}
	data, err := enc.Encode(key, cert, nil, password)
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
// certificates, in DER or BER, and picks the certificate that matches the
// key whatever the order of the chain.
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
	der, err := berToDER(data)
	if err != nil {
		return nil, errorf(KindInvalid, "the file is not a PFX, or it is truncated or damaged (%v)", err)
	}
	if err := checkIterations(der); err != nil {
		return nil, err
	}
	key, leaf, cas, err := pkcs12.DecodeChain(data, password)
	if err != nil && isASN1Error(err) {
		der, cerr := pfxToDER(data, password)
		if cerr != nil {
			var gerr *Error
			if errors.As(cerr, &gerr) {
				return nil, gerr
			}
			return nil, errorf(KindInvalid, "the file is not a PFX, or it is truncated or damaged (%v)", cerr)
		}
		if err := checkIterations(der); err != nil {
			return nil, err
		}
		key, leaf, cas, err = pkcs12.DecodeChain(der, password)
	}
	if err != nil {
		return nil, pfxError(err)
	}
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
	all := append([]*x509.Certificate{leaf}, cas...)
	for i, c := range all {
		if rsaKey.PublicKey.Equal(c.PublicKey) {
			rest := append(append([]*x509.Certificate{}, all[:i]...), all[i+1:]...)
			return &PFX{Key: rsaKey, Cert: c, Chain: rest}, nil
		}
	}
	return nil, errorf(KindMismatch, "none of the %d certificates in the file matches its private key", len(all))
}

func isASN1Error(err error) bool {
	s := err.Error()
	return strings.Contains(s, "asn1:") || strings.Contains(s, "error reading P12 data")
}

func pfxError(err error) error {
	var ni pkcs12.NotImplementedError
	switch {
	case errors.Is(err, pkcs12.ErrIncorrectPassword):
		return &Error{Kind: KindPassword, Msg: "wrong password"}
	case errors.Is(err, pkcs12.ErrDecryption):
		return &Error{Kind: KindPassword, Msg: "the file could not be decrypted: wrong password or damaged file"}
	case errors.As(err, &ni):
		return errorf(KindUnsupported, "the file uses a PKCS#12 feature guardctl does not support: %s", strings.TrimPrefix(ni.Error(), "pkcs12: "))
	}
	s := strings.TrimPrefix(err.Error(), "pkcs12: ")
	switch {
	case strings.Contains(s, "private key missing"):
		return errorf(KindInvalid, "the file holds no private key (it was exported without one)")
	case strings.Contains(s, "certificate missing"):
		return errorf(KindInvalid, "the file holds no certificate")
	case strings.Contains(s, "exactly one key bag"):
		return errorf(KindInvalid, "the file holds more than one private key; a guardian PFX holds one")
	case strings.Contains(s, "unknown digest algorithm"), strings.Contains(s, "unknown encryption"), strings.Contains(s, "algorithm"):
		return errorf(KindUnsupported, "the file uses an algorithm guardctl does not support (%s)", s)
	}
	return errorf(KindInvalid, "the file is not a PFX, or it is truncated or damaged (%s)", s)
}

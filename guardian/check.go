package guardian

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"time"
)

// Policy says which certificates a guardian may be made of. It follows
// New-HgsGuardian, with one deliberate difference: a self-signed certificate
// whose signature verifies under its own key is accepted without
// AllowUntrustedRoot, because every guardian Hyper-V generates is
// self-signed and the trust decision is the user's choice of file to import.
// A certificate issued by a CA must chain to a root in the system trust store
// (using the file's other certificates as intermediates, never as roots)
// unless AllowUntrustedRoot is set.
type Policy struct {
	Now                time.Time
	AllowExpired       bool
	AllowUntrustedRoot bool
	Intermediates      []*x509.Certificate
	Roots              *x509.CertPool // nil: the system roots
}

// Validate checks the guardian against p: RSA keys of at least MinKeySize
// bits, two different certificates, private keys (when present) that match
// their certificates, validity dates, and trust.
func (g *Guardian) Validate(p Policy) error {
	if g.Signing == nil || g.Encryption == nil {
		return errorf(KindInvalid, "guardian %q lacks a certificate", g.Name)
	}
	if bytes.Equal(g.Signing.Raw, g.Encryption.Raw) {
		return errorf(KindMismatch, "the same certificate was given as the signing and the encryption certificate")
	}
	for _, c := range []struct {
		role string
		cert *x509.Certificate
		key  crypto.PublicKey
	}{{"signing", g.Signing, publicOf(g.SigningKey)}, {"encryption", g.Encryption, publicOf(g.EncryptionKey)}} {
		if err := checkCert(c.role, c.cert, p); err != nil {
			return err
		}
		if c.key != nil && !KeyMatches(c.key, c.cert) {
			return errorf(KindMismatch, "the %s private key does not match the %s certificate", c.role, c.role)
		}
	}
	if (g.SigningKey == nil) != (g.EncryptionKey == nil) {
		return errorf(KindMismatch, "guardian %q has only one of its two private keys", g.Name)
	}
	return nil
}

func publicOf(k interface{ Public() crypto.PublicKey }) crypto.PublicKey {
	if k == nil {
		return nil
	}
	return k.Public()
}

// KeyMatches reports whether pub is the public key of cert.
func KeyMatches(pub crypto.PublicKey, cert *x509.Certificate) bool {
	p, ok := pub.(interface{ Equal(crypto.PublicKey) bool })
	return ok && p.Equal(cert.PublicKey)
}

// RSAPublicKey returns the certificate's RSA key or an error naming the
// algorithm it has instead.
func RSAPublicKey(role string, c *x509.Certificate) (*rsa.PublicKey, error) {
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, errorf(KindUnsupported, "the %s certificate has a %s key; guardians use RSA keys", role, c.PublicKeyAlgorithm)
	}
	if pub.N.BitLen() < MinKeySize {
		return nil, errorf(KindUnsupported, "the %s certificate has a %d-bit RSA key; guardians need at least %d bits", role, pub.N.BitLen(), MinKeySize)
	}
	return pub, nil
}

func checkCert(role string, c *x509.Certificate, p Policy) error {
	if _, err := RSAPublicKey(role, c); err != nil {
		return err
	}
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	if !p.AllowExpired {
		if now.After(c.NotAfter) {
			return errorf(KindExpired, "the %s certificate %q expired on %s", role, c.Subject.CommonName, c.NotAfter.UTC().Format(time.DateOnly))
		}
		if now.Before(c.NotBefore) {
			return errorf(KindExpired, "the %s certificate %q is not valid before %s", role, c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339))
		}
	}
	if p.AllowUntrustedRoot || SelfSigned(c) {
		return nil
	}
	inter := x509.NewCertPool()
	for _, ic := range p.Intermediates {
		inter.AddCert(ic)
	}
	opts := x509.VerifyOptions{Intermediates: inter, Roots: p.Roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: now}
	if p.AllowExpired && (now.After(c.NotAfter) || now.Before(c.NotBefore)) {
		opts.CurrentTime = c.NotBefore
	}
	if _, err := c.Verify(opts); err != nil {
		return errorf(KindUntrusted, "the %s certificate %q does not chain to a trusted root (%v)", role, c.Subject.CommonName, err)
	}
	return nil
}

// SelfSigned reports whether c is signed by its own key with its subject as
// issuer.
func SelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

package guardian

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"strings"

	"github.com/guardctl/guardctl/internal/safexml"
)

// PublicNamespace is the XML namespace of guardctl's public guardian file.
const PublicNamespace = "urn:guardctl:guardian:1"

// RSASHA256 is the XML-Signature URI of RSASSA-PKCS1-v1_5 with SHA-256.
const RSASHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"

var publicLimits = safexml.Limits{MaxBytes: 256 << 10, MaxDepth: 8, MaxElements: 32}

type publicFile struct {
	XMLName                        xml.Name `xml:"urn:guardctl:guardian:1 Guardian"`
	Version                        string   `xml:"Version,attr"`
	Name                           string   `xml:"Name"`
	SigningCertificate             string   `xml:"SigningCertificate"`
	EncryptionCertificate          string   `xml:"EncryptionCertificate"`
	EncryptionCertificateSignature struct {
		Algorithm string `xml:"Algorithm,attr"`
		Value     string `xml:",chardata"`
	} `xml:"EncryptionCertificateSignature"`
}

// SignEncryptionCertificate signs the DER of the encryption certificate
// with the signing key (RSA-SHA256), binding the two certificates together
// the way [MS-KPS] EncryptionCertificateSignature does. A public-only
// guardian returns the signature it was imported with.
func (g *Guardian) SignEncryptionCertificate() ([]byte, error) {
	// A kept signature saves a TPM guardian a trip to its TPM; it is
	// checked wherever it is used.
	if g.EncryptionCertSignature != nil {
		return g.EncryptionCertSignature, nil
	}
	if g.SigningKey == nil {
		return nil, errorf(KindInvalid, "guardian %q has no private signing key and no signature over its encryption certificate; import its public guardian file again", g.Name)
	}
	digest := sha256.Sum256(g.Encryption.Raw)
	return g.SigningKey.Sign(rand.Reader, digest[:], crypto.SHA256)
}

// VerifyEncryptionCertificateSignature checks a signature made by
// SignEncryptionCertificate.
func (g *Guardian) VerifyEncryptionCertificateSignature(sig []byte) error {
	pub, err := RSAPublicKey("signing", g.Signing)
	if err != nil {
		return err
	}
	digest := sha256.Sum256(g.Encryption.Raw)
	if rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) != nil {
		return errorf(KindMismatch, "the encryption certificate is not signed by the signing key of guardian %q", g.Name)
	}
	return nil
}

// MarshalPublic writes the public guardian file: both certificates and the
// encryption certificate signed by the signing key, so that the host that
// receives it knows the two belong together.
func (g *Guardian) MarshalPublic() ([]byte, error) {
	sig, err := g.SignEncryptionCertificate()
	if err != nil {
		return nil, err
	}
	var f publicFile
	f.Version = "1"
	f.Name = g.Name
	f.SigningCertificate = base64.StdEncoding.EncodeToString(g.Signing.Raw)
	f.EncryptionCertificate = base64.StdEncoding.EncodeToString(g.Encryption.Raw)
	f.EncryptionCertificateSignature.Algorithm = RSASHA256
	f.EncryptionCertificateSignature.Value = base64.StdEncoding.EncodeToString(sig)
	out, err := xml.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(append([]byte(xml.Header), out...), '\n'), nil
}

// ParsePublic reads a public guardian file and checks that its encryption
// certificate is signed by its signing key. The name inside the file is
// returned in the guardian; the caller may rename it.
func ParsePublic(data []byte) (*Guardian, error) {
	var f publicFile
	if err := safexml.Unmarshal(data, publicLimits, &f); err != nil {
		return nil, errorf(KindInvalid, "not a public guardian file: %v", err)
	}
	if f.Version != "1" {
		return nil, errorf(KindUnsupported, "public guardian file version %q is not supported (this guardctl reads version 1)", f.Version)
	}
	if f.EncryptionCertificateSignature.Algorithm != RSASHA256 {
		return nil, errorf(KindUnsupported, "public guardian file is signed with %q; guardctl knows %s", f.EncryptionCertificateSignature.Algorithm, RSASHA256)
	}
	g := &Guardian{Name: strings.TrimSpace(f.Name)}
	var err error
	if g.Signing, err = parseB64Cert("signing", f.SigningCertificate); err != nil {
		return nil, err
	}
	if g.Encryption, err = parseB64Cert("encryption", f.EncryptionCertificate); err != nil {
		return nil, err
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(f.EncryptionCertificateSignature.Value))
	if err != nil {
		return nil, errorf(KindInvalid, "public guardian file: the signature is not base64")
	}
	if err := g.VerifyEncryptionCertificateSignature(sig); err != nil {
		return nil, err
	}
	g.EncryptionCertSignature = sig
	return g, nil
}

func parseB64Cert(role, s string) (*x509.Certificate, error) {
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil || len(der) == 0 {
		return nil, errorf(KindInvalid, "public guardian file: the %s certificate is missing or not base64", role)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, errorf(KindInvalid, "public guardian file: the %s certificate does not parse (%v)", role, err)
	}
	if !bytes.Equal(c.Raw, der) {
		return nil, errorf(KindInvalid, "public guardian file: the %s certificate has trailing data", role)
	}
	return c, nil
}

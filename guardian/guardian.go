// Package guardian holds the Guardian type: a signing and an encryption
// certificate, with their RSA private keys when the guardian can unwrap
// (an "identity"), or without them when it can only be granted access (a
// "recipient"). It generates guardians shaped like Hyper-V's, reads and
// writes the PFX pair Hyper-V users move between hosts, and the public
// guardian file another host grants access to.
package guardian

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/guardctl/guardctl/internal/fault"
)

// Guardian is a named pair of certificates with optional private keys.
type Guardian struct {
	Name       string
	Signing    *x509.Certificate
	Encryption *x509.Certificate
	// SigningKey and EncryptionKey are the private halves: an
	// *rsa.PrivateKey in software, or a key held in a TPM (tpmkey.Key);
	// both nil for a public-only guardian. Signing is RSASSA-PKCS1-v1.5
	// with SHA-256, decryption RSA-OAEP with SHA-256 and no label.
	SigningKey    crypto.Signer
	EncryptionKey crypto.Decrypter
	// EncryptionCertSignature is the signing key's signature over the
	// encryption certificate, kept for a public-only guardian (which cannot
	// make it) so that key protectors can be granted to it.
	EncryptionCertSignature []byte
}

// HasPrivateKeys reports whether the guardian holds both private keys.
func (g *Guardian) HasPrivateKeys() bool {
	return g.SigningKey != nil && g.EncryptionKey != nil
}

// KeyLocation says where a guardian's private keys live.
type KeyLocation string

const (
	KeysFile KeyLocation = "file"        // software keys, in the store's files
	KeysTPM  KeyLocation = "tpm"         // keys generated in and held by a TPM
	KeysNone KeyLocation = "public only" // no private keys
)

// inTPM is what a key held in a TPM answers.
type inTPM interface{ InTPM() bool }

// KeyLocation says where g's private keys live.
func (g *Guardian) KeyLocation() KeyLocation {
	if g.SigningKey == nil && g.EncryptionKey == nil {
		return KeysNone
	}
	for _, k := range []any{g.SigningKey, g.EncryptionKey} {
		if t, ok := k.(inTPM); ok && t.InTPM() {
			return KeysTPM
		}
	}
	return KeysFile
}

// SoftwareKeys returns g's private keys as RSA keys in memory, for what
// needs the key material itself (a PFX export, the store's key files); an
// error for keys a TPM holds, which never leave it.
func (g *Guardian) SoftwareKeys() (signing, encryption *rsa.PrivateKey, err error) {
	s, ok1 := g.SigningKey.(*rsa.PrivateKey)
	e, ok2 := g.EncryptionKey.(*rsa.PrivateKey)
	if !ok1 || !ok2 {
		if g.KeyLocation() == KeysTPM {
			return nil, nil, errorf(KindUnsupported, "guardian %q keeps its private keys in a TPM, which never lets them out", g.Name)
		}
		return nil, nil, errorf(KindInvalid, "guardian %q has no private keys", g.Name)
	}
	return s, e, nil
}

// Public returns the guardian without its private keys, keeping (or
// making, while the signing key is at hand) the signature over its
// encryption certificate that key protectors need to grant it access.
func (g *Guardian) Public() *Guardian {
	sig := g.EncryptionCertSignature
	if sig == nil && g.SigningKey != nil {
		sig, _ = g.SignEncryptionCertificate()
	}
	return &Guardian{Name: g.Name, Signing: g.Signing, Encryption: g.Encryption, EncryptionCertSignature: sig}
}

// NotAfter is the earlier of the two certificates' expiry times.
func (g *Guardian) NotAfter() time.Time {
	if g.Encryption.NotAfter.Before(g.Signing.NotAfter) {
		return g.Encryption.NotAfter
	}
	return g.Signing.NotAfter
}

// Thumbprint is the certificate's SHA-1 hash in upper-case hex, as Windows
// shows it in certlm.msc and Get-HgsGuardian.
func Thumbprint(c *x509.Certificate) string {
	sum := sha1.Sum(c.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// MaxNameLength bounds guardian names.
const MaxNameLength = 128

// ValidateName checks that name can be a guardian name and a file name on
// every platform: letters, digits, space and ._-+@() only, not starting with
// a dot or space, not ending with a dot or space (Windows drops those).
func ValidateName(name string) error {
	if name == "" {
		return &Error{Kind: KindInvalid, Msg: "guardian name is empty"}
	}
	if len(name) > MaxNameLength {
		return &Error{Kind: KindInvalid, Msg: fmt.Sprintf("guardian name is longer than %d bytes", MaxNameLength)}
	}
	for _, r := range name {
		ok := r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune(" ._-+@()", r))
		if !ok {
			return &Error{Kind: KindInvalid, Msg: fmt.Sprintf("guardian name %q contains %q; use letters, digits, space and . _ - + @ ( )", name, r)}
		}
	}
	if name[0] == '.' || name[0] == ' ' || strings.HasSuffix(name, ".") || strings.HasSuffix(name, " ") {
		return &Error{Kind: KindInvalid, Msg: fmt.Sprintf("guardian name %q may not start or end with a dot or space", name)}
	}
	return nil
}

// Kind classifies an Error so that callers can choose an exit code and a hint.
type Kind int

const (
	// KindInvalid: the input is malformed, truncated or inconsistent.
	KindInvalid Kind = iota + 1
	// KindPassword: the password does not open the file.
	KindPassword
	// KindExpired: a certificate is outside its validity period.
	KindExpired
	// KindUntrusted: a certificate does not chain to a trusted root.
	KindUntrusted
	// KindUnsupported: an algorithm or key type guardctl does not handle.
	KindUnsupported
	// KindMismatch: keys and certificates do not belong together.
	KindMismatch
)

// Error is every error this package returns about its input.
type Error = fault.Error[Kind]

func errorf(k Kind, format string, args ...any) error { return fault.New(k, format, args...) }

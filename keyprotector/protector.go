// Package keyprotector reads, writes, verifies and changes key protectors
// in the [MS-KPS] Protector model: one transport key wrapped for an owner
// guardian and any number of other guardians, each wrapping chained to the
// owner by signatures, the whole Wrappings element signed by the owner and
// bound to the transport key by a MAC.
//
// [MS-KPS] leaves the algorithms to the implementation; guardctl's profile
// (docs/keyprotector.md) names standard W3C algorithm URIs and refuses any
// other, naming it.
package keyprotector

import (
	"crypto/x509"

	"github.com/guardctl/guardctl/internal/fault"
)

// Namespace is the [MS-KPS] Protector namespace.
const Namespace = "http://schemas.microsoft.com/kps/2014/07"

// Algorithm URIs of guardctl's profile.
const (
	AlgRSAOAEP     = "http://www.w3.org/2009/xmlenc11#rsa-oaep"   // transport key, with SHA-256 and MGF1-SHA-256
	AlgSHA256      = "http://www.w3.org/2001/04/xmlenc#sha256"    // OAEP digest
	AlgMGF1SHA256  = "http://www.w3.org/2009/xmlenc11#mgf1sha256" // OAEP mask generation
	AlgRSASHA256   = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
	AlgHMACSHA256  = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"
	AlgHKDF        = "http://www.w3.org/2021/04/xmldsig-more#hkdf" // RFC 9231
	AlgExcC14N     = "http://www.w3.org/2001/10/xml-exc-c14n#"
	nsDSig         = "http://www.w3.org/2000/09/xmldsig#"
	nsXEnc11       = "http://www.w3.org/2009/xmlenc11#"
	nsDSigMore2021 = "http://www.w3.org/2021/04/xmldsig-more#"
)

// hkdfInfo is the HKDF info of the key the TransportKeySignature is made
// with, so that key is never the transport key itself.
const hkdfInfo = "guardctl MS-KPS TransportKeySignature"

// TransportKeySize is the size of a transport key New makes.
const TransportKeySize = 32

// MaxWrappings bounds the guardians of one key protector read from outside.
const MaxWrappings = 1024

// Wrapping is the transport key wrapped for one guardian.
type Wrapping struct {
	ID         uint32
	Signing    *x509.Certificate
	Encryption *x509.Certificate
	// ParentID is the wrapping whose signing key signed this wrapping's
	// signing certificate: the owner's own ID for the owner.
	ParentID              uint32
	SigningCertSig        Signature
	EncryptionCertSig     Signature
	KeyAlgorithm          string // the EncryptedData algorithm URI
	KeyDigest, KeyMGF     string // its parameters
	EncryptedTransportKey []byte
}

// Signature is an [MS-KPS] Signature_T: an algorithm URI and a value.
type Signature struct {
	Algorithm string
	Value     []byte
}

// Protector is a parsed (or built) key protector.
type Protector struct {
	Wrappings []*Wrapping
	OwnerID   uint32
	// TransportKeySignature: a MAC over the canonical Wrappings under a key
	// derived from the transport key.
	KDFAlgorithm          string
	KDFParams             kdfParams
	TransportKeySignature Signature
	// GuardianSignature: the owner's signature over the canonical Wrappings.
	GuardianSignature Signature
	// MaxOfflineUnwraps is kept as read (empty when absent).
	MaxOfflineUnwraps string

	// canonicalWrappings is the exclusive canonical form of the Wrappings
	// element as read or as written: what the signatures cover.
	canonicalWrappings []byte
	// xml is the document as read (nil for one built here).
	xml []byte
}

type kdfParams struct {
	PRF       string
	Info      string // hex
	KeyLength string // bits
}

// Owner returns the owner's wrapping.
func (p *Protector) Owner() *Wrapping {
	return p.wrapping(p.OwnerID)
}

func (p *Protector) wrapping(id uint32) *Wrapping {
	for _, w := range p.Wrappings {
		if w.ID == id {
			return w
		}
	}
	return nil
}

// Kind classifies an Error.
type Kind int

const (
	// KindInvalid: malformed, truncated or not a key protector.
	KindInvalid Kind = iota + 1
	// KindVerification: a signature, MAC or chain does not verify.
	KindVerification
	// KindUnsupported: an algorithm outside guardctl's profile.
	KindUnsupported
	// KindNoAccess: no local guardian can unwrap it.
	KindNoAccess
	// KindNotOwner: the owner's private signing key is not here.
	KindNotOwner
	// KindExpired: a guardian certificate is outside its validity period.
	KindExpired
	// KindConflict: the change asked for cannot be made (revoke the owner,
	// grant a guardian twice with another certificate...).
	KindConflict
	// KindUnknownOwner: the signatures verify, but the owner who made them
	// is not a guardian the store knows, so anyone could have.
	KindUnknownOwner
)

// Error is every error this package returns about a key protector.
type Error = fault.Error[Kind]

func errorf(k Kind, format string, args ...any) error { return fault.New(k, format, args...) }

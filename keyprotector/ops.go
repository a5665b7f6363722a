package keyprotector

import (
	"bytes"
	"crypto"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/guardctl/guardctl/guardian"
)

// Policy says what Verify accepts besides valid signatures.
type Policy struct {
	Now          time.Time
	AllowExpired bool
}

// UnsupportedAlgorithms lists the algorithm URIs (or parameters) in p that
// are not guardctl's profile; a key protector Hyper-V wrote may have some.
func (p *Protector) UnsupportedAlgorithms() []string {
	var out []string
	add := func(what, got, want string) {
		if got != want {
			s := fmt.Sprintf("%s %q", what, got)
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	for _, w := range p.Wrappings {
		add("SigningCertificateSignature algorithm", w.SigningCertSig.Algorithm, AlgRSASHA256)
		add("EncryptionCertificateSignature algorithm", w.EncryptionCertSig.Algorithm, AlgRSASHA256)
		add("transport key encryption", w.KeyAlgorithm, AlgRSAOAEP)
		add("transport key OAEP digest", w.KeyDigest, AlgSHA256)
		add("transport key OAEP mask generation", w.KeyMGF, AlgMGF1SHA256)
	}
	add("KeyDerivationMethod", p.KDFAlgorithm, AlgHKDF)
	add("key derivation PRF", p.KDFParams.PRF, AlgHMACSHA256)
	add("key derivation Info", p.KDFParams.Info, hkdfInfoHex())
	add("key derivation KeyLength", p.KDFParams.KeyLength, "256")
	add("TransportKeySignature algorithm", p.TransportKeySignature.Algorithm, AlgHMACSHA256)
	add("GuardianSignature algorithm", p.GuardianSignature.Algorithm, AlgRSASHA256)
	return out
}

func verifyRSASHA256(cert *x509.Certificate, data, sig []byte) error {
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("the signer's certificate has a %s key", cert.PublicKeyAlgorithm)
	}
	digest := sha256.Sum256(data)
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
}

func signRSASHA256(key crypto.Signer, data []byte) ([]byte, error) {
	digest := sha256.Sum256(data)
	return key.Sign(rand.Reader, digest[:], crypto.SHA256)
}

// Verify checks everything that can be checked without a private key: the
// algorithms, the owner's GuardianSignature over the canonical Wrappings,
// each wrapping's chain to the owner, each encryption certificate's
// signature by its own signing key, key sizes, and validity dates.
func (p *Protector) Verify(pol Policy) error {
	return p.verify(pol, nil)
}

// verify is Verify, with the chain signatures that recur in a batch checked
// once (b may be nil).
func (p *Protector) verify(pol Policy, b *Batch) error {
	if u := p.UnsupportedAlgorithms(); len(u) > 0 {
		return errorf(KindUnsupported, "the key protector uses algorithms outside guardctl's profile: %s", u[0])
	}
	owner := p.Owner()
	if err := verifyRSASHA256(owner.Signing, p.canonicalWrappings, p.GuardianSignature.Value); err != nil {
		return errorf(KindVerification, "the owner's GuardianSignature over the wrappings does not verify: the key protector was changed after the owner signed it")
	}
	now := pol.Now
	if now.IsZero() {
		now = time.Now()
	}
	for _, w := range p.Wrappings {
		if w.ParentID != p.OwnerID {
			return errorf(KindVerification, "wrapping %d chains to wrapping %d, not to the owner", w.ID, w.ParentID)
		}
		if err := b.verify(owner.Signing, w.Signing.Raw, w.SigningCertSig.Value); err != nil {
			return errorf(KindVerification, "the signing certificate of wrapping %d is not signed by the owner", w.ID)
		}
		if err := b.verify(w.Signing, w.Encryption.Raw, w.EncryptionCertSig.Value); err != nil {
			return errorf(KindVerification, "the encryption certificate of wrapping %d is not signed by its own signing key", w.ID)
		}
		for _, c := range []*x509.Certificate{w.Signing, w.Encryption} {
			if _, err := guardian.RSAPublicKey("wrapping", c); err != nil {
				return errorf(KindUnsupported, "wrapping %d: %v", w.ID, err)
			}
		}
	}
	// The signatures cover the canonical Wrappings and the MAC the
	// transport key; what lies outside them (white space, the declaration,
	// the form of the base64, the other elements' markup) must be exactly
	// what guardctl writes, so that no byte of the file can change unseen.
	if p.xml != nil {
		want, err := p.encode()
		if err != nil {
			return err
		}
		if !bytes.Equal(want, p.xml) {
			return errorf(KindVerification, "the key protector is not byte for byte in the form its signed content is written in: something outside what the signatures cover was changed")
		}
	}
	// Dates last: "expired" means every signature was checked.
	for _, w := range p.Wrappings {
		for _, c := range []*x509.Certificate{w.Signing, w.Encryption} {
			if !pol.AllowExpired && (now.After(c.NotAfter) || now.Before(c.NotBefore)) {
				return errorf(KindExpired, "wrapping %d: the certificate %q is valid only from %s to %s", w.ID, c.Subject.CommonName, c.NotBefore.UTC().Format(time.DateOnly), c.NotAfter.UTC().Format(time.DateOnly))
			}
		}
	}
	return nil
}

// Matches reports whether w was made for guardian g.
func (w *Wrapping) Matches(g *guardian.Guardian) bool {
	return g.Signing != nil && g.Encryption != nil && w.Signing.Equal(g.Signing) && w.Encryption.Equal(g.Encryption)
}

// Guardian is the guardian w was made for, rebuilt from its certificates
// (public parts only) and called name.
func (w *Wrapping) Guardian(name string) *guardian.Guardian {
	return &guardian.Guardian{Name: name, Signing: w.Signing, Encryption: w.Encryption, EncryptionCertSignature: w.EncryptionCertSig.Value}
}

// FindThumbprint returns the wrapping whose signing certificate has the
// thumbprint tp (guardian.Thumbprint's form), or nil: how a guardian that
// no store here knows any more (a decommissioned host) is named.
func (p *Protector) FindThumbprint(tp string) *Wrapping {
	for _, w := range p.Wrappings {
		if strings.EqualFold(guardian.Thumbprint(w.Signing), tp) {
			return w
		}
	}
	return nil
}

// KnownOwner returns the guardian among known (public parts are enough)
// that is p's owner, or nil. Valid signatures say only that the owner made
// the key protector; whether that owner is to be trusted is this.
func (p *Protector) KnownOwner(known []*guardian.Guardian) *guardian.Guardian {
	owner := p.Owner()
	if owner == nil {
		return nil
	}
	for _, g := range known {
		if owner.Matches(g) {
			return g
		}
	}
	return nil
}

// CheckOwner fails with KindUnknownOwner, naming the owner, unless p's
// owner is among known.
func (p *Protector) CheckOwner(known []*guardian.Guardian) error {
	if p.KnownOwner(known) != nil {
		return nil
	}
	owner := p.Owner()
	return errorf(KindUnknownOwner, "its owner (%s, signing thumbprint %s) is not a guardian this store knows: anyone could have made it", owner.Signing.Subject.String(), guardian.Thumbprint(owner.Signing))
}

// Find returns the wrapping made for g, or nil.
func (p *Protector) Find(g *guardian.Guardian) *Wrapping {
	for _, w := range p.Wrappings {
		if w.Matches(g) {
			return w
		}
	}
	return nil
}

// Unwrap recovers the transport key with the first of identities (guardians
// with private keys) that has a wrapping, and checks it against the
// TransportKeySignature. Call Verify first.
//
// A guardian whose key cannot be used now (a TPM guardian whose TPM or PCRs
// changed) does not stop another from unwrapping; when none can, the first
// such error is returned as it is.
func (p *Protector) Unwrap(identities []*guardian.Guardian) (key []byte, by *guardian.Guardian, err error) {
	var unusable error
	for _, g := range identities {
		w := p.Find(g)
		if w == nil || g.EncryptionKey == nil {
			continue
		}
		key, err := g.EncryptionKey.Decrypt(rand.Reader, w.EncryptedTransportKey, &rsa.OAEPOptions{Hash: crypto.SHA256})
		if err != nil && !errors.Is(err, rsa.ErrDecryption) {
			if unusable == nil {
				unusable = err
			}
			continue
		}
		if err != nil {
			return nil, nil, errorf(KindVerification, "the transport key wrapped for guardian %q does not decrypt: the wrapping is damaged", g.Name)
		}
		if !hmac.Equal(p.transportKeyMAC(key), p.TransportKeySignature.Value) {
			return nil, nil, errorf(KindVerification, "the transport key unwrapped with guardian %q does not match the TransportKeySignature: a wrapping was swapped in or the key protector was tampered with", g.Name)
		}
		return key, g, nil
	}
	if unusable != nil {
		return nil, nil, unusable
	}
	return nil, nil, errorf(KindNoAccess, "no guardian in this store can unwrap the key protector")
}

func (p *Protector) transportKeyMAC(key []byte) []byte {
	macKey, err := hkdf.Key(sha256.New, key, nil, hkdfInfo, 32)
	if err != nil {
		panic(err) // only for lengths HKDF-SHA256 cannot produce
	}
	m := hmac.New(sha256.New, macKey)
	m.Write(p.canonicalWrappings)
	return m.Sum(nil)
}

// MaxKeySize is the largest key Wrap protects: what RSA-OAEP with SHA-256
// carries under a 2048-bit guardian key.
const MaxKeySize = 2048/8 - 2*sha256.Size - 2

// New makes a key protector for key (a fresh transport key, or a key the
// user already has), owned by owner (which needs its private signing key)
// and wrapped for owner and guardians.
func New(key []byte, owner *guardian.Guardian, guardians []*guardian.Guardian) (*Protector, []byte, error) {
	if len(key) == 0 || len(key) > MaxKeySize {
		return nil, nil, errorf(KindConflict, "a key of %d bytes cannot be protected; use 1 to %d bytes", len(key), MaxKeySize)
	}
	if owner.SigningKey == nil {
		return nil, nil, errorf(KindNotOwner, "the owner %q has no private signing key here", owner.Name)
	}
	p := &Protector{OwnerID: 1}
	if err := p.addWrapping(owner, owner, key, nil); err != nil {
		return nil, nil, err
	}
	for _, g := range guardians {
		if p.Find(g) != nil {
			continue
		}
		if err := p.addWrapping(owner, g, key, nil); err != nil {
			return nil, nil, err
		}
	}
	out, err := p.seal(owner, key)
	return p, out, err
}

// NewTransportKey returns a fresh random transport key.
func NewTransportKey() []byte {
	k := make([]byte, TransportKeySize)
	rand.Read(k)
	return k
}

func (p *Protector) addWrapping(owner, g *guardian.Guardian, key []byte, b *Batch) error {
	pub, err := guardian.RSAPublicKey("encryption", g.Encryption)
	if err != nil {
		return err
	}
	for _, w := range p.Wrappings {
		if w.Signing.Equal(g.Signing) || w.Encryption.Equal(g.Encryption) {
			return errorf(KindConflict, "guardian %q shares a certificate with wrapping %d", g.Name, w.ID)
		}
	}
	id := uint32(1)
	for _, w := range p.Wrappings {
		id = max(id, w.ID+1)
	}
	sigSig, err := b.signCert(owner, g)
	if err != nil {
		return err
	}
	encSig, err := b.encryptionCertSig(g)
	if err != nil {
		return err
	}
	wrapped, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, key, nil)
	if err != nil {
		return errorf(KindConflict, "wrapping the key for guardian %q: %v", g.Name, err)
	}
	parent := p.OwnerID
	if g == owner {
		parent = id
	}
	p.Wrappings = append(p.Wrappings, &Wrapping{
		ID: id, Signing: g.Signing, Encryption: g.Encryption, ParentID: parent,
		SigningCertSig:    Signature{AlgRSASHA256, sigSig},
		EncryptionCertSig: Signature{AlgRSASHA256, encSig},
		KeyAlgorithm:      AlgRSAOAEP, KeyDigest: AlgSHA256, KeyMGF: AlgMGF1SHA256,
		EncryptedTransportKey: wrapped,
	})
	return nil
}

// seal signs the wrappings as they are now and returns the XML.
func (p *Protector) seal(owner *guardian.Guardian, key []byte) ([]byte, error) {
	p.KDFAlgorithm = AlgHKDF
	p.KDFParams = kdfParams{PRF: AlgHMACSHA256, Info: hkdfInfoHex(), KeyLength: "256"}
	p.TransportKeySignature.Algorithm = AlgHMACSHA256
	p.GuardianSignature.Algorithm = AlgRSASHA256
	doc, wrappings, tkSig, guardianSig := p.build()
	var err error
	if p.canonicalWrappings, err = canonicalize(wrappings); err != nil {
		return nil, err
	}
	p.TransportKeySignature.Value = p.transportKeyMAC(key)
	if p.GuardianSignature.Value, err = signRSASHA256(owner.SigningKey, p.canonicalWrappings); err != nil {
		return nil, err
	}
	tkSig.SetText(b64(p.TransportKeySignature.Value))
	guardianSig.SetText(b64(p.GuardianSignature.Value))
	return doc.WriteToBytes()
}

// ownerIdentity returns the identity among identities that is the owner with
// its private signing key.
func (p *Protector) ownerIdentity(identities []*guardian.Guardian) (*guardian.Guardian, error) {
	owner := p.Owner()
	for _, g := range identities {
		if owner.Matches(g) && g.SigningKey != nil {
			return g, nil
		}
	}
	return nil, errorf(KindNotOwner, "only the owner (signing certificate %s, %q) can change who may unwrap this key protector, and its private keys are not in this store", guardian.Thumbprint(owner.Signing), owner.Signing.Subject.CommonName)
}

// Grant adds a wrapping for g. It needs the owner's private signing key and
// a guardian that can unwrap, both among identities. It reports whether
// anything changed (g may have access already).
func (p *Protector) Grant(identities []*guardian.Guardian, g *guardian.Guardian) (changed bool, out []byte, err error) {
	return p.grant(identities, g, nil)
}

func (p *Protector) grant(identities []*guardian.Guardian, g *guardian.Guardian, b *Batch) (changed bool, out []byte, err error) {
	owner, err := p.ownerIdentity(identities)
	if err != nil {
		return false, nil, err
	}
	// A guardian that has access already changes nothing, and costs no
	// private-key operation (as Revoke of one that has none).
	if p.Find(g) != nil {
		return false, nil, nil
	}
	key, _, err := p.Unwrap(identities)
	if err != nil {
		return false, nil, err
	}
	if err := p.addWrapping(owner, g, key, b); err != nil {
		return false, nil, err
	}
	out, err = p.seal(owner, key)
	return true, out, err
}

// Revoke removes g's wrapping. The owner's cannot be removed.
func (p *Protector) Revoke(identities []*guardian.Guardian, g *guardian.Guardian) (changed bool, out []byte, err error) {
	owner, err := p.ownerIdentity(identities)
	if err != nil {
		return false, nil, err
	}
	w := p.Find(g)
	if w == nil {
		return false, nil, nil
	}
	if w.ID == p.OwnerID {
		return false, nil, errorf(KindConflict, "guardian %q is the owner of the key protector and cannot be revoked", g.Name)
	}
	key, _, err := p.Unwrap(identities)
	if err != nil {
		return false, nil, err
	}
	p.Wrappings = slices.DeleteFunc(p.Wrappings, func(x *Wrapping) bool { return x == w })
	out, err = p.seal(owner, key)
	return true, out, err
}

// Members returns the owner (as the identity among identities with its
// private keys) and the other guardians as public guardians rebuilt from
// their wrappings, to make a new key protector for the same people.
func (p *Protector) Members(identities []*guardian.Guardian) (*guardian.Guardian, []*guardian.Guardian, error) {
	owner, err := p.ownerIdentity(identities)
	if err != nil {
		return nil, nil, err
	}
	var others []*guardian.Guardian
	for _, w := range p.Wrappings {
		if w.ID == p.OwnerID {
			continue
		}
		others = append(others, w.Guardian(fmt.Sprintf("wrapping %d", w.ID)))
	}
	return owner, others, nil
}

// HasExactly reports whether p is owned by owner and wrapped for exactly
// owner and guardians, compared by their certificates (never by bytes that
// differ on every encoding): what "the same key protector" means to a
// command asked to make it again.
func (p *Protector) HasExactly(owner *guardian.Guardian, guardians []*guardian.Guardian) bool {
	o := p.Owner()
	if o == nil || !o.Matches(owner) {
		return false
	}
	for _, g := range guardians {
		if p.Find(g) == nil {
			return false
		}
	}
	for _, w := range p.Wrappings {
		if !w.Matches(owner) && !slices.ContainsFunc(guardians, w.Matches) {
			return false
		}
	}
	return true
}

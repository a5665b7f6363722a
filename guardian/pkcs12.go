package guardian

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"io"
	"unicode/utf16"
)

// guardctl reads and writes PKCS#12 (RFC 7292) itself, with the standard
// library's primitives, because the files people have are wider than what
// go-pkcs12 takes: no MAC (openssl -nomac, keytool with macAlgorithm=NONE),
// passwords outside the basic plane (OpenSSL 3 encodes them as UTF-16
// surrogate pairs), any number of SafeContents in any order (certtool puts
// each certificate in its own), and BER (Windows, Java).
//
// Every input is bounded: its size (MaxPFXSize), the number of
// SafeContents and bags, nesting, and the key-derivation iterations, which
// are checked before any derivation runs.

const (
	maxSafeContents = 64  // ContentInfos in the AuthenticatedSafe
	maxBags         = 256 // SafeBags in the whole file
	maxBagDepth     = 4   // nested SafeContents bags
)

var (
	oidData            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidEnvelopedData   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	oidEncryptedData   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}
	oidKeyBag          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 1}
	oidShroudedKeyBag  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
	oidCertBag         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 3}
	oidSafeContentsBag = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 6}
	oidX509Certificate = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 22, 1}
	oidLocalKeyID      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 21}
	oidPBKDF2          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidPBES2           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBMAC1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 14}
	oidPKCS12PBE       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1}
	oidSHA1            = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidHMACWithSHA1    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACWithSHA256  = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidAES256CBC       = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidDESEDE3CBC      = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
	oidPBEWithSHA3DES  = append(append(asn1.ObjectIdentifier{}, oidPKCS12PBE...), 3)
	asn1NULL           = asn1.RawValue{Tag: asn1.TagNull}
)

type pfxPDU struct {
	Version  int
	AuthSafe contentInfo
	MacData  macData `asn1:"optional"`
}

// contentInfo's Content is the whole [0] element (encoding/asn1 does not
// apply "explicit" to a RawValue).
type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"optional"`
}

type macData struct {
	Mac        digestInfo
	MacSalt    []byte
	Iterations int `asn1:"optional,default:1"`
}

type digestInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	Digest    []byte
}

type encryptedData struct {
	Version              int
	EncryptedContentInfo encryptedContentInfo
}

type encryptedContentInfo struct {
	ContentType                asn1.ObjectIdentifier
	ContentEncryptionAlgorithm pkix.AlgorithmIdentifier
	EncryptedContent           asn1.RawValue `asn1:"optional"` // [0] IMPLICIT OCTET STRING
}

type safeBag struct {
	ID         asn1.ObjectIdentifier
	Value      asn1.RawValue // [0] EXPLICIT
	Attributes asn1.RawValue `asn1:"optional"`
}

type bagAttribute struct {
	ID     asn1.ObjectIdentifier
	Values [][]byte `asn1:"set"`
}

type safeBagOut struct {
	ID         asn1.ObjectIdentifier
	Value      asn1.RawValue
	Attributes []bagAttribute `asn1:"set"`
}

type certBag struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue // [0] EXPLICIT
}

type encryptedPrivateKeyInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	Data      []byte
}

type pbes2Params struct {
	KDF    pkix.AlgorithmIdentifier
	Scheme pkix.AlgorithmIdentifier
}

type pbkdf2Params struct {
	Salt       []byte
	Iterations int
	KeyLength  int                      `asn1:"optional"`
	PRF        pkix.AlgorithmIdentifier `asn1:"optional"`
}

type pkcs12PBEParams struct {
	Salt       []byte
	Iterations int
}

// pfxPassword is the password in the two encodings PKCS#12 uses: UTF-8 for
// PBES2 and PBMAC1, and for the PKCS#12 KDF (the classic MAC and the
// pbeWithSHAAnd… ciphers) UTF-16BE with a terminating zero, characters
// above U+FFFF as surrogate pairs, as OpenSSL 3 writes them.
type pfxPassword struct {
	utf8, bmp []byte
}

func newPFXPassword(s string) pfxPassword {
	return pfxPassword{utf8: []byte(s), bmp: bmpPassword(s)}
}

// bmpPassword is the password as the PKCS#12 KDF takes it.
func bmpPassword(s string) []byte {
	var b []byte
	for _, r := range utf16.Encode([]rune(s)) {
		b = append(b, byte(r>>8), byte(r))
	}
	return append(b, 0, 0)
}

// pfxContents is what a PFX holds: private keys (PKCS#8, parsed) and
// certificates, in file order.
type pfxContents struct {
	keys  []any
	certs []*x509.Certificate
}

// errUndecryptable is a ciphertext that does not decrypt to well-padded
// plaintext, or plaintext that does not parse: the password is wrong, or
// (when a MAC verified) the file is damaged.
var errUndecryptable = errors.New("does not decrypt")

// decodePKCS12 reads a PFX, DER or BER, with or without a MAC.
func decodePKCS12(data []byte, password string) (*pfxContents, error) {
	der, err := berToDER(data)
	if err != nil {
		return nil, damaged(err)
	}
	var pfx pfxPDU
	if rest, err := asn1.Unmarshal(der, &pfx); err != nil {
		return nil, damaged(err)
	} else if len(rest) != 0 {
		return nil, damaged(errors.New("trailing data"))
	}
	if pfx.Version != 3 {
		return nil, errorf(KindUnsupported, "the file is a version %d PFX; guardctl reads version 3 (every current writer's)", pfx.Version)
	}
	if pfx.AuthSafe.ContentType.Equal(oidSignedData) {
		return nil, errorf(KindUnsupported, "the file uses PKCS#12 public-key integrity mode (signed); guardctl reads password-protected files")
	}
	if !pfx.AuthSafe.ContentType.Equal(oidData) {
		return nil, damaged(fmt.Errorf("content type %s", pfx.AuthSafe.ContentType))
	}
	authSafe, err := explicitOctets(pfx.AuthSafe.Content)
	if err != nil {
		return nil, damaged(err)
	}
	// Every SafeContents is read, and the key derivations the file asks for
	// are counted, before the first derivation (the MAC's) runs.
	safesDER, err := berToDER(authSafe)
	if err != nil {
		return nil, damaged(err)
	}
	var safes []contentInfo
	if rest, err := asn1.Unmarshal(safesDER, &safes); err != nil || len(rest) != 0 {
		return nil, damaged(fmt.Errorf("authenticated safe: %v", err))
	}
	if len(safes) == 0 || len(safes) > maxSafeContents {
		return nil, errorf(KindInvalid, "the file has %d SafeContents; guardctl reads between 1 and %d", len(safes), maxSafeContents)
	}
	type safe struct {
		contents  []byte         // a plain SafeContents
		encrypted *encryptedSafe // or an encrypted one
	}
	list := make([]safe, len(safes))
	work := &workBudget{left: maxWork()}
	bags := 0
	for i, ci := range safes {
		switch {
		case ci.ContentType.Equal(oidData):
			if list[i].contents, err = explicitOctets(ci.Content); err != nil {
				return nil, damaged(err)
			}
			if err := countPlainWork(list[i].contents, &bags, 0, work); err != nil {
				return nil, err
			}
		case ci.ContentType.Equal(oidEncryptedData):
			if list[i].encrypted, err = readEncryptedSafe(ci.Content); err != nil {
				return nil, err
			}
			if err := work.charge(list[i].encrypted.pbe.cost); err != nil {
				return nil, err
			}
		case ci.ContentType.Equal(oidEnvelopedData):
			return nil, errorf(KindUnsupported, "the file uses PKCS#12 public-key privacy mode (enveloped); guardctl reads password-protected files")
		default:
			return nil, damaged(fmt.Errorf("SafeContents of type %s", ci.ContentType))
		}
	}
	// The MAC may use what the counted derivations leave; the counted ones
	// are charged again below as they run, with what the MAC left over for
	// the key bags that only decryption reveals.
	spent := maxWork() - work.left
	macWork := &workBudget{left: work.left}
	pw := newPFXPassword(password)
	macVerified := false
	if len(pfx.MacData.Mac.Algorithm.Algorithm) > 0 {
		if pw, err = verifyMAC(pfx.MacData, pw, authSafe, macWork); err != nil {
			return nil, err
		}
		macVerified = true
	}
	work.left = macWork.left + spent
	undecryptable := func() error {
		if macVerified {
			return errorf(KindInvalid, "the file is damaged: its MAC verifies with the password, but its encrypted contents do not decrypt with it")
		}
		return &Error{Kind: KindPassword, Msg: "wrong password (the file has no MAC, and its encrypted contents do not decrypt with this password)"}
	}
	out := &pfxContents{}
	bags = 0
	for _, sf := range list {
		contents := sf.contents
		if sf.encrypted != nil {
			contents, err = sf.encrypted.decrypt(pw, work)
			if errors.Is(err, errUndecryptable) {
				return nil, undecryptable()
			} else if err != nil {
				return nil, err
			}
		}
		// errUndecryptable here is a key that does not decrypt, or
		// SafeContents decrypted to well-padded garbage.
		err := out.readSafeContents(contents, pw, &bags, 0, sf.encrypted != nil, work)
		if errors.Is(err, errUndecryptable) {
			return nil, undecryptable()
		} else if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readSafeContents reads one SafeContents; decrypted says it was
// decrypted, so that what does not parse is the sign of a wrong key.
func (out *pfxContents) readSafeContents(contents []byte, pw pfxPassword, bags *int, depth int, decrypted bool, work *workBudget) error {
	if depth > maxBagDepth {
		return errorf(KindInvalid, "the file nests SafeContents more than %d deep", maxBagDepth)
	}
	var list []safeBag
	der, err := berToDER(contents)
	if err == nil {
		var rest []byte
		if rest, err = asn1.Unmarshal(der, &list); err == nil && len(rest) != 0 {
			err = errors.New("trailing data")
		}
	}
	if err != nil && decrypted {
		return fmt.Errorf("%w: SafeContents: %v", errUndecryptable, err)
	} else if err != nil {
		return damaged(fmt.Errorf("SafeContents: %v", err))
	}
	for _, b := range list {
		if *bags++; *bags > maxBags {
			return errorf(KindInvalid, "the file has more than %d bags; a guardian PFX has a few", maxBags)
		}
		value, err := explicitContent(b.Value)
		if err != nil {
			return damaged(err)
		}
		switch {
		case b.ID.Equal(oidKeyBag):
			key, err := x509.ParsePKCS8PrivateKey(value)
			if err != nil {
				return errorf(KindInvalid, "the file's private key does not parse (%v)", err)
			}
			out.keys = append(out.keys, key)
		case b.ID.Equal(oidShroudedKeyBag):
			var epki encryptedPrivateKeyInfo
			if rest, err := asn1.Unmarshal(value, &epki); err != nil || len(rest) != 0 {
				return damaged(fmt.Errorf("encrypted private key: %v", err))
			}
			plain, err := pbeDecrypt(epki.Algorithm, pw, epki.Data, work)
			if err != nil {
				return err
			}
			key, err := x509.ParsePKCS8PrivateKey(plain)
			if err != nil {
				return fmt.Errorf("%w: private key: %v", errUndecryptable, err)
			}
			out.keys = append(out.keys, key)
		case b.ID.Equal(oidCertBag):
			var cb certBag
			if rest, err := asn1.Unmarshal(value, &cb); err != nil || len(rest) != 0 {
				return damaged(fmt.Errorf("certificate bag: %v", err))
			}
			if !cb.ID.Equal(oidX509Certificate) {
				continue // SDSI certificates: not for guardians
			}
			octets, err := explicitOctets(cb.Value)
			if err != nil {
				return damaged(err)
			}
			cert, err := x509.ParseCertificate(octets)
			if err != nil {
				return errorf(KindInvalid, "a certificate in the file does not parse (%v)", err)
			}
			out.certs = append(out.certs, cert)
		case b.ID.Equal(oidSafeContentsBag):
			if err := out.readSafeContents(value, pw, bags, depth+1, decrypted, work); err != nil {
				return err
			}
		}
		// CRL and secret bags carry nothing a guardian needs.
	}
	return nil
}

// encryptedSafe is an EncryptedData SafeContents, parsed but not decrypted.
type encryptedSafe struct {
	pbe        *pbeScheme
	ciphertext []byte
}

func readEncryptedSafe(content asn1.RawValue) (*encryptedSafe, error) {
	inner, err := explicitContent(content)
	if err != nil {
		return nil, damaged(err)
	}
	var ed encryptedData
	if _, err := asn1.Unmarshal(inner, &ed); err != nil {
		return nil, damaged(err)
	}
	eci := ed.EncryptedContentInfo
	if eci.EncryptedContent.Class != asn1.ClassContextSpecific || eci.EncryptedContent.Tag != 0 {
		return nil, damaged(errors.New("encrypted data without content"))
	}
	ct, err := joinChunks(eci.EncryptedContent)
	if err != nil {
		return nil, damaged(err)
	}
	pbe, err := parsePBE(eci.ContentEncryptionAlgorithm)
	if err != nil {
		return nil, err
	}
	return &encryptedSafe{pbe: pbe, ciphertext: ct}, nil
}

func (e *encryptedSafe) decrypt(pw pfxPassword, work *workBudget) ([]byte, error) {
	if err := work.charge(e.pbe.cost); err != nil {
		return nil, err
	}
	return cbcDecrypt(e.pbe, pw, e.ciphertext)
}

// countPlainWork counts the bags of a plain SafeContents and charges the
// derivations of its shrouded key bags, without deriving anything. What does
// not parse is left for readSafeContents to report.
func countPlainWork(contents []byte, bags *int, depth int, work *workBudget) error {
	if depth > maxBagDepth {
		return errorf(KindInvalid, "the file nests SafeContents more than %d deep", maxBagDepth)
	}
	der, err := berToDER(contents)
	if err != nil {
		return nil
	}
	var list []safeBag
	if _, err := asn1.Unmarshal(der, &list); err != nil {
		return nil
	}
	for _, b := range list {
		if *bags++; *bags > maxBags {
			return errorf(KindInvalid, "the file has more than %d bags; a guardian PFX has a few", maxBags)
		}
		value, err := explicitContent(b.Value)
		if err != nil {
			continue
		}
		switch {
		case b.ID.Equal(oidShroudedKeyBag):
			var epki encryptedPrivateKeyInfo
			if _, err := asn1.Unmarshal(value, &epki); err != nil {
				continue
			}
			pbe, err := parsePBE(epki.Algorithm)
			if err != nil {
				return err
			}
			if err := work.charge(pbe.cost); err != nil {
				return err
			}
		case b.ID.Equal(oidSafeContentsBag):
			if err := countPlainWork(value, bags, depth+1, work); err != nil {
				return err
			}
		}
	}
	return nil
}

func damaged(err error) error {
	return errorf(KindInvalid, "the file is not a PFX, or it is truncated or damaged (%v)", err)
}

// explicitContent returns the element inside a [0] EXPLICIT wrapper.
func explicitContent(v asn1.RawValue) ([]byte, error) {
	if v.Class != asn1.ClassContextSpecific || v.Tag != 0 || !v.IsCompound {
		return nil, errors.New("missing [0] content")
	}
	var inner asn1.RawValue
	if rest, err := asn1.Unmarshal(v.Bytes, &inner); err != nil {
		return nil, err
	} else if len(rest) != 0 {
		return nil, errors.New("trailing data in [0] content")
	}
	return inner.FullBytes, nil
}

// explicitOctets returns the OCTET STRING inside a [0] EXPLICIT wrapper.
func explicitOctets(v asn1.RawValue) ([]byte, error) {
	inner, err := explicitContent(v)
	if err != nil {
		return nil, err
	}
	var octets []byte
	if _, err := asn1.Unmarshal(inner, &octets); err != nil {
		return nil, err
	}
	return octets, nil
}

// joinChunks returns the value of an IMPLICIT OCTET STRING, which BER may
// send as constructed chunks.
func joinChunks(v asn1.RawValue) ([]byte, error) {
	if !v.IsCompound {
		return v.Bytes, nil
	}
	var joined []byte
	rest := v.Bytes
	for len(rest) > 0 {
		var chunk asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &chunk); err != nil {
			return nil, err
		}
		if chunk.Class != asn1.ClassUniversal || chunk.Tag != asn1.TagOctetString || chunk.IsCompound {
			return nil, errors.New("a chunk of the encrypted content is not an OCTET STRING")
		}
		joined = append(joined, chunk.Bytes...)
	}
	return joined, nil
}

// verifyMAC checks the MAC and returns the password encoding that verified.
func verifyMAC(md macData, pw pfxPassword, content []byte, work *workBudget) (pfxPassword, error) {
	alg := md.Mac.Algorithm.Algorithm
	if alg.Equal(oidPBMAC1) {
		var p struct {
			KDF    pkix.AlgorithmIdentifier
			Scheme pkix.AlgorithmIdentifier
		}
		if rest, err := asn1.Unmarshal(md.Mac.Algorithm.Parameters.FullBytes, &p); err != nil || len(rest) != 0 {
			return pw, damaged(fmt.Errorf("PBMAC1 parameters: %v", err))
		}
		h := hmacHash(p.Scheme.Algorithm)
		if h == nil {
			return pw, errorf(KindUnsupported, "the file's MAC uses PBMAC1 with %s, which guardctl does not support", p.Scheme.Algorithm)
		}
		kp, err := parsePBKDF2(p.KDF)
		if err != nil {
			return pw, err
		}
		if kp.KeyLength < 20 || kp.KeyLength > 64 {
			return pw, errorf(KindUnsupported, "the file's PBMAC1 key length is %d bytes; guardctl accepts 20 to 64", kp.KeyLength)
		}
		if err := work.charge(kp.Iterations * chains(kp.KeyLength, kp.prf().Size())); err != nil {
			return pw, err
		}
		key, err := pbkdf2.Key(kp.prf, string(pw.utf8), kp.Salt, kp.Iterations, kp.KeyLength)
		if err != nil {
			return pw, damaged(err)
		}
		m := hmac.New(h, key)
		m.Write(content)
		if !hmac.Equal(m.Sum(nil), md.Mac.Digest) {
			return pw, &Error{Kind: KindPassword, Msg: "wrong password"}
		}
		return pw, nil
	}
	h := macHash(alg)
	if h == nil {
		return pw, errorf(KindUnsupported, "the file's MAC uses the algorithm %s, which guardctl does not support", alg)
	}
	if err := checkIterationCount(md.Iterations); err != nil {
		return pw, err
	}
	if md.Iterations < 1 {
		return pw, damaged(fmt.Errorf("MAC iteration count %d", md.Iterations))
	}
	candidates := [][]byte{pw.bmp}
	if len(pw.utf8) == 0 {
		candidates = append(candidates, nil) // some writers use no bytes at all for an empty password
	}
	if err := work.charge(md.Iterations * len(candidates)); err != nil {
		return pw, err
	}
	for _, c := range candidates {
		if hmac.Equal(pkcs12MAC(h, c, md, content), md.Mac.Digest) {
			pw.bmp = c
			return pw, nil
		}
	}
	return pw, &Error{Kind: KindPassword, Msg: "wrong password"}
}

type pbkdf2Parsed struct {
	pbkdf2Params
	prf func() hash.Hash
}

func parsePBKDF2(alg pkix.AlgorithmIdentifier) (*pbkdf2Parsed, error) {
	if !alg.Algorithm.Equal(oidPBKDF2) {
		return nil, errorf(KindUnsupported, "the file derives keys with %s; guardctl supports PBKDF2 and the PKCS#12 KDF", alg.Algorithm)
	}
	var p pbkdf2Parsed
	if rest, err := asn1.Unmarshal(alg.Parameters.FullBytes, &p.pbkdf2Params); err != nil || len(rest) != 0 {
		return nil, damaged(fmt.Errorf("PBKDF2 parameters: %v", err))
	}
	p.prf = sha1.New
	if len(p.PRF.Algorithm) > 0 {
		if p.prf = hmacHash(p.PRF.Algorithm); p.prf == nil {
			return nil, errorf(KindUnsupported, "the file's PBKDF2 uses the PRF %s, which guardctl does not support", p.PRF.Algorithm)
		}
	}
	if err := checkIterationCount(p.Iterations); err != nil {
		return nil, err
	}
	if p.Iterations < 1 || p.KeyLength < 0 {
		return nil, damaged(fmt.Errorf("PBKDF2 iteration count %d, key length %d", p.Iterations, p.KeyLength))
	}
	return &p, nil
}

// pbeDecrypt decrypts data under a PBES2 or PKCS#12 password-based
// encryption scheme, charging its key derivation to work first.
// errUndecryptable means bad padding.
func pbeDecrypt(alg pkix.AlgorithmIdentifier, pw pfxPassword, data []byte, work *workBudget) ([]byte, error) {
	pbe, err := parsePBE(alg)
	if err != nil {
		return nil, err
	}
	if err := work.charge(pbe.cost); err != nil {
		return nil, err
	}
	return cbcDecrypt(pbe, pw, data)
}

// cbcDecrypt derives pbe's key and decrypts data with it.
func cbcDecrypt(pbe *pbeScheme, pw pfxPassword, data []byte) ([]byte, error) {
	block, iv, err := pbe.cipher(pw)
	if err != nil {
		return nil, err
	}
	bs := block.BlockSize()
	if len(data) == 0 || len(data)%bs != 0 {
		return nil, damaged(fmt.Errorf("encrypted content of %d bytes is not a whole number of %d-byte blocks", len(data), bs))
	}
	plain := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, data)
	n := int(plain[len(plain)-1])
	if n == 0 || n > bs {
		return nil, errUndecryptable
	}
	for _, b := range plain[len(plain)-n:] {
		if int(b) != n {
			return nil, errUndecryptable
		}
	}
	return plain[:len(plain)-n], nil
}

// pbeScheme is a parsed password-based encryption scheme: what its key
// derivation costs, and the derivation itself.
type pbeScheme struct {
	cost   int // hash-iteration chains times iterations (see workBudget)
	cipher func(pw pfxPassword) (cipher.Block, []byte, error)
}

// parsePBE reads a PBES2 or PKCS#12 PBE algorithm identifier without
// deriving anything, so that the cost of a whole file can be known first.
func parsePBE(alg pkix.AlgorithmIdentifier) (*pbeScheme, error) {
	switch {
	case alg.Algorithm.Equal(oidPBES2):
		var p pbes2Params
		if rest, err := asn1.Unmarshal(alg.Parameters.FullBytes, &p); err != nil || len(rest) != 0 {
			return nil, damaged(fmt.Errorf("PBES2 parameters: %v", err))
		}
		kp, err := parsePBKDF2(p.KDF)
		if err != nil {
			return nil, err
		}
		var keyLen int
		var newCipher func([]byte) (cipher.Block, error)
		switch s := p.Scheme.Algorithm; {
		case len(s) == 9 && s[:8].Equal(oidAES256CBC[:8]) && (s[8] == 2 || s[8] == 22 || s[8] == 42):
			keyLen, newCipher = 16+8*(s[8]-2)/20, aes.NewCipher
		case s.Equal(oidDESEDE3CBC):
			keyLen, newCipher = 24, des.NewTripleDESCipher
		default:
			return nil, errorf(KindUnsupported, "the file is encrypted with %s, which guardctl does not support", s)
		}
		if kp.KeyLength != 0 && kp.KeyLength != keyLen {
			return nil, damaged(fmt.Errorf("PBKDF2 key length %d for a %d-byte key", kp.KeyLength, keyLen))
		}
		var iv []byte
		if rest, err := asn1.Unmarshal(p.Scheme.Parameters.FullBytes, &iv); err != nil || len(rest) != 0 {
			return nil, damaged(fmt.Errorf("IV: %v", err))
		}
		return &pbeScheme{
			cost: kp.Iterations * chains(keyLen, kp.prf().Size()),
			cipher: func(pw pfxPassword) (cipher.Block, []byte, error) {
				key, err := pbkdf2.Key(kp.prf, string(pw.utf8), kp.Salt, kp.Iterations, keyLen)
				if err != nil {
					return nil, nil, damaged(err)
				}
				block, err := newCipher(key)
				if err != nil {
					return nil, nil, damaged(err)
				}
				if len(iv) != block.BlockSize() {
					return nil, nil, damaged(fmt.Errorf("IV of %d bytes", len(iv)))
				}
				return block, iv, nil
			},
		}, nil
	case len(alg.Algorithm) == len(oidPKCS12PBE)+1 && alg.Algorithm[:len(oidPKCS12PBE)].Equal(oidPKCS12PBE):
		var p pkcs12PBEParams
		if rest, err := asn1.Unmarshal(alg.Parameters.FullBytes, &p); err != nil || len(rest) != 0 {
			return nil, damaged(fmt.Errorf("PBE parameters: %v", err))
		}
		if err := checkIterationCount(p.Iterations); err != nil {
			return nil, err
		}
		if p.Iterations < 1 {
			return nil, damaged(fmt.Errorf("PBE iteration count %d", p.Iterations))
		}
		var keyLen int
		switch alg.Algorithm[len(oidPKCS12PBE)] {
		case 3: // pbeWithSHAAnd3-KeyTripleDES-CBC
			keyLen = 24
		case 4, 5: // pbeWithSHAAnd2-KeyTripleDES-CBC, pbeWithSHAAnd128BitRC2-CBC
			keyLen = 16
		case 6: // pbeWithSHAAnd40BitRC2-CBC
			keyLen = 5
		default:
			return nil, errorf(KindUnsupported, "the file is encrypted with %s (RC4), which guardctl does not support", alg.Algorithm)
		}
		return &pbeScheme{
			// The key, then the IV (8 bytes: one SHA-1 chain).
			cost: p.Iterations * (chains(keyLen, sha1.Size) + 1),
			cipher: func(pw pfxPassword) (cipher.Block, []byte, error) {
				derive := func(id byte, n int) []byte { return pkcs12KDF(sha1.New, id, pw.bmp, p.Salt, p.Iterations, n) }
				var block cipher.Block
				var err error
				switch alg.Algorithm[len(oidPKCS12PBE)] {
				case 3:
					block, err = des.NewTripleDESCipher(derive(1, 24))
				case 4:
					k := derive(1, 16)
					block, err = des.NewTripleDESCipher(append(k, k[:8]...))
				case 5:
					block, err = newRC2(derive(1, 16), 128)
				case 6:
					block, err = newRC2(derive(1, 5), 40)
				}
				if err != nil {
					return nil, nil, damaged(err)
				}
				return block, derive(2, 8), nil
			},
		}, nil
	}
	return nil, errorf(KindUnsupported, "the file is encrypted with %s, which guardctl does not support", alg.Algorithm)
}

// chains is how many hash chains a derivation of n bytes runs with a hash
// of size bytes (PBKDF2 and the PKCS#12 KDF each run one per output block).
func chains(n, size int) int {
	return max(1, (n+size-1)/size)
}

// workBudget bounds the key-derivation work of a whole file, in hash
// iterations (a derivation costs its iteration count times the hash chains
// it runs). A per-derivation bound alone let a file of 255 key bags at the
// maximum count keep guardctl busy for most of a minute: the total is
// counted before any derivation where the structure shows it (the MAC,
// every encrypted SafeContents, every key bag outside one) and charged
// before each derivation for what only decryption reveals.
type workBudget struct {
	left int
}

// maxWork is the budget of a whole file: a file at the maximum iteration
// count for its MAC, its encrypted certificates and its key (three
// derivations) fits, with room for a legacy file's extra IV chains at the
// counts Windows writes; at about 0.2 µs per iteration it is under a second.
func maxWork() int { return 4 * iterationLimit }

func (w *workBudget) charge(cost int) error {
	if cost > w.left {
		return errorf(KindUnsupported, "the file asks for more key-derivation work than guardctl does for one PFX (%d iterations in all, its key bags, encrypted contents and MAC together); a guardian PFX holds one key and one certificate: re-export it with a lower iteration count", maxWork())
	}
	w.left -= cost
	return nil
}

func hmacHash(oid asn1.ObjectIdentifier) func() hash.Hash {
	if len(oid) == 6 && oid[:5].Equal(oidHMACWithSHA1[:5]) {
		switch oid[5] {
		case 7:
			return sha1.New
		case 8:
			return sha256.New224
		case 9:
			return sha256.New
		case 10:
			return sha512.New384
		case 11:
			return sha512.New
		}
	}
	return nil
}

// macHash is the hash of a classic PKCS#12 MAC (HMAC under a key from the
// PKCS#12 KDF).
func macHash(oid asn1.ObjectIdentifier) func() hash.Hash {
	switch {
	case oid.Equal(oidSHA1):
		return sha1.New
	case oid.Equal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}):
		return sha256.New224
	case oid.Equal(oidSHA256):
		return sha256.New
	case oid.Equal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}):
		return sha512.New384
	case oid.Equal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}):
		return sha512.New
	}
	return nil
}

// pkcs12MAC is the HMAC of RFC 7292 §5 with its key from the KDF of
// Appendix B.2 (ID 3).
func pkcs12MAC(h func() hash.Hash, password []byte, md macData, content []byte) []byte {
	key := pkcs12KDF(h, 3, password, md.MacSalt, md.Iterations, h().Size())
	m := hmac.New(h, key)
	m.Write(content)
	return m.Sum(nil)
}

// pkcs12KDF is the key derivation of RFC 7292 Appendix B.2.
func pkcs12KDF(h func() hash.Hash, id byte, password, salt []byte, iterations, n int) []byte {
	v := h().BlockSize()
	fill := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		out := make([]byte, v*((len(b)+v-1)/v))
		for i := range out {
			out[i] = b[i%len(b)]
		}
		return out
	}
	D := bytes.Repeat([]byte{id}, v)
	I := append(fill(salt), fill(password)...)
	var out []byte
	for len(out) < n {
		hh := h()
		hh.Write(D)
		hh.Write(I)
		A := hh.Sum(nil)
		for r := 1; r < iterations; r++ {
			hh.Reset()
			hh.Write(A)
			A = hh.Sum(A[:0])
		}
		out = append(out, A...)
		B := fill(A)
		for j := 0; j < len(I); j += v {
			// I_j = (I_j + B + 1) mod 2^(8v)
			carry := 1
			for k := v - 1; k >= 0; k-- {
				s := int(I[j+k]) + int(B[k]) + carry
				I[j+k] = byte(s)
				carry = s >> 8
			}
		}
	}
	return out[:n]
}

// MaxIterations bounds the key-derivation iteration counts a PFX may ask
// for. Windows refuses more than 600,000; a hostile file asking for
// billions would otherwise keep guardctl busy for hours.
const MaxIterations = 1_000_000

// iterationLimit is MaxIterations; fuzz targets lower it so that each run
// stays cheap under coverage instrumentation.
var iterationLimit = MaxIterations

func checkIterationCount(n int) error {
	if n > iterationLimit || n < 0 {
		return errorf(KindUnsupported, "the file asks for %d key-derivation iterations, more than the %d guardctl allows; re-export it with a lower count", n, iterationLimit)
	}
	return nil
}

// The parameters guardctl writes. Modern: what Windows 10 1709 and later
// and OpenSSL 3 write by default. Legacy: 3DES and an HMAC-SHA1 MAC, for
// Windows Server 2016, with the iteration counts Windows itself writes in
// that format (2000 for the key, the certificates and the MAC): the
// strongest legacy profile it is known to read.
const (
	pfxIterations    = 2048
	legacyIterations = 2000
	pfxSaltSize      = 16
)

// encodePKCS12 writes one key and its certificate, the key in a shrouded
// key bag and the certificate in an encrypted SafeContents, both tagged
// with the certificate's SHA-1 as localKeyId (Windows pairs them by it),
// under a MAC.
func encodePKCS12(key *rsa.PrivateKey, cert *x509.Certificate, password string, legacy bool, rnd io.Reader) ([]byte, error) {
	pw := newPFXPassword(password)
	iterations := pfxIterations
	if legacy {
		iterations = legacyIterations
	}
	id := sha1.Sum(cert.Raw)
	attrs := []bagAttribute{{ID: oidLocalKeyID, Values: [][]byte{id[:]}}}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	alg, ct, err := pbeEncrypt(pw, pkcs8, legacy, iterations, rnd)
	if err != nil {
		return nil, err
	}
	epki, err := asn1.Marshal(encryptedPrivateKeyInfo{Algorithm: alg, Data: ct})
	if err != nil {
		return nil, err
	}
	keySafe, err := asn1.Marshal([]safeBagOut{{ID: oidShroudedKeyBag, Value: explicit(epki), Attributes: attrs}})
	if err != nil {
		return nil, err
	}
	certOctets, err := asn1.Marshal(cert.Raw)
	if err != nil {
		return nil, err
	}
	cb, err := asn1.Marshal(certBag{ID: oidX509Certificate, Value: explicit(certOctets)})
	if err != nil {
		return nil, err
	}
	certSafe, err := asn1.Marshal([]safeBagOut{{ID: oidCertBag, Value: explicit(cb), Attributes: attrs}})
	if err != nil {
		return nil, err
	}
	alg, ct, err = pbeEncrypt(pw, certSafe, legacy, iterations, rnd)
	if err != nil {
		return nil, err
	}
	ed, err := asn1.Marshal(encryptedData{Version: 0, EncryptedContentInfo: encryptedContentInfo{
		ContentType:                oidData,
		ContentEncryptionAlgorithm: alg,
		EncryptedContent:           asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: ct},
	}})
	if err != nil {
		return nil, err
	}
	keyOctets, err := asn1.Marshal(keySafe)
	if err != nil {
		return nil, err
	}
	authSafe, err := asn1.Marshal([]contentInfo{
		{ContentType: oidEncryptedData, Content: explicit(ed)},
		{ContentType: oidData, Content: explicit(keyOctets)},
	})
	if err != nil {
		return nil, err
	}
	md := macData{Iterations: iterations, MacSalt: make([]byte, pfxSaltSize)}
	if _, err := io.ReadFull(rnd, md.MacSalt); err != nil {
		return nil, err
	}
	h, macOID := sha256.New, oidSHA256
	if legacy {
		h, macOID = sha1.New, oidSHA1
	}
	md.Mac.Algorithm = pkix.AlgorithmIdentifier{Algorithm: macOID, Parameters: asn1NULL}
	md.Mac.Digest = pkcs12MAC(h, pw.bmp, md, authSafe)
	authOctets, err := asn1.Marshal(authSafe)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(pfxPDU{Version: 3, AuthSafe: contentInfo{ContentType: oidData, Content: explicit(authOctets)}, MacData: md})
}

func explicit(inner []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner}
}

// pbeEncrypt encrypts with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) or, for
// legacy, pbeWithSHAAnd3-KeyTripleDES-CBC.
func pbeEncrypt(pw pfxPassword, plain []byte, legacy bool, iterations int, rnd io.Reader) (pkix.AlgorithmIdentifier, []byte, error) {
	var none pkix.AlgorithmIdentifier
	var alg pkix.AlgorithmIdentifier
	var block cipher.Block
	var iv []byte
	if legacy {
		salt := make([]byte, 8)
		if _, err := io.ReadFull(rnd, salt); err != nil {
			return none, nil, err
		}
		params, err := asn1.Marshal(pkcs12PBEParams{Salt: salt, Iterations: iterations})
		if err != nil {
			return none, nil, err
		}
		alg = pkix.AlgorithmIdentifier{Algorithm: oidPBEWithSHA3DES, Parameters: asn1.RawValue{FullBytes: params}}
		if block, err = des.NewTripleDESCipher(pkcs12KDF(sha1.New, 1, pw.bmp, salt, iterations, 24)); err != nil {
			return none, nil, err
		}
		iv = pkcs12KDF(sha1.New, 2, pw.bmp, salt, iterations, 8)
	} else {
		salt := make([]byte, pfxSaltSize)
		iv = make([]byte, aes.BlockSize)
		if _, err := io.ReadFull(rnd, salt); err != nil {
			return none, nil, err
		}
		if _, err := io.ReadFull(rnd, iv); err != nil {
			return none, nil, err
		}
		kdf, err := asn1.Marshal(pbkdf2Params{Salt: salt, Iterations: iterations, PRF: pkix.AlgorithmIdentifier{Algorithm: oidHMACWithSHA256, Parameters: asn1NULL}})
		if err != nil {
			return none, nil, err
		}
		ivOctets, err := asn1.Marshal(iv)
		if err != nil {
			return none, nil, err
		}
		params, err := asn1.Marshal(pbes2Params{
			KDF:    pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: kdf}},
			Scheme: pkix.AlgorithmIdentifier{Algorithm: oidAES256CBC, Parameters: asn1.RawValue{FullBytes: ivOctets}},
		})
		if err != nil {
			return none, nil, err
		}
		alg = pkix.AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: params}}
		key, err := pbkdf2.Key(sha256.New, string(pw.utf8), salt, iterations, 32)
		if err != nil {
			return none, nil, err
		}
		if block, err = aes.NewCipher(key); err != nil {
			return none, nil, err
		}
	}
	bs := block.BlockSize()
	n := bs - len(plain)%bs
	padded := append(append([]byte{}, plain...), bytes.Repeat([]byte{byte(n)}, n)...)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(padded, padded)
	return alg, padded, nil
}

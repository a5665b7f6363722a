package guardian

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509/pkix"
	"encoding/asn1"
	"hash"
	"unicode/utf16"
)

// The PKCS#12 structures (RFC 7292) that have to be rewritten to turn a BER
// file into DER. Only what is needed to reach the BER parts is decoded.

type pfxPDU struct {
	Version  int
	AuthSafe contentInfo
	MacData  macData `asn1:"optional"`
}

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"tag:0,explicit,optional"`
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
	ContentEncryptionAlgorithm asn1.RawValue
	EncryptedContent           asn1.RawValue `asn1:"optional"`
}

var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidEncryptedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}
)

// pfxToDER returns a DER encoding of a PFX that may be BER-encoded. When the
// MAC-protected content itself was BER, its DER form has a different MAC:
// the original MAC is verified with password first and then computed again
// over the DER content, so a wrong password or a changed byte is still
// refused.
func pfxToDER(data []byte, password string) ([]byte, error) {
	der, err := berToDER(data)
	if err != nil {
		return nil, err
	}
	var pfx pfxPDU
	if rest, err := asn1.Unmarshal(der, &pfx); err != nil || len(rest) != 0 || !pfx.AuthSafe.ContentType.Equal(oidData) {
		return der, nil // let the PKCS#12 decoder name what is wrong
	}
	var content []byte
	if _, err := asn1.Unmarshal(pfx.AuthSafe.Content.Bytes, &content); err != nil {
		return der, nil
	}
	newContent, err := authSafeToDER(content)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(newContent, content) {
		return der, nil
	}
	if len(pfx.MacData.Mac.Algorithm.Algorithm) > 0 {
		h := macHash(pfx.MacData.Mac.Algorithm.Algorithm)
		if h == nil {
			return nil, errorf(KindUnsupported, "the file is BER-encoded and its MAC algorithm %s is not supported for BER files; re-export it with openssl pkcs12 -export", pfx.MacData.Mac.Algorithm.Algorithm)
		}
		pw := bmpPassword(password)
		if !hmac.Equal(pkcs12MAC(h, pw, pfx.MacData, content), pfx.MacData.Mac.Digest) {
			alt := []byte(nil) // some writers use an empty byte string for an empty password
			if password != "" || !hmac.Equal(pkcs12MAC(h, alt, pfx.MacData, content), pfx.MacData.Mac.Digest) {
				return nil, &Error{Kind: KindPassword, Msg: "wrong password"}
			}
			pw = alt
		}
		pfx.MacData.Mac.Digest = pkcs12MAC(h, pw, pfx.MacData, newContent)
	}
	octets, err := asn1.Marshal(newContent)
	if err != nil {
		return nil, err
	}
	pfx.AuthSafe.Content = asn1.RawValue{FullBytes: appendTLV(nil, []byte{0xa0}, octets)}
	return asn1.Marshal(pfx)
}

// authSafeToDER converts the AuthenticatedSafe and the SafeContents of its
// plain "data" members; encrypted members get their chunked ciphertext
// joined (their plaintext is read by go-pkcs12 and must be DER).
func authSafeToDER(content []byte) ([]byte, error) {
	der, err := berToDER(content)
	if err != nil {
		return nil, err
	}
	var safe []contentInfo
	if rest, err := asn1.Unmarshal(der, &safe); err != nil || len(rest) != 0 {
		return der, nil
	}
	for i, ci := range safe {
		var inner []byte
		switch {
		case ci.ContentType.Equal(oidData):
			var octets []byte
			if _, err := asn1.Unmarshal(ci.Content.Bytes, &octets); err != nil {
				continue
			}
			if inner, err = berToDER(octets); err != nil {
				return nil, err
			}
			if inner, err = asn1.Marshal(inner); err != nil {
				return nil, err
			}
		case ci.ContentType.Equal(oidEncryptedData):
			var ed encryptedData
			if _, err := asn1.Unmarshal(ci.Content.Bytes, &ed); err != nil {
				continue
			}
			ec := &ed.EncryptedContentInfo.EncryptedContent
			if ec.Class == asn1.ClassContextSpecific && ec.IsCompound {
				// [0] IMPLICIT OCTET STRING sent as chunks.
				var joined []byte
				rest := ec.Bytes
				for len(rest) > 0 {
					var chunk asn1.RawValue
					if rest, err = asn1.Unmarshal(rest, &chunk); err != nil {
						return nil, err
					}
					joined = append(joined, chunk.Bytes...)
				}
				*ec = asn1.RawValue{FullBytes: appendTLV(nil, []byte{0x80}, joined)}
			}
			if inner, err = asn1.Marshal(ed); err != nil {
				return nil, err
			}
		default:
			continue
		}
		safe[i].Content = asn1.RawValue{FullBytes: appendTLV(nil, []byte{0xa0}, inner)}
	}
	return asn1.Marshal(safe)
}

func macHash(oid asn1.ObjectIdentifier) func() hash.Hash {
	switch {
	case oid.Equal(asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}):
		return sha1.New
	case oid.Equal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}):
		return sha256.New
	case oid.Equal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}):
		return sha512.New384
	case oid.Equal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}):
		return sha512.New
	}
	return nil
}

// bmpPassword is the password as PKCS#12 feeds it to its KDF: UTF-16BE with
// a terminating zero.
func bmpPassword(s string) []byte {
	var b []byte
	for _, r := range utf16.Encode([]rune(s)) {
		b = append(b, byte(r>>8), byte(r))
	}
	return append(b, 0, 0)
}

// pkcs12MAC is the HMAC of RFC 7292 §5 with its key from the KDF of
// Appendix B.2 (ID 3).
func pkcs12MAC(h func() hash.Hash, password []byte, md macData, content []byte) []byte {
	key := pkcs12KDF(h, 3, password, md.MacSalt, md.Iterations, h().Size())
	m := hmac.New(h, key)
	m.Write(content)
	return m.Sum(nil)
}

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

var (
	oidPBES2          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPKCS12PBE      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1}
	oidShroudedKeyBag = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
)

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type safeBag struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue `asn1:"tag:0,explicit"`
	Rest  asn1.RawValue `asn1:"optional"`
}

// checkIterations refuses a DER PFX whose MAC or encryption asks for more
// than MaxIterations, before any key derivation runs. What it cannot parse
// it leaves to the decoder.
func checkIterations(der []byte) error {
	var pfx pfxPDU
	if _, err := asn1.Unmarshal(der, &pfx); err != nil {
		return nil
	}
	if err := checkIterationCount(pfx.MacData.Iterations); err != nil {
		return err
	}
	var content []byte
	if _, err := asn1.Unmarshal(pfx.AuthSafe.Content.Bytes, &content); err != nil {
		return nil
	}
	var safe []contentInfo
	if _, err := asn1.Unmarshal(content, &safe); err != nil {
		return nil
	}
	for _, ci := range safe {
		switch {
		case ci.ContentType.Equal(oidEncryptedData):
			var ed struct {
				Version int
				Info    struct {
					ContentType asn1.ObjectIdentifier
					Algorithm   algorithmIdentifier
					Rest        asn1.RawValue `asn1:"optional"`
				}
			}
			if _, err := asn1.Unmarshal(ci.Content.Bytes, &ed); err == nil {
				if err := checkPBEParams(ed.Info.Algorithm); err != nil {
					return err
				}
			}
		case ci.ContentType.Equal(oidData):
			var octets []byte
			if _, err := asn1.Unmarshal(ci.Content.Bytes, &octets); err != nil {
				continue
			}
			var bags []safeBag
			if _, err := asn1.Unmarshal(octets, &bags); err != nil {
				continue
			}
			for _, b := range bags {
				if !b.ID.Equal(oidShroudedKeyBag) {
					continue
				}
				var epki struct {
					Algorithm algorithmIdentifier
					Data      []byte
				}
				if _, err := asn1.Unmarshal(b.Value.Bytes, &epki); err == nil {
					if err := checkPBEParams(epki.Algorithm); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

func checkPBEParams(alg algorithmIdentifier) error {
	var iterations int
	switch {
	case alg.Algorithm.Equal(oidPBES2):
		var p struct {
			KDF struct {
				Algorithm asn1.ObjectIdentifier
				Params    struct {
					Salt       asn1.RawValue
					Iterations int
					Rest       asn1.RawValue `asn1:"optional"`
				}
			}
			Scheme asn1.RawValue
		}
		if _, err := asn1.Unmarshal(alg.Parameters.FullBytes, &p); err != nil {
			return nil
		}
		iterations = p.KDF.Params.Iterations
	case len(alg.Algorithm) == len(oidPKCS12PBE)+1 && alg.Algorithm[:len(oidPKCS12PBE)].Equal(oidPKCS12PBE):
		var p struct {
			Salt       []byte
			Iterations int
		}
		if _, err := asn1.Unmarshal(alg.Parameters.FullBytes, &p); err != nil {
			return nil
		}
		iterations = p.Iterations
	default:
		return nil
	}
	return checkIterationCount(iterations)
}

func checkIterationCount(n int) error {
	if n > iterationLimit || n < 0 {
		return errorf(KindUnsupported, "the file asks for %d key-derivation iterations, more than the %d guardctl allows; re-export it with a lower count", n, iterationLimit)
	}
	return nil
}

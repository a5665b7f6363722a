package keyprotector

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/beevik/etree"
	"github.com/guardctl/guardctl/internal/safexml"
	dsig "github.com/russellhaering/goxmldsig"
	"github.com/russellhaering/goxmldsig/etreeutils"
)

// MaxFileSize bounds a key protector read from outside.
const MaxFileSize = 4 << 20

var limits = safexml.Limits{MaxBytes: MaxFileSize, MaxDepth: 12, MaxElements: 20*MaxWrappings + 64}

// EncodeFile is the on-disk form: a 4-byte big-endian total length, then the
// UTF-8 XML, as Get-VMKeyProtector's bytes appear to be.
func EncodeFile(xmlData []byte) []byte {
	out := make([]byte, 4, 4+len(xmlData))
	binary.BigEndian.PutUint32(out, uint32(4+len(xmlData)))
	return append(out, xmlData...)
}

// DecodeFile returns the XML of a key protector file, with or without the
// length prefix.
func DecodeFile(data []byte) ([]byte, error) {
	if len(data) > MaxFileSize {
		return nil, errorf(KindInvalid, "the file is %d bytes, more than a key protector may be (%d)", len(data), MaxFileSize)
	}
	trimmed := bytes.TrimLeft(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '<' {
		return data, nil
	}
	if len(data) < 4 {
		return nil, errorf(KindInvalid, "the file is too short to be a key protector (%d bytes)", len(data))
	}
	n := binary.BigEndian.Uint32(data)
	if n == 4 && len(data) == 4 {
		return nil, errorf(KindInvalid, "the file is an empty key protector (the VM has none)")
	}
	if int64(n) != int64(len(data)) {
		return nil, errorf(KindInvalid, "the length prefix says %d bytes but the file has %d: it is truncated or not a key protector", n, len(data))
	}
	return data[4:], nil
}

// canonicalize returns the exclusive canonical form of el, with the
// namespaces it inherits from its ancestors declared on it.
func canonicalize(el *etree.Element) ([]byte, error) {
	ctx, err := etreeutils.NSBuildParentContext(el)
	if err != nil {
		return nil, err
	}
	detached, err := etreeutils.NSDetatch(ctx, el)
	if err != nil {
		return nil, err
	}
	return dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("").Canonicalize(detached)
}

// build returns the document for p with empty signature values, and the
// elements that receive them once the canonical Wrappings is known.
func (p *Protector) build() (doc *etree.Document, wrappings, tkSig, guardianSig *etree.Element) {
	doc = etree.NewDocument()
	doc.CreateProcInst("xml", `version="1.0" encoding="utf-8"`)
	root := doc.CreateElement("Protector")
	root.CreateAttr("xmlns", Namespace)
	if p.MaxOfflineUnwraps != "" {
		root.CreateAttr("MaxOfflineUnwraps", p.MaxOfflineUnwraps)
	}
	wrappings = root.CreateElement("Wrappings")
	for _, w := range p.Wrappings {
		we := wrappings.CreateElement("Wrapping")
		we.CreateElement("Id").SetText(strconv.FormatUint(uint64(w.ID), 10))
		we.CreateElement("SigningCertificate").SetText(b64(w.Signing.Raw))
		scs := we.CreateElement("SigningCertificateSignature")
		scs.CreateAttr("ParentWrappingId", strconv.FormatUint(uint64(w.ParentID), 10))
		addSignature(scs, w.SigningCertSig)
		we.CreateElement("EncryptionCertificate").SetText(b64(w.Encryption.Raw))
		addSignature(we.CreateElement("EncryptionCertificateSignature"), w.EncryptionCertSig)
		ed := we.CreateElement("TransportKey").CreateElement("EncryptedData")
		ed.CreateAttr("Algorithm", w.KeyAlgorithm)
		params := ed.CreateElement("Parameters")
		dm := params.CreateElement("ds:DigestMethod")
		dm.CreateAttr("xmlns:ds", nsDSig)
		dm.CreateAttr("Algorithm", w.KeyDigest)
		mgf := params.CreateElement("xenc11:MGF")
		mgf.CreateAttr("xmlns:xenc11", nsXEnc11)
		mgf.CreateAttr("Algorithm", w.KeyMGF)
		ed.CreateElement("CipherValue").SetText(b64(w.EncryptedTransportKey))
	}
	tkSig = root.CreateElement("TransportKeySignature")
	kdm := tkSig.CreateElement("KeyDerivationMethod")
	kdm.CreateAttr("Algorithm", p.KDFAlgorithm)
	hp := kdm.CreateElement("Parameters").CreateElement("dsig-more:HKDFParams")
	hp.CreateAttr("xmlns:dsig-more", nsDSigMore2021)
	hp.CreateElement("dsig-more:PRF").CreateAttr("Algorithm", p.KDFParams.PRF)
	hp.CreateElement("dsig-more:Info").SetText(p.KDFParams.Info)
	hp.CreateElement("dsig-more:KeyLength").SetText(p.KDFParams.KeyLength)
	tkSig = addSignature(tkSig, Signature{Algorithm: p.TransportKeySignature.Algorithm})
	gs := root.CreateElement("GuardianSignature")
	gs.CreateAttr("WrappingId", strconv.FormatUint(uint64(p.OwnerID), 10))
	guardianSig = addSignature(gs, Signature{Algorithm: p.GuardianSignature.Algorithm})
	doc.Indent(2)
	return doc, wrappings, tkSig, guardianSig
}

// encode is the document guardctl writes for p, signature values included.
func (p *Protector) encode() ([]byte, error) {
	doc, _, tkSig, guardianSig := p.build()
	tkSig.SetText(b64(p.TransportKeySignature.Value))
	guardianSig.SetText(b64(p.GuardianSignature.Value))
	return doc.WriteToBytes()
}

// addSignature appends a Signature_T and returns its SignatureValue element.
func addSignature(parent *etree.Element, s Signature) *etree.Element {
	se := parent.CreateElement("Signature")
	se.CreateAttr("Algorithm", s.Algorithm)
	sv := se.CreateElement("SignatureValue")
	if s.Value != nil {
		sv.SetText(b64(s.Value))
	}
	return sv
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// parser walks a parsed document and remembers the first problem.
type parser struct{ err error }

func (ps *parser) fail(format string, args ...any) {
	if ps.err == nil {
		ps.err = errorf(KindInvalid, "not a valid key protector: "+format, args...)
	}
}

// children returns el's child elements, which must be exactly names, in
// order, in the KPS namespace (a name ending in ? is optional).
func (ps *parser) children(el *etree.Element, names ...string) map[string]*etree.Element {
	out := map[string]*etree.Element{}
	kids := el.ChildElements()
	i := 0
	for _, n := range names {
		optional := strings.HasSuffix(n, "?")
		n = strings.TrimSuffix(n, "?")
		if i < len(kids) && kids[i].Tag == n && kids[i].NamespaceURI() == Namespace {
			out[n] = kids[i]
			i++
			continue
		}
		if !optional {
			ps.fail("<%s> lacks <%s>", el.Tag, n)
			return out
		}
	}
	if i < len(kids) {
		ps.fail("<%s> has an unexpected <%s>", el.Tag, kids[i].Tag)
	}
	for _, t := range el.Child {
		if cd, ok := t.(*etree.CharData); ok && strings.TrimSpace(cd.Data) != "" && len(kids) > 0 {
			ps.fail("<%s> has unexpected text", el.Tag)
		}
	}
	return out
}

func (ps *parser) text(el *etree.Element) string {
	if el == nil {
		return ""
	}
	if len(el.ChildElements()) > 0 {
		ps.fail("<%s> should hold text only", el.Tag)
	}
	return strings.TrimSpace(el.Text())
}

func (ps *parser) uint32(el *etree.Element, what string, s string) uint32 {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		ps.fail("%s %q is not a 32-bit unsigned integer", what, s)
	}
	return uint32(v)
}

func (ps *parser) base64(el *etree.Element) []byte {
	s := strings.Join(strings.Fields(ps.text(el)), "")
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		if el != nil {
			ps.fail("<%s> is not base64", el.Tag)
		}
	}
	return b
}

func (ps *parser) cert(el *etree.Element) *x509.Certificate {
	der := ps.base64(el)
	if ps.err != nil {
		return nil
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		ps.fail("<%s> does not hold a certificate (%v)", el.Tag, err)
		return nil
	}
	return c
}

func (ps *parser) signature(el *etree.Element) Signature {
	if el == nil {
		return Signature{}
	}
	c := ps.children(el, "Signature")
	se := c["Signature"]
	if se == nil {
		return Signature{}
	}
	sc := ps.children(se, "Parameters?", "SignatureValue")
	return Signature{Algorithm: se.SelectAttrValue("Algorithm", ""), Value: ps.base64(sc["SignatureValue"])}
}

// Parse reads a key protector (file form or bare XML) and checks its
// structure: one Wrappings, each Wrapping complete with distinct IDs and
// certificates, exactly one owner. Signatures are checked by Verify.
func Parse(data []byte) (*Protector, error) {
	xmlData, err := DecodeFile(data)
	if err != nil {
		return nil, err
	}
	if err := safexml.Check(xmlData, limits); err != nil {
		return nil, errorf(KindInvalid, "not a valid key protector: %v", err)
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(xmlData); err != nil {
		return nil, errorf(KindInvalid, "not a valid key protector: %v", err)
	}
	root := doc.Root()
	if root == nil || root.Tag != "Protector" || root.NamespaceURI() != Namespace {
		return nil, errorf(KindInvalid, "not a key protector: the root element is not {%s}Protector", Namespace)
	}
	ps := &parser{}
	p := &Protector{MaxOfflineUnwraps: root.SelectAttrValue("MaxOfflineUnwraps", "")}
	top := ps.children(root, "Wrappings", "TransportKeySignature", "GuardianSignature")
	if ps.err != nil {
		return nil, ps.err
	}
	for _, we := range top["Wrappings"].ChildElements() {
		if we.Tag != "Wrapping" || we.NamespaceURI() != Namespace {
			ps.fail("<Wrappings> has an unexpected <%s>", we.Tag)
			break
		}
		if len(p.Wrappings) == MaxWrappings {
			ps.fail("more than %d wrappings", MaxWrappings)
			break
		}
		c := ps.children(we, "Id", "SigningCertificate", "SigningCertificateSignature", "EncryptionCertificate", "EncryptionCertificateSignature", "TransportKey")
		if ps.err != nil {
			break
		}
		w := &Wrapping{}
		w.ID = ps.uint32(c["Id"], "wrapping Id", ps.text(c["Id"]))
		w.Signing = ps.cert(c["SigningCertificate"])
		w.ParentID = ps.uint32(c["SigningCertificateSignature"], "ParentWrappingId", c["SigningCertificateSignature"].SelectAttrValue("ParentWrappingId", ""))
		w.SigningCertSig = ps.signature(c["SigningCertificateSignature"])
		w.Encryption = ps.cert(c["EncryptionCertificate"])
		w.EncryptionCertSig = ps.signature(c["EncryptionCertificateSignature"])
		tk := ps.children(c["TransportKey"], "EncryptedData")
		if ed := tk["EncryptedData"]; ed != nil {
			w.KeyAlgorithm = ed.SelectAttrValue("Algorithm", "")
			ec := ps.children(ed, "Parameters?", "CipherValue")
			if params := ec["Parameters"]; params != nil {
				for _, pe := range params.ChildElements() {
					switch {
					case pe.Tag == "DigestMethod" && pe.NamespaceURI() == nsDSig:
						w.KeyDigest = pe.SelectAttrValue("Algorithm", "")
					case pe.Tag == "MGF" && pe.NamespaceURI() == nsXEnc11:
						w.KeyMGF = pe.SelectAttrValue("Algorithm", "")
					default:
						w.KeyDigest = "unknown parameter {" + pe.NamespaceURI() + "}" + pe.Tag
					}
				}
			}
			w.EncryptedTransportKey = ps.base64(ec["CipherValue"])
		}
		if ps.err != nil {
			break
		}
		for _, o := range p.Wrappings {
			switch {
			case o.ID == w.ID:
				ps.fail("two wrappings have Id %d", w.ID)
			case o.Signing.Equal(w.Signing) || o.Encryption.Equal(w.Encryption):
				ps.fail("wrappings %d and %d are for the same guardian", o.ID, w.ID)
			}
		}
		p.Wrappings = append(p.Wrappings, w)
	}
	if ps.err != nil {
		return nil, ps.err
	}
	if len(p.Wrappings) == 0 {
		return nil, errorf(KindInvalid, "not a valid key protector: it has no wrappings")
	}
	owners := 0
	for _, w := range p.Wrappings {
		if w.ParentID == w.ID {
			owners++
			p.OwnerID = w.ID
		}
	}
	if owners != 1 {
		return nil, errorf(KindInvalid, "not a valid key protector: %d wrappings sign themselves; exactly one, the owner's, must", owners)
	}
	tks := ps.children(top["TransportKeySignature"], "KeyDerivationMethod", "Signature")
	if kdm := tks["KeyDerivationMethod"]; kdm != nil {
		p.KDFAlgorithm = kdm.SelectAttrValue("Algorithm", "")
		if params := ps.children(kdm, "Parameters?")["Parameters"]; params != nil {
			for _, hp := range params.ChildElements() {
				if hp.Tag != "HKDFParams" || hp.NamespaceURI() != nsDSigMore2021 {
					p.KDFParams.PRF = "unknown parameter {" + hp.NamespaceURI() + "}" + hp.Tag
					continue
				}
				for _, e := range hp.ChildElements() {
					switch e.Tag {
					case "PRF":
						p.KDFParams.PRF = e.SelectAttrValue("Algorithm", "")
					case "Info":
						p.KDFParams.Info = strings.TrimSpace(e.Text())
					case "KeyLength":
						p.KDFParams.KeyLength = strings.TrimSpace(e.Text())
					}
				}
			}
		}
	}
	if se := tks["Signature"]; se != nil {
		sc := ps.children(se, "Parameters?", "SignatureValue")
		p.TransportKeySignature = Signature{Algorithm: se.SelectAttrValue("Algorithm", ""), Value: ps.base64(sc["SignatureValue"])}
	}
	gs := top["GuardianSignature"]
	if id := ps.uint32(gs, "GuardianSignature WrappingId", gs.SelectAttrValue("WrappingId", "")); ps.err == nil && id != p.OwnerID {
		ps.fail("the GuardianSignature is by wrapping %d, not by the owner (%d)", id, p.OwnerID)
	}
	p.GuardianSignature = ps.signature(gs)
	if ps.err != nil {
		return nil, ps.err
	}
	if p.canonicalWrappings, err = canonicalize(top["Wrappings"]); err != nil {
		return nil, errorf(KindInvalid, "not a valid key protector: %v", err)
	}
	p.xml = xmlData
	return p, nil
}

func hkdfInfoHex() string { return hex.EncodeToString([]byte(hkdfInfo)) }

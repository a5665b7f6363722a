package guardian

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/guardctl/guardctl/internal/fuzzseed"
	"github.com/guardctl/guardctl/internal/testenv"
	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// RFC 2268 §5 test vectors.
func TestRC2Vectors(t *testing.T) {
	for _, v := range []struct {
		key  string
		bits int
		pt   string
		ct   string
	}{
		{"0000000000000000", 63, "0000000000000000", "ebb773f993278eff"},
		{"ffffffffffffffff", 64, "ffffffffffffffff", "278b27e42e2f0d49"},
		{"3000000000000000", 64, "1000000000000001", "30649edf9be7d2c2"},
		{"88", 64, "0000000000000000", "61a8a244adacccf0"},
		{"88bca90e90875a", 64, "0000000000000000", "6ccf4308974c267f"},
		{"88bca90e90875a7f0f79c384627bafb2", 64, "0000000000000000", "1a807d272bbe5db1"},
		{"88bca90e90875a7f0f79c384627bafb2", 128, "0000000000000000", "2269552ab0f85ca6"},
	} {
		key, _ := hex.DecodeString(v.key)
		pt, _ := hex.DecodeString(v.pt)
		ct, _ := hex.DecodeString(v.ct)
		c, err := newRC2(key, v.bits)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 8)
		c.Encrypt(got, pt)
		if !bytes.Equal(got, ct) {
			t.Errorf("RC2 key %s/%d encrypts to %x, want %s", v.key, v.bits, got, v.ct)
		}
		c.Decrypt(got, ct)
		if !bytes.Equal(got, pt) {
			t.Errorf("RC2 key %s/%d decrypts to %x, want %s", v.key, v.bits, got, v.pt)
		}
	}
}

// pfxShape describes a PFX the test builds by hand, in shapes go-pkcs12
// does not write.
type pfxShape struct {
	noMAC     bool
	split     bool // each certificate in its own encrypted SafeContents, key last
	extraKeys int  // more shrouded keys (of the same key)
	safes     int  // pad with this many empty SafeContents
	iter      int
}

func buildPFX(t testing.TB, g *Guardian, chain []*x509.Certificate, password string, s pfxShape) []byte {
	t.Helper()
	if s.iter == 0 {
		s.iter = pfxIterations
	}
	pw := newPFXPassword(password)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(g.SigningKey)
	mustMarshal := func(v any) []byte {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var safes []contentInfo
	addEncrypted := func(plain []byte) {
		a, c, err := pbeEncrypt(pw, plain, false, s.iter, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ed := mustMarshal(encryptedData{EncryptedContentInfo: encryptedContentInfo{ContentType: oidData, ContentEncryptionAlgorithm: a,
			EncryptedContent: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: c}}})
		safes = append(safes, contentInfo{ContentType: oidEncryptedData, Content: explicit(ed)})
	}
	certBagOf := func(c *x509.Certificate) safeBagOut {
		return safeBagOut{ID: oidCertBag, Value: explicit(mustMarshal(certBag{ID: oidX509Certificate, Value: explicit(mustMarshal(c.Raw))}))}
	}
	all := append([]*x509.Certificate{g.Signing}, chain...)
	if s.split {
		for _, c := range all {
			addEncrypted(mustMarshal([]safeBagOut{certBagOf(c)}))
		}
	} else {
		var bags []safeBagOut
		for _, c := range all {
			bags = append(bags, certBagOf(c))
		}
		addEncrypted(mustMarshal(bags))
	}
	for i := 0; i < s.safes; i++ {
		safes = append(safes, contentInfo{ContentType: oidData, Content: explicit(mustMarshal(mustMarshal([]safeBagOut{})))})
	}
	var keyBags []safeBagOut
	for i := 0; i <= s.extraKeys; i++ {
		a, c, err := pbeEncrypt(pw, pkcs8, false, s.iter, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keyBags = append(keyBags, safeBagOut{ID: oidShroudedKeyBag, Value: explicit(mustMarshal(encryptedPrivateKeyInfo{Algorithm: a, Data: c}))})
	}
	safes = append(safes, contentInfo{ContentType: oidData, Content: explicit(mustMarshal(mustMarshal(keyBags)))})
	authSafe := mustMarshal(safes)
	pdu := pfxPDU{Version: 3, AuthSafe: contentInfo{ContentType: oidData, Content: explicit(mustMarshal(authSafe))}}
	if !s.noMAC {
		pdu.MacData = macData{Iterations: s.iter, MacSalt: []byte("saltsalt")}
		pdu.MacData.Mac.Algorithm.Algorithm = oidSHA256
		pdu.MacData.Mac.Digest = pkcs12MAC(macHash(oidSHA256), pw.bmp, pdu.MacData, authSafe)
	}
	return mustMarshal(pdu)
}

func TestPFXShapes(t *testing.T) {
	g := newTestGuardian(t, "g")
	ca := newTestGuardian(t, "ca")
	chain := []*x509.Certificate{ca.Signing, ca.Encryption}
	for _, c := range []struct {
		name  string
		shape pfxShape
		kind  Kind // 0: accepted
	}{
		{"no MAC", pfxShape{noMAC: true}, 0},
		{"a SafeContents per certificate", pfxShape{split: true}, 0},
		{"no MAC, split", pfxShape{noMAC: true, split: true}, 0},
		{"many SafeContents", pfxShape{split: true, safes: maxSafeContents - 4}, 0},
		{"too many SafeContents", pfxShape{split: true, safes: maxSafeContents}, KindInvalid},
		{"two keys", pfxShape{extraKeys: 1}, KindInvalid},
	} {
		data := buildPFX(t, g, chain, "pw 🔑", c.shape)
		p, err := DecodePFX(data, "pw 🔑")
		if kindOf(err) != c.kind {
			t.Errorf("%s: %v (kind %d), want kind %d", c.name, err, kindOf(err), c.kind)
			continue
		}
		if c.kind == 0 && (!p.Cert.Equal(g.Signing) || len(p.Chain) != 2) {
			t.Errorf("%s: wrong certificate or chain", c.name)
		}
		if c.kind != 0 {
			continue
		}
		// A wrong password is a password error, whatever the shape.
		if _, err := DecodePFX(data, "pw"); kindOf(err) != KindPassword {
			t.Errorf("%s, wrong password: %v", c.name, err)
		}
		// A changed byte is refused (under a MAC), or at least still
		// gives a key that matches its certificate; never a panic.
		for _, i := range []int{len(data) / 3, len(data) / 2, len(data) - 40} {
			d := bytes.Clone(data)
			d[i] ^= 0x40
			if p, err := DecodePFX(d, "pw 🔑"); err == nil && (!c.shape.noMAC || !p.Key.PublicKey.Equal(p.Cert.PublicKey)) {
				t.Errorf("%s: a changed byte at %d was accepted", c.name, i)
			} else if err != nil && kindOf(err) == 0 {
				t.Errorf("%s: error without a kind: %v", c.name, err)
			}
		}
	}
}

// TestPFXExportIndependentReaders: what EncodePFX writes reads in go-pkcs12
// (for BMP passwords, all it takes) and in openssl (every password).
func TestPFXExportIndependentReaders(t *testing.T) {
	testenv.Tools(t, "an independent PFX reader", "openssl")
	g := newTestGuardian(t, "g")
	dir := t.TempDir()
	for _, legacy := range []bool{false, true} {
		for _, pw := range []string{"pw", "pässwörd", "🔑 𝄞 key"} {
			data, err := EncodePFX(g.SigningKey.(*rsa.PrivateKey), g.Signing, pw, legacy)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.ContainsFunc(pw, func(r rune) bool { return r > 0xffff }) {
				key, cert, err := pkcs12.Decode(data, pw)
				if err != nil || !cert.Equal(g.Signing) || !g.SigningKey.(*rsa.PrivateKey).Equal(key) {
					t.Errorf("go-pkcs12 reads %q (legacy %v) wrongly: %v", pw, legacy, err)
				}
			}
			f := filepath.Join(dir, "x.pfx")
			os.WriteFile(f, data, 0o600)
			pwf := filepath.Join(dir, "pw")
			os.WriteFile(pwf, []byte(pw), 0o600)
			out, err := exec.Command("openssl", "pkcs12", "-in", f, "-passin", "file:"+pwf, "-nokeys", "-clcerts").CombinedOutput()
			if err != nil || !bytes.Contains(out, []byte("Shielded VM Signing Certificate (g)")) {
				t.Errorf("openssl reads %q (legacy %v): %v\n%s", pw, legacy, err, out)
			}
		}
	}
}

// TestPFXLocalKeyID: both bags carry the certificate's SHA-1 as localKeyId,
// as openssl shows it.
func TestPFXLocalKeyID(t *testing.T) {
	testenv.Tools(t, "an independent PFX reader", "openssl")
	g := newTestGuardian(t, "g")
	data, err := EncodePFX(g.SigningKey.(*rsa.PrivateKey), g.Signing, "pw", false)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "x.pfx")
	os.WriteFile(f, data, 0o600)
	out, err := exec.Command("openssl", "pkcs12", "-in", f, "-passin", "pass:pw", "-nodes").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	id := sha1.Sum(g.Signing.Raw)
	var spaced []string
	for _, b := range id {
		spaced = append(spaced, strings.ToUpper(hex.EncodeToString([]byte{b})))
	}
	if n := strings.Count(string(out), "localKeyID: "+strings.Join(spaced, " ")); n != 2 {
		t.Errorf("the certificate's SHA-1 is the localKeyID of %d bags, want 2:\n%s", n, out)
	}
}

// writePFXShapeSeeds adds the shapes go-pkcs12 does not write to the
// committed fuzz seeds.
func writePFXShapeSeeds(t *testing.T, g *Guardian) {
	for _, s := range []pfxShape{{noMAC: true, iter: 1}, {split: true, iter: 1}, {noMAC: true, split: true, safes: 2, iter: 1}} {
		data := buildPFX(t, g, []*x509.Certificate{g.Encryption}, "pw", s)
		for _, target := range []string{"FuzzDecodePFX", "FuzzPFXStructure"} {
			if err := fuzzseed.Write(target, data); err != nil {
				t.Fatal(err)
			}
		}
	}
}

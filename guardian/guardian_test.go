package guardian

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guardctl/guardctl/internal/fuzzseed"
	"github.com/guardctl/guardctl/internal/testenv"
	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

func newTestGuardian(t testing.TB, name string) *Guardian {
	t.Helper()
	g, err := Generate(GenerateOptions{Name: name, Host: "host"})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func kindOf(err error) Kind {
	var ge *Error
	if errors.As(err, &ge) {
		return ge.Kind
	}
	return 0
}

func TestGenerateShape(t *testing.T) {
	g := newTestGuardian(t, "UntrustedGuardian")
	if err := g.Validate(Policy{}); err != nil {
		t.Fatal(err)
	}
	if got, want := g.Signing.Subject.CommonName, "Shielded VM Signing Certificate (UntrustedGuardian) (host)"; got != want {
		t.Errorf("signing subject %q, want %q", got, want)
	}
	if g.Signing.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("signing key usage %v", g.Signing.KeyUsage)
	}
	if g.Encryption.KeyUsage != x509.KeyUsageKeyEncipherment|x509.KeyUsageDataEncipherment {
		t.Errorf("encryption key usage %v", g.Encryption.KeyUsage)
	}
	if y := g.Signing.NotAfter.Year() - g.Signing.NotBefore.Year(); y != 10 {
		t.Errorf("valid for %d years, want 10", y)
	}
	if !SelfSigned(g.Signing) || !SelfSigned(g.Encryption) {
		t.Error("generated certificates are not self-signed")
	}
	if len(Thumbprint(g.Signing)) != 40 || strings.ToUpper(Thumbprint(g.Signing)) != Thumbprint(g.Signing) {
		t.Errorf("thumbprint %q is not 40 upper-case hex digits", Thumbprint(g.Signing))
	}
}

func TestValidateRefuses(t *testing.T) {
	g := newTestGuardian(t, "a")
	other := newTestGuardian(t, "b")
	cases := []struct {
		name string
		g    *Guardian
		p    Policy
		kind Kind
	}{
		{"same certificate twice", &Guardian{Name: "x", Signing: g.Signing, Encryption: g.Signing}, Policy{}, KindMismatch},
		{"key of another guardian", &Guardian{Name: "x", Signing: g.Signing, SigningKey: other.SigningKey, Encryption: g.Encryption, EncryptionKey: g.EncryptionKey}, Policy{}, KindMismatch},
		{"one key only", &Guardian{Name: "x", Signing: g.Signing, SigningKey: g.SigningKey, Encryption: g.Encryption}, Policy{}, KindMismatch},
		{"expired", g, Policy{Now: time.Now().AddDate(11, 0, 0)}, KindExpired},
		{"not yet valid", g, Policy{Now: time.Now().AddDate(-1, 0, 0)}, KindExpired},
	}
	for _, c := range cases {
		if err := c.g.Validate(c.p); kindOf(err) != c.kind {
			t.Errorf("%s: got %v (kind %d), want kind %d", c.name, err, kindOf(err), c.kind)
		}
	}
	if err := g.Validate(Policy{Now: time.Now().AddDate(11, 0, 0), AllowExpired: true}); err != nil {
		t.Errorf("AllowExpired: %v", err)
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"UntrustedGuardian", "host-b", "Owner (HR) 2", "a.b_c+d@e"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", `a\b`, "a\x00b", "a\nb", ".hidden", "trailing.", " lead", "é", strings.Repeat("x", 129)} {
		if err := ValidateName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestPFXRoundTrip(t *testing.T) {
	g := newTestGuardian(t, "g")
	for _, legacy := range []bool{false, true} {
		data, err := EncodePFX(g.SigningKey.(*rsa.PrivateKey), g.Signing, "pw", legacy)
		if err != nil {
			t.Fatal(err)
		}
		p, err := DecodePFX(data, "pw")
		if err != nil {
			t.Fatal(err)
		}
		if !p.Cert.Equal(g.Signing) || !p.Key.Equal(g.SigningKey) {
			t.Error("round trip changed the certificate or key")
		}
		if _, err := DecodePFX(data, "wrong"); kindOf(err) != KindPassword {
			t.Errorf("wrong password: %v", err)
		}
		for _, n := range []int{0, 1, 10, len(data) / 2, len(data) - 1} {
			if _, err := DecodePFX(data[:n], "pw"); err == nil || kindOf(err) == 0 {
				t.Errorf("truncated to %d bytes: %v", n, err)
			}
		}
	}
	if _, err := EncodePFX(g.SigningKey.(*rsa.PrivateKey), g.Signing, "", false); err == nil {
		t.Error("an empty password was accepted for private keys")
	}
}

func TestPFXIterationBound(t *testing.T) {
	g := newTestGuardian(t, "g")
	data, err := pkcs12.Modern2023.WithIterations(MaxIterations+1).Encode(g.SigningKey, g.Signing, nil, "pw")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := DecodePFX(data, "pw"); kindOf(err) != KindUnsupported || !strings.Contains(err.Error(), "iterations") {
		t.Errorf("a file asking for %d iterations: %v", MaxIterations+1, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing took %v; the iterations ran", d)
	}
}

// TestBERInnerContent covers the BER files whose MAC-protected content is
// itself BER: the MAC is verified over the BER bytes and computed again over
// the DER ones. openssl confirms that the test file is a valid PFX.
func TestBERInnerContent(t *testing.T) {
	testenv.Tools(t, "an independent PFX reader", "openssl")
	g := newTestGuardian(t, "g")
	der, err := pkcs12.Modern2023.Encode(g.EncryptionKey, g.Encryption, nil, "pw")
	if err != nil {
		t.Fatal(err)
	}
	ber := berifyWhole(t, der, "pw")
	path := filepath.Join(t.TempDir(), "inner-ber.pfx")
	os.WriteFile(path, ber, 0o600)
	if out, err := exec.Command("openssl", "pkcs12", "-in", path, "-passin", "pass:pw", "-noout").CombinedOutput(); err != nil {
		t.Fatalf("openssl refuses the BER test file: %v\n%s", err, out)
	}
	if _, _, _, err := pkcs12.DecodeChain(ber, "pw"); err == nil {
		t.Fatal("go-pkcs12 read the BER file by itself; the test does not exercise the conversion")
	}
	p, err := DecodePFX(ber, "pw")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Cert.Equal(g.Encryption) {
		t.Error("wrong certificate")
	}
	if _, err := DecodePFX(ber, "wrong"); kindOf(err) != KindPassword {
		t.Errorf("wrong password: %v", err)
	}
	// A changed byte in the MAC-protected content is refused as a MAC failure.
	tampered := bytes.Clone(ber)
	tampered[len(tampered)/2] ^= 1
	if _, err := DecodePFX(tampered, "pw"); err == nil {
		t.Error("a tampered BER file was accepted")
	}
}

// berifyWhole re-encodes a DER PFX with indefinite lengths everywhere,
// including inside the MAC-protected AuthenticatedSafe, and recomputes the
// MAC over the new content.
func berifyWhole(t *testing.T, der []byte, password string) []byte {
	var pfx pfxPDU
	if _, err := asn1.Unmarshal(der, &pfx); err != nil {
		t.Fatal(err)
	}
	var content []byte
	if _, err := asn1.Unmarshal(pfx.AuthSafe.Content.Bytes, &content); err != nil {
		t.Fatal(err)
	}
	berContent := indefinite(t, content)
	h := macHash(pfx.MacData.Mac.Algorithm.Algorithm)
	pfx.MacData.Mac.Digest = pkcs12MAC(h, bmpPassword(password), pfx.MacData, berContent)
	octets, _ := asn1.Marshal(berContent)
	pfx.AuthSafe.Content = asn1.RawValue{FullBytes: appendTLV(nil, []byte{0xa0}, octets)}
	out, err := asn1.Marshal(pfx)
	if err != nil {
		t.Fatal(err)
	}
	return indefinite(t, out)
}

// indefinite rewrites every constructed element of der with an indefinite length.
func indefinite(t *testing.T, der []byte) []byte {
	var out []byte
	for len(der) > 0 {
		var v asn1.RawValue
		rest, err := asn1.Unmarshal(der, &v)
		if err != nil {
			t.Fatal(err)
		}
		hdr := v.FullBytes[:len(v.FullBytes)-len(v.Bytes)]
		if v.IsCompound {
			out = append(out, hdr[0], 0x80)
			out = append(out, indefinite(t, v.Bytes)...)
			out = append(out, 0, 0)
		} else {
			out = append(out, v.FullBytes...)
		}
		der = rest
	}
	return out
}

func TestBERToDERRefusesMalformed(t *testing.T) {
	for _, in := range [][]byte{
		{0x30, 0x80, 0x02, 0x01, 0x01},             // no end-of-contents
		{0x04, 0x80, 0x00, 0x00},                   // indefinite primitive
		{0x30, 0x05, 0x02, 0x01},                   // truncated
		{0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00}, // absurd length
		bytes.Repeat([]byte{0x30, 0x80}, 100),      // too deep
	} {
		if _, err := berToDER(in); err == nil {
			t.Errorf("% x accepted", in)
		}
	}
	got, err := berToDER([]byte{0x24, 0x80, 0x04, 0x01, 'a', 0x04, 0x01, 'b', 0x00, 0x00})
	if err != nil || !bytes.Equal(got, []byte{0x04, 0x02, 'a', 'b'}) {
		t.Errorf("chunked OCTET STRING: % x, %v", got, err)
	}
}

func TestPublicFile(t *testing.T) {
	g := newTestGuardian(t, "host-b")
	data, err := g.MarshalPublic()
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePublic(data)
	if err != nil {
		t.Fatal(err)
	}
	if p.HasPrivateKeys() || !p.Signing.Equal(g.Signing) || !p.Encryption.Equal(g.Encryption) || p.Name != "host-b" {
		t.Error("public file does not round-trip")
	}
	// Another guardian's encryption certificate swapped in is refused.
	other := newTestGuardian(t, "evil")
	swapped := strings.Replace(string(data), b64(g.Encryption.Raw), b64(other.Encryption.Raw), 1)
	if _, err := ParsePublic([]byte(swapped)); kindOf(err) != KindMismatch {
		t.Errorf("swapped encryption certificate: %v", err)
	}
	for _, bad := range []string{
		"",
		"<Guardian/>",
		`<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><Guardian xmlns="urn:guardctl:guardian:1" Version="1"/>`,
		strings.Replace(string(data), `Version="1"`, `Version="9"`, 1),
		strings.Replace(string(data), RSASHA256, "http://www.w3.org/2000/09/xmldsig#rsa-sha1", 1),
		string(data[:len(data)/2]),
	} {
		if _, err := ParsePublic([]byte(bad)); err == nil {
			t.Errorf("accepted: %.80q", bad)
		}
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// TestWriteFuzzSeeds writes the committed seeds of this package's fuzz
// targets when GUARDCTL_WRITE_FUZZ_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if !fuzzseed.Requested() {
		return
	}
	g := newTestGuardian(t, "f")
	// One iteration keeps each run cheap, so the fuzzer explores the
	// structure rather than spending its time in PBKDF2.
	for _, enc := range []*pkcs12.Encoder{pkcs12.Modern2023.WithIterations(1), pkcs12.LegacyDES.WithIterations(1)} {
		data, err := enc.Encode(g.SigningKey, g.Signing, nil, "pw")
		if err != nil {
			t.Fatal(err)
		}
		for _, target := range []string{"FuzzDecodePFX", "FuzzPFXStructure"} {
			if err := fuzzseed.Write(target, data); err != nil {
				t.Fatal(err)
			}
		}
	}
	writePFXShapeSeeds(t, g)
	pub, err := g.MarshalPublic()
	if err != nil {
		t.Fatal(err)
	}
	if err := fuzzseed.Write("FuzzParsePublic", pub); err != nil {
		t.Fatal(err)
	}
}

// FuzzDecodePFX feeds hostile bytes to the PFX reader: it may refuse them,
// never panic, and anything it accepts is a matching key and certificate.
// Its seeds are committed (testdata/fuzz/FuzzDecodePFX).
func FuzzDecodePFX(f *testing.F) {
	f.Add([]byte{0x30, 0x80, 0x02, 0x01, 0x03, 0x00, 0x00})
	iterationLimit = 100
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodePFX(data, "pw")
		if err != nil {
			if kindOf(err) == 0 {
				t.Fatalf("error without a kind: %v", err)
			}
			return
		}
		if !p.Key.PublicKey.Equal(p.Cert.PublicKey) {
			t.Fatal("accepted a key that does not match its certificate")
		}
	})
}

// FuzzParsePublic does the same for the public guardian file.
func FuzzParsePublic(f *testing.F) {
	f.Add([]byte("<Guardian/>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePublic(data)
		if err != nil {
			return
		}
		if err := p.Validate(Policy{AllowExpired: true, AllowUntrustedRoot: true}); err != nil && kindOf(err) == 0 {
			t.Fatalf("error without a kind: %v", err)
		}
	})
}

// FuzzPFXStructure covers guardctl's own code on the way into a PFX (BER
// conversion, the iteration bound, the MAC, the SafeContents and bags)
// without the RSA checks of FuzzDecodePFX.
func FuzzPFXStructure(f *testing.F) {
	f.Add([]byte{0x24, 0x80, 0x04, 0x01, 'a', 0x00, 0x00})
	iterationLimit = 100
	f.Fuzz(func(t *testing.T, data []byte) {
		der, err := berToDER(data)
		if err != nil {
			return
		}
		again, err := berToDER(der)
		if err != nil || !bytes.Equal(again, der) {
			t.Fatalf("converting DER again changed it or failed: %v", err)
		}
		start := time.Now()
		if _, err := decodePKCS12(data, "pw"); err != nil && kindOf(err) == 0 {
			t.Fatalf("error without a kind: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("decoding took %v", d)
		}
	})
}

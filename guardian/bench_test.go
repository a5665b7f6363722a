package guardian

import (
	"crypto/rsa"
	"testing"
)

func BenchmarkGenerate(b *testing.B) {
	for b.Loop() {
		if _, err := Generate(GenerateOptions{Name: "g", Host: "h"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExportPair is guardian export's work: two PFX files, each
// decoded again to check it.
func BenchmarkExportPair(b *testing.B) {
	g := newTestGuardian(b, "g")
	for b.Loop() {
		if _, err := EncodePFX(g.SigningKey.(*rsa.PrivateKey), g.Signing, "pw", false); err != nil {
			b.Fatal(err)
		}
		if _, err := EncodePFX(g.EncryptionKey.(*rsa.PrivateKey), g.Encryption, "pw", false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkImportPair is guardian import's work: two PFX files decoded and
// the guardian validated.
func BenchmarkImportPair(b *testing.B) {
	g := newTestGuardian(b, "g")
	sig, _ := EncodePFX(g.SigningKey.(*rsa.PrivateKey), g.Signing, "pw", false)
	enc, _ := EncodePFX(g.EncryptionKey.(*rsa.PrivateKey), g.Encryption, "pw", false)
	for b.Loop() {
		s, err := DecodePFX(sig, "pw")
		if err != nil {
			b.Fatal(err)
		}
		e, err := DecodePFX(enc, "pw")
		if err != nil {
			b.Fatal(err)
		}
		ng := &Guardian{Name: "g", Signing: s.Cert, SigningKey: s.Key, Encryption: e.Cert, EncryptionKey: e.Key}
		if err := ng.Validate(Policy{}); err != nil {
			b.Fatal(err)
		}
	}
}

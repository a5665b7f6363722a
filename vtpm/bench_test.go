package vtpm

import (
	"bytes"
	"testing"
	"time"
)

// BenchmarkWrapState is vtpm wrap's own work on a 32 KiB state: seal and
// archive (the key protector is measured in package keyprotector).
func BenchmarkWrapState(b *testing.B) {
	state := bytes.Repeat([]byte{0x5a}, 32<<10)
	tk := bytes.Repeat([]byte{1}, 32)
	b.SetBytes(int64(len(state)))
	for b.Loop() {
		bd, err := Seal(Manifest{CreatedAt: time.Now(), TPMVersion: "2.0", Layout: LayoutDir},
			map[string][]byte{"tpm2-00.permall": state}, map[string]uint32{"tpm2-00.permall": 0o600}, []byte("kp"), tk)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bd.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnwrapState is vtpm unwrap's own work: read and open the bundle.
func BenchmarkUnwrapState(b *testing.B) {
	state := bytes.Repeat([]byte{0x5a}, 32<<10)
	tk := bytes.Repeat([]byte{1}, 32)
	bd, _ := Seal(Manifest{CreatedAt: time.Now(), TPMVersion: "2.0", Layout: LayoutDir},
		map[string][]byte{"tpm2-00.permall": state}, map[string]uint32{"tpm2-00.permall": 0o600}, []byte("kp"), tk)
	data, _ := bd.Marshal()
	b.SetBytes(int64(len(state)))
	for b.Loop() {
		r, err := ReadBundle(data)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Open(tk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRekey is vtpm rekey's work on a 32 KiB state: decrypt and
// encrypt under another 256-bit key.
func BenchmarkRekey(b *testing.B) {
	k1, k2 := Key(bytes.Repeat([]byte{1}, 32)), Key(bytes.Repeat([]byte{2}, 32))
	blob, _ := Encrypt(bytes.Repeat([]byte{0x5a}, 32<<10), k1)
	b.SetBytes(32 << 10)
	for b.Loop() {
		state, err := Decrypt(blob, k1)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Encrypt(state, k2); err != nil {
			b.Fatal(err)
		}
	}
}

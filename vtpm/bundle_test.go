package vtpm

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/guardctl/guardctl/internal/fuzzseed"
)

func testBundle(t testing.TB, tkByte ...byte) ([]byte, []byte) {
	tk := bytes.Repeat(append(tkByte, 9)[:1], 32)
	b, err := Seal(Manifest{CreatedAt: time.Unix(1700000000, 0), TPMVersion: "2.0", Layout: LayoutDir},
		map[string][]byte{"tpm2-00.permall": bytes.Repeat([]byte("state"), 100), SecretFile: []byte("pass")},
		map[string]uint32{"tpm2-00.permall": 0o600, SecretFile: 0o600}, []byte("kp bytes"), tk)
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return out, tk
}

func TestBundleRoundTripAndTamper(t *testing.T) {
	data, tk := testBundle(t)
	b, err := ReadBundle(data)
	if err != nil {
		t.Fatal(err)
	}
	files, err := b.Open(tk)
	if err != nil || string(files[SecretFile]) != "pass" || len(files["tpm2-00.permall"]) != 500 {
		t.Fatalf("Open: %v", err)
	}
	if _, err := b.Open(bytes.Repeat([]byte{8}, 32)); kindOf(err) != KindTampered {
		t.Errorf("another transport key: %v", err)
	}
	// Every changed byte of the archive is refused (or leaves the same files).
	for i := 0; i < len(data); i += 13 {
		mut := bytes.Clone(data)
		mut[i] ^= 0x20
		mb, err := ReadBundle(mut)
		if err != nil {
			if kindOf(err) == 0 {
				t.Fatalf("byte %d: error without a kind: %v", i, err)
			}
			continue
		}
		got, err := mb.Open(tk)
		if err != nil {
			continue
		}
		if !bytes.Equal(got["tpm2-00.permall"], files["tpm2-00.permall"]) || !bytes.Equal(got[SecretFile], files[SecretFile]) {
			t.Fatalf("byte %d changed the payload and was accepted", i)
		}
	}
}

// rewrite rebuilds a bundle's archive with edit applied to its members.
func rewrite(t *testing.T, data []byte, edit func(names []string, contents [][]byte) ([]string, [][]byte)) []byte {
	tr := tar.NewReader(bytes.NewReader(data))
	var names []string
	var contents [][]byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		c, _ := io.ReadAll(tr)
		names, contents = append(names, h.Name), append(contents, c)
	}
	names, contents = edit(names, contents)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := range names {
		tw.WriteHeader(&tar.Header{Name: names[i], Mode: 0o644, Size: int64(len(contents[i])), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR})
		tw.Write(contents[i])
	}
	tw.Close()
	return buf.Bytes()
}

func TestBundleMembers(t *testing.T) {
	data, tk := testBundle(t)
	other, _ := testBundle(t, 7)
	cases := map[string]func([]string, [][]byte) ([]string, [][]byte){
		"missing member": func(n []string, c [][]byte) ([]string, [][]byte) { return n[:3], c[:3] },
		"added member": func(n []string, c [][]byte) ([]string, [][]byte) {
			return append(n, "payload/extra"), append(c, []byte("x"))
		},
		"swapped contents": func(n []string, c [][]byte) ([]string, [][]byte) {
			c[2], c[3] = c[3], c[2]
			return n, c
		},
		"member from another bundle": func(n []string, c [][]byte) ([]string, [][]byte) {
			o, _ := ReadBundle(other)
			c[3] = o.payload[n[3][len(payloadPrefix):]]
			return n, c
		},
		"manifest edited": func(n []string, c [][]byte) ([]string, [][]byte) {
			c[0] = bytes.Replace(c[0], []byte(`"tpmVersion": "2.0"`), []byte(`"tpmVersion": "1.2"`), 1)
			return n, c
		},
	}
	for name, edit := range cases {
		mut := rewrite(t, data, edit)
		b, err := ReadBundle(mut)
		if err == nil {
			_, err = b.Open(tk)
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if kindOf(err) == 0 {
			t.Errorf("%s: error without a kind: %v", name, err)
		}
	}
}

// FuzzReadBundle: hostile bundles are refused, never a panic.
func FuzzReadBundle(f *testing.F) {
	data, tk := testBundle(f)
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ReadBundle(data)
		if err != nil {
			if kindOf(err) == 0 {
				t.Fatalf("error without a kind: %v", err)
			}
			return
		}
		b.Open(tk)
	})
}

// TestWriteFuzzSeeds writes this package's committed fuzz seeds when
// GUARDCTL_WRITE_FUZZ_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if !fuzzseed.Requested() {
		return
	}
	data, _ := testBundle(t)
	if err := fuzzseed.Write("FuzzReadBundle", data); err != nil {
		t.Fatal(err)
	}
	k := Key(bytes.Repeat([]byte{7}, 32))
	for _, key := range []Key{nil, k, k[:16]} {
		b, _ := Encrypt([]byte("a TPM state"), key)
		if err := fuzzseed.Write("FuzzDecrypt", b); err != nil {
			t.Fatal(err)
		}
	}
}

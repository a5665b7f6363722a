//go:build unix

package e2e

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The hostile PFX files of issue 20 (item 2), written here with
// encoding/asn1 alone (no guardctl code): a shrouded key bag at 1,000,000
// PBKDF2 iterations copied 255 times into one SafeContents, the same bag in
// 63 SafeContents of one bag each, and 255 such bags hidden in a
// SafeContents that is itself encrypted at 1,000,000 iterations (their cost
// shows only after decryption). No MAC, which PKCS#12 allows.

type hostileContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue
}

type hostileBag struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue
}

var (
	hostileOIDData      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	hostileOIDEncrypted = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}
	hostileOIDShrouded  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
)

func explicit0(inner []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pbes2Encrypt encrypts plain with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC)
// at iterations.
func pbes2Encrypt(t *testing.T, password string, plain []byte, iterations int) (pkix.AlgorithmIdentifier, []byte) {
	salt, iv := make([]byte, 16), make([]byte, 16)
	rand.Read(salt)
	rand.Read(iv)
	key, err := pbkdf2.Key(sha256.New, password, salt, iterations, 32)
	if err != nil {
		t.Fatal(err)
	}
	kdf := mustMarshal(t, struct {
		Salt       []byte
		Iterations int
		PRF        pkix.AlgorithmIdentifier
	}{salt, iterations, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}, Parameters: asn1.NullRawValue}})
	params := mustMarshal(t, struct{ KDF, Scheme pkix.AlgorithmIdentifier }{
		pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}, Parameters: asn1.RawValue{FullBytes: kdf}},
		pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}, Parameters: asn1.RawValue{FullBytes: mustMarshal(t, iv)}},
	})
	block, _ := aes.NewCipher(key)
	n := 16 - len(plain)%16
	padded := append(append([]byte{}, plain...), bytes.Repeat([]byte{byte(n)}, n)...)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(padded, padded)
	return pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}, Parameters: asn1.RawValue{FullBytes: params}}, padded
}

// hostilePFXs writes the three files into dir and returns their paths.
func hostilePFXs(t *testing.T, dir, password string) map[string]string {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	alg, ct := pbes2Encrypt(t, password, pkcs8, 1_000_000)
	bag := hostileBag{ID: hostileOIDShrouded, Value: explicit0(mustMarshal(t, struct {
		Algorithm pkix.AlgorithmIdentifier
		Data      []byte
	}{alg, ct}))}
	bags := func(n int) []byte {
		list := make([]hostileBag, n)
		for i := range list {
			list[i] = bag
		}
		return mustMarshal(t, list)
	}
	plainSafe := func(sc []byte) hostileContentInfo {
		return hostileContentInfo{hostileOIDData, explicit0(mustMarshal(t, sc))}
	}
	pfx := func(safes []hostileContentInfo) []byte {
		return mustMarshal(t, struct {
			Version  int
			AuthSafe hostileContentInfo
		}{3, hostileContentInfo{hostileOIDData, explicit0(mustMarshal(t, mustMarshal(t, safes)))}})
	}
	var many []hostileContentInfo
	for range 63 {
		many = append(many, plainSafe(bags(1)))
	}
	encAlg, encCT := pbes2Encrypt(t, password, bags(255), 1_000_000)
	ed := mustMarshal(t, struct {
		Version int
		ECI     struct {
			ContentType asn1.ObjectIdentifier
			Alg         pkix.AlgorithmIdentifier
			Content     asn1.RawValue
		}
	}{0, struct {
		ContentType asn1.ObjectIdentifier
		Alg         pkix.AlgorithmIdentifier
		Content     asn1.RawValue
	}{hostileOIDData, encAlg, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: encCT}}})
	files := map[string][]byte{
		"255-bags":      pfx([]hostileContentInfo{plainSafe(bags(255))}),
		"63-safes":      pfx(many),
		"encrypted-255": pfx([]hostileContentInfo{{hostileOIDEncrypted, explicit0(ed)}}),
	}
	paths := map[string]string{}
	for name, data := range files {
		paths[name] = filepath.Join(dir, name+".pfx")
		if err := os.WriteFile(paths[name], data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

// TestHostilePFXBoundedWork imports each hostile file with the real binary
// and requires it refused within a bound of CPU time and memory (the CPU
// time of the process, not the wall clock, so that other tests running
// beside it do not count). Before the per-file bound the first took 47 s.
func TestHostilePFXBoundedWork(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("hostile"), 0o600)
	store := filepath.Join(t.TempDir(), "store")
	for name, path := range hostilePFXs(t, dir, "hostile") {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := guardctlCmd(t, store, "guardian", "import", "h", "--signing", path, "--encryption", path, "--password-file", pw)
			cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
			cmd.Env = append(os.Environ(), "GUARDCTL_STORE="+store)
			var errOut bytes.Buffer
			cmd.Stderr = &errOut
			err := cmd.Run()
			if err == nil {
				t.Fatal("the file was imported")
			}
			if ctx.Err() != nil {
				t.Fatalf("still working after 30 s")
			}
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			rss := ru.Maxrss << 10 // KiB on Linux
			t.Logf("refused in %v of CPU, %d MiB: %s", cpu.Round(time.Millisecond), rss>>20, strings.TrimSpace(errOut.String()))
			if cpu > 1500*time.Millisecond {
				t.Errorf("the refusal took %v of CPU time; the bound is about a second", cpu)
			}
			if rss > 96<<20 {
				t.Errorf("the refusal needed %d MiB", rss>>20)
			}
			if !strings.Contains(errOut.String(), "key-derivation work") {
				t.Errorf("the error does not name the work the file asks for:\n%s", errOut.String())
			}
		})
	}
}

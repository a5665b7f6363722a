//go:build linux

package tpmkey

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// swtpmDevice starts a swtpm on one end of a socket pair and returns a
// Device talking to it. Under CI=true a missing swtpm fails the test.
func swtpmDevice(t *testing.T, pin []byte) *Device {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("swtpm is not installed (CI=true: install the swtpm package)")
		}
		t.Skip("swtpm is not installed")
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "tpm"), os.NewFile(uintptr(fds[1]), "swtpm")
	cmd := exec.Command("swtpm", "chardev", "--tpm2", "--fd", "3", "--tpmstate", "dir="+t.TempDir(), "--flags", "not-need-init,startup-clear")
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	t.Cleanup(func() { ours.Close(); cmd.Process.Kill(); cmd.Wait() })
	d, err := Open("/dev/null-unused", func() ([]byte, error) { return pin, nil })
	if err != nil {
		t.Fatal(err)
	}
	d.conn = transport.FromReadWriteCloser(ours)
	return d
}

func TestSignDecryptAndPCRBinding(t *testing.T) {
	d := swtpmDevice(t, nil)
	sk, err := d.Create(CreateOptions{Label: "signing"})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("wrappings"))
	sig, err := sk.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(sk.Public().(*rsa.PublicKey), crypto.SHA256, digest[:], sig); err != nil {
		t.Fatalf("TPM signature does not verify: %v", err)
	}
	pcrs, err := ParsePCRs("sha256:16,0")
	if err != nil {
		t.Fatal(err)
	}
	ek, err := d.Create(CreateOptions{Label: "encryption", Decrypt: true, PCRs: pcrs})
	if err != nil {
		t.Fatal(err)
	}
	// The key reads back from its PEM as it was made.
	if ek, err = Parse(d, ek.PEM(), "encryption", pcrs); err != nil {
		t.Fatal(err)
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, ek.Public().(*rsa.PublicKey), secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := ek.Decrypt(rand.Reader, ct, &rsa.OAEPOptions{Hash: crypto.SHA256})
	if err != nil || string(pt) != string(secret) {
		t.Fatalf("decrypt: %q, %v", pt, err)
	}
	ct[10] ^= 1
	if _, err := ek.Decrypt(rand.Reader, ct, &rsa.OAEPOptions{Hash: crypto.SHA256}); !errors.Is(err, rsa.ErrDecryption) {
		t.Fatalf("a damaged ciphertext gave %v, want rsa.ErrDecryption", err)
	}
	ct[10] ^= 1
	// Extend PCR 16: the bound key refuses, naming it.
	err = d.use(func(tp transport.TPM) error {
		_, err := tpm2.PCRExtend{PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(16), Auth: tpm2.PasswordAuth(nil)},
			Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: make([]byte, 32)}}}}.Execute(tp)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ek.Decrypt(rand.Reader, ct, &rsa.OAEPOptions{Hash: crypto.SHA256})
	var te *Error
	if !errors.As(err, &te) || te.Kind != KindPCR || len(te.Changed) != 1 || te.Changed[0] != "sha256:16" {
		t.Fatalf("after extending PCR 16: %v, want a PCR error naming sha256:16", err)
	}
	id, err := d.Identity()
	if err != nil || len(id.EKSHA256) != 64 || id.Manufacturer == "" {
		t.Fatalf("identity %+v, %v", id, err)
	}
}

func TestPIN(t *testing.T) {
	d := swtpmDevice(t, []byte("wrong"))
	k, err := d.Create(CreateOptions{Label: "guardian \"p\"'s signing key", PIN: []byte("1234")})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))
	if _, err := k.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
		t.Fatalf("with the PIN it was made with: %v", err)
	}
	d.pin, d.pinRead = nil, false // the next use asks the callback: a wrong PIN
	_, err = k.Sign(rand.Reader, digest[:], crypto.SHA256)
	var te *Error
	if !errors.As(err, &te) || te.Kind != KindPIN {
		t.Fatalf("wrong PIN: %v, want KindPIN", err)
	}
}

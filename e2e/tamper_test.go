//go:build unix

package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/guardctl/guardctl/keyprotector"
	"github.com/guardctl/guardctl/vtpm"
)

// TestTamperEveryByte (issue 11, item 6) changes every byte of a small
// bundle and of a key protector, one at a time (its lowest bit: a digit, a
// base64 letter, a space or a zero byte becomes its neighbour), and puts each
// through what vtpm unwrap and kp unwrap check before they write anything:
// every change is refused.
//
// The checks run in this process, since ten thousand process starts would
// cost minutes; the files come from the real binary, and
// TestScripts/trust_layout drives the binary on each kind of change.
func TestTamperEveryByte(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	dir := t.TempDir()
	mustGuardctl(t, store, "guardian", "create", "owner", "--host", "h")
	blob, err := vtpm.Encrypt([]byte("a small TPM state for the tamper test"), nil)
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state.blob")
	os.WriteFile(state, blob, 0o600)
	bundle := filepath.Join(dir, "vm.vtpm")
	mustGuardctl(t, store, "vtpm", "wrap", state, "--owner", "owner", "--out", bundle)
	kp := filepath.Join(dir, "vm.kp")
	mustGuardctl(t, store, "kp", "new", "--owner", "owner", "--out", kp)

	// What vtpm unwrap and kp unwrap do before they write anything
	// (readBundle or readKeyProtector, then unwrapProtector's checks and
	// the payload's), with the store's guardians read once.
	ids := loadIdentities(t, store)
	unwrap := func(p *keyprotector.Protector) ([]byte, error) {
		if err := p.Verify(keyprotector.Policy{Now: time.Now()}); err != nil {
			return nil, err
		}
		key, _, err := p.Unwrap(ids)
		if err != nil {
			return nil, err
		}
		return key, p.CheckOwner(ids)
	}
	openBundle := func(data []byte) error {
		b, err := vtpm.ReadBundle(data)
		if err != nil {
			return err
		}
		p, err := keyprotector.Parse(b.KeyProtector)
		if err != nil {
			return err
		}
		tk, err := unwrap(p)
		if err != nil {
			return err
		}
		_, err = b.Open(tk)
		return err
	}
	openKP := func(data []byte) error {
		p, err := keyprotector.Parse(data)
		if err != nil {
			return err
		}
		_, err = unwrap(p)
		return err
	}
	cases := []struct {
		name string
		file string
		open func(data []byte) error
	}{
		{"bundle", bundle, openBundle},
		{"key protector", kp, openKP},
	}
	for _, c := range cases {
		orig, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.open(orig); err != nil {
			t.Fatalf("%s: the untouched file is refused: %v", c.name, err)
		}
		start, tried, refused := time.Now(), 0, 0
		data := append([]byte(nil), orig...)
		for i := range orig {
			data[i] ^= 0x01
			tried++
			if err := c.open(data); err == nil {
				t.Errorf("%s: byte %d changed from %q to %q is accepted", c.name, i, orig[i], data[i])
			} else {
				refused++
			}
			data[i] = orig[i]
		}
		t.Logf("%s of %d bytes: %d changes, %d refused, in %v", c.name, len(orig), tried, refused, time.Since(start).Round(time.Millisecond))
		if t.Failed() {
			return
		}
	}
}

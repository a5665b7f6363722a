package keyprotector

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/guardctl/guardctl/guardian"
)

// TestBatch grants one guardian on many files through one Batch from many
// goroutines: every file verifies afterwards, the new guardian unwraps each
// file's own key, and the owner's signature over its signing certificate
// (made once) is the one a single grant makes.
func TestBatch(t *testing.T) {
	owner, peer, newcomer := gen(t, "owner"), gen(t, "peer"), gen(t, "newcomer")
	dir := t.TempDir()
	keys := map[string][]byte{}
	for i := range 12 {
		key := NewTransportKey()
		_, xml, err := New(key, owner, []*guardian.Guardian{peer.Public()})
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, string(rune('a'+i))+".kp")
		if err := os.WriteFile(f, EncodeFile(xml), 0o644); err != nil {
			t.Fatal(err)
		}
		keys[f] = key
	}
	batch := NewBatch(runtime.GOMAXPROCS(0))
	ids := []*guardian.Guardian{owner}
	var wg sync.WaitGroup
	for f := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := GrantFile(f, ids, newcomer.Public(), FileOptions{Batch: batch})
			if err != nil || !r.Changed {
				t.Errorf("%s: changed %v, %v", f, r.Changed, err)
			}
		}()
	}
	wg.Wait()
	single, err := signRSASHA256(owner.SigningKey, newcomer.Signing.Raw)
	if err != nil {
		t.Fatal(err)
	}
	for f, key := range keys {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseVerifyUnwrap(data, newcomer)
		if err != nil || !bytes.Equal(got, key) {
			t.Fatalf("%s: the newcomer unwraps %x, %v; want %x", f, got, err, key)
		}
		p, _ := Parse(data)
		if w := p.Find(newcomer); w == nil || !bytes.Equal(w.SigningCertSig.Value, single) {
			t.Errorf("%s: the batch's signature over the newcomer's certificate differs from a single grant's", f)
		}
	}
	// Again, through the same batch: nothing changes.
	for f := range keys {
		if r, err := GrantFile(f, ids, newcomer.Public(), FileOptions{Batch: batch}); err != nil || r.Changed {
			t.Errorf("%s again: changed %v, %v", f, r.Changed, err)
		}
	}
}

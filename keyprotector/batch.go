package keyprotector

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"os"
	"sync"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/atomicfile"
)

// Batch is one grant or revoke applied to many key protector files
// (FileOptions.Batch). What is the same for every file is done once: the
// owner's signature over the granted guardian's signing certificate (one
// per owner), the check of that guardian's own signature over its
// encryption certificate, and the check of every chain signature that recurs
// from file to file (each wrapping's signing certificate signed by the
// owner, each encryption certificate by its signing key). What differs per
// file is still done per file: unwrapping the transport key, wrapping it for
// the guardian, and the owner's signature over the file's Wrappings.
//
// A Batch is safe for concurrent use. At most cpus files (NewBatch) are
// parsed, verified and changed at once, so a caller may work on more files
// than that at a time: their reading, writing and fsync then overlap the
// cryptography of the others.
type Batch struct {
	cpu chan struct{}

	mu       sync.Mutex
	certSigs map[[sha256.Size]byte]*memo // by owner and guardian
	encSigs  map[*guardian.Guardian]*memo
	verified sync.Map // signatureKey → struct{}: signatures that verified
	dirs     sync.Map // directories with files replaced, to sync once (Sync)
	staging  sync.Map // directory → *stagingDir: where its backups are linked
}

// stagingDir is the one private directory per directory in which a batch
// links the backups under way (atomicfile.MakeStagingDir), made when the
// first file there needs it and removed by Sync.
type stagingDir struct {
	once sync.Once
	path string // "" if it could not be made: each Update makes its own
}

// memo is a value computed once, by whichever goroutine needs it first.
type memo struct {
	once sync.Once
	v    []byte
	err  error
}

// NewBatch returns a Batch for one run over many files whose cryptography
// runs on at most cpus goroutines at once (at least one).
func NewBatch(cpus int) *Batch {
	return &Batch{
		cpu:      make(chan struct{}, max(cpus, 1)),
		certSigs: map[[sha256.Size]byte]*memo{},
		encSigs:  map[*guardian.Guardian]*memo{},
	}
}

// work runs f as one of the at most cpus cryptographic tasks of the
// batch (any number without one).
func (b *Batch) work(f func() ([]byte, error)) ([]byte, error) {
	if b == nil {
		return f()
	}
	b.cpu <- struct{}{}
	defer func() { <-b.cpu }()
	return f()
}

func (b *Batch) memo(m map[[sha256.Size]byte]*memo, key [sha256.Size]byte) *memo {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := m[key]
	if e == nil {
		e = &memo{}
		m[key] = e
	}
	return e
}

// signCert is the owner's signature over g's signing certificate, made once
// per owner and guardian in a batch.
func (b *Batch) signCert(owner, g *guardian.Guardian) ([]byte, error) {
	if b == nil {
		return signRSASHA256(owner.SigningKey, g.Signing.Raw)
	}
	e := b.memo(b.certSigs, sha256.Sum256(append(append([]byte{}, owner.Signing.Raw...), g.Signing.Raw...)))
	e.once.Do(func() { e.v, e.err = signRSASHA256(owner.SigningKey, g.Signing.Raw) })
	return e.v, e.err
}

// encryptionCertSig is g's own signature over its encryption certificate,
// checked, once per guardian in a batch.
func (b *Batch) encryptionCertSig(g *guardian.Guardian) ([]byte, error) {
	sign := func() ([]byte, error) {
		sig, err := g.SignEncryptionCertificate()
		if err != nil {
			return nil, err
		}
		return sig, g.VerifyEncryptionCertificateSignature(sig)
	}
	if b == nil {
		return sign()
	}
	b.mu.Lock()
	e := b.encSigs[g]
	if e == nil {
		e = &memo{}
		b.encSigs[g] = e
	}
	b.mu.Unlock()
	e.once.Do(func() { e.v, e.err = sign() })
	return e.v, e.err
}

// verify checks a signature by cert over data; one that verified before in
// the batch (the same certificate, data and signature) is not checked
// again. Only successes are remembered.
func (b *Batch) verify(cert *x509.Certificate, data, sig []byte) error {
	if b == nil {
		return verifyRSASHA256(cert, data, sig)
	}
	h := sha256.New()
	for _, part := range [][]byte{cert.Raw, data, sig} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	if _, ok := b.verified.Load(key); ok {
		return nil
	}
	if err := verifyRSASHA256(cert, data, sig); err != nil {
		return err
	}
	b.verified.Store(key, struct{}{})
	return nil
}

// stagingDirFor returns the batch's staging directory in dir, made on
// first use.
func (b *Batch) stagingDirFor(dir string) string {
	v, ok := b.staging.Load(dir)
	if !ok { // once per directory: no new stagingDir per file
		v, _ = b.staging.LoadOrStore(dir, &stagingDir{})
	}
	sd := v.(*stagingDir)
	sd.once.Do(func() { sd.path, _ = atomicfile.MakeStagingDir(dir) })
	return sd.path
}

// Sync makes the files the batch replaced durable under their names: it
// removes the staging directories (empty once every backup is in place)
// and syncs each directory once (each file's content was synced before it
// replaced the old one). Call it before calling the batch done.
func (b *Batch) Sync() error {
	b.staging.Range(func(_, v any) bool {
		if p := v.(*stagingDir).path; p != "" {
			os.Remove(p)
		}
		return true
	})
	var first error
	b.dirs.Range(func(dir, _ any) bool {
		if err := atomicfile.SyncDir(dir.(string)); err != nil && first == nil {
			first = fmt.Errorf("syncing %s: %w", dir, err)
		}
		return true
	})
	return first
}

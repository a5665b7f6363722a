package certstore

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/atomicfile"
	"github.com/guardctl/guardctl/tpmkey"
)

const (
	metaFile          = "guardian.json"
	signingCertFile   = "signing.crt"
	encryptionCertFil = "encryption.crt"
	signingKeyFile    = "signing.key"
	encryptionKeyFile = "encryption.key"
	// A TPM guardian's key blobs (TSS2 PRIVATE KEY PEM, 0600), which load
	// only into the TPM that made them.
	signingTPMKeyFile    = "signing.tpmkey"
	encryptionTPMKeyFile = "encryption.tpmkey"
	// encryptionSigFile holds a public-only guardian's signature over its
	// encryption certificate (base64), needed to grant it access.
	encryptionSigFile = "encryption.sig"
)

// Origin says how a guardian came into the store.
type Origin string

const (
	OriginGenerated Origin = "generated"
	OriginPFX       Origin = "imported-pfx"
	OriginPublic    Origin = "imported-public"
	// OriginRecovered: the metadata was rebuilt from the entry's
	// certificates and keys (store check --repair, store recover).
	OriginRecovered Origin = "recovered"
)

// Meta is what guardian.json holds.
type Meta struct {
	Version        int       `json:"version"`
	Name           string    `json:"name"`
	HasPrivateKeys bool      `json:"hasPrivateKeys"`
	Origin         Origin    `json:"origin"`
	AddedAt        time.Time `json:"addedAt"`
	// Keys is "tpm" for a guardian whose keys a TPM holds; absent for
	// key files (or none).
	Keys guardian.KeyLocation `json:"keys,omitempty"`
	// TPM describes a TPM guardian's TPM and binding.
	TPM *TPMMeta `json:"tpm,omitempty"`
}

// TPMMeta is what a TPM guardian's metadata says about its TPM.
type TPMMeta struct {
	tpmkey.Identity
	// PCRs binds the encryption key to the boot state, if set.
	PCRs *tpmkey.PCRBinding `json:"pcrs,omitempty"`
	// PIN: the keys need the PIN they were made with.
	PIN bool `json:"pin"`
}

// metaFor is the metadata the store records for g, under name, when it
// adds it now.
func metaFor(g *guardian.Guardian, name string, origin Origin) Meta {
	m := Meta{Version: 1, Name: name, HasPrivateKeys: g.HasPrivateKeys(), Origin: origin, AddedAt: time.Now().UTC().Truncate(time.Second)}
	if g.KeyLocation() == guardian.KeysTPM {
		m.Keys, m.TPM = guardian.KeysTPM, tpmMeta(g)
	}
	return m
}

// tpmMeta describes g's TPM keys for its metadata.
func tpmMeta(g *guardian.Guardian) *TPMMeta {
	sk, _ := g.SigningKey.(*tpmkey.Key)
	ek, _ := g.EncryptionKey.(*tpmkey.Key)
	if sk == nil || ek == nil {
		return nil
	}
	m := &TPMMeta{PCRs: ek.PCRs, PIN: sk.HasPIN() || ek.HasPIN()}
	if ek.Identity != nil {
		m.Identity = *ek.Identity
	}
	return m
}

// Entry is one guardian as found in the store. A broken entry has a
// Problem; its Guardian then holds whatever could be read (possibly
// nothing) and must not be used for cryptography.
type Entry struct {
	Name string
	// Meta is what guardian.json holds (what the entry's files show when
	// it is missing or damaged), except HasPrivateKeys: the store holds
	// both private keys now, whatever the metadata says (in a directory
	// store, both key files were read). A guardian with one of its keys
	// lost is broken and has HasPrivateKeys false, in every Store; the key
	// that is left is in Guardian where it can be read.
	Meta     Meta
	Guardian *guardian.Guardian
	// Problem names every problem, "; "-separated; Problems lists them.
	Problem  string
	Problems []string
	// MetaOnly: the only problem is guardian.json, and the certificates
	// (and keys, when present) verify as a pair: store check --repair
	// rebuilds the metadata.
	MetaOnly bool
	// Warning names something about a usable guardian that needs
	// attention (for example a Hyper-V pair no registration names).
	Warning string
	// KeyErr says why private keys the store holds (Meta.HasPrivateKeys)
	// are not in Guardian: a key Windows will not export. Such a guardian
	// can still be used by Windows itself, but not exported or used by
	// guardctl for cryptography.
	KeyErr error
}

// Broken reports whether the entry could not be read whole.
func (e *Entry) Broken() bool { return e.Problem != "" }

// loadEntry reads the entry in dir, which is named name.
// A TPM guardian's keys are used with tpm (nil: none can be used).
func loadEntry(dir, name string, tpm *tpmkey.Device) *Entry {
	e := &Entry{Name: name, Guardian: &guardian.Guardian{Name: name}}
	fi, err := os.Lstat(dir)
	switch {
	case err != nil:
		e.Problem = fmt.Sprintf("unreadable: %v", errors.Unwrap(err))
		return e
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Problem = "the entry is a symbolic link"
		return e
	case !fi.IsDir():
		e.Problem = "the entry is not a directory"
		return e
	}
	if err := guardian.ValidateName(name); err != nil {
		e.Problem = "the entry's name is not a valid guardian name"
		return e
	}
	var problems []string
	note := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	metaOK := false
	raw, err := readRegular(filepath.Join(dir, metaFile))
	if err != nil {
		note("%s: %s", metaFile, describe(err))
	} else if err := json.Unmarshal(raw, &e.Meta); err != nil || e.Meta.Version != 1 || e.Meta.Name != name {
		note("%s is damaged", metaFile)
	} else {
		metaOK = true
	}
	metaProblems := len(problems)
	// Without trustworthy metadata, what is on disk says whether the entry
	// holds private keys.
	withKeys := e.Meta.HasPrivateKeys
	inTPM := e.Meta.Keys == guardian.KeysTPM
	if !metaOK {
		e.Meta = Meta{Version: 1, Name: name}
		inTPM = exists(filepath.Join(dir, signingTPMKeyFile)) || exists(filepath.Join(dir, encryptionTPMKeyFile))
		withKeys = inTPM || exists(filepath.Join(dir, signingKeyFile)) || exists(filepath.Join(dir, encryptionKeyFile))
	}
	g := e.Guardian
	if g.Signing, err = readCert(filepath.Join(dir, signingCertFile)); err != nil {
		note("%s: %s", signingCertFile, describe(err))
	}
	if g.Encryption, err = readCert(filepath.Join(dir, encryptionCertFil)); err != nil {
		note("%s: %s", encryptionCertFil, describe(err))
	}
	// A TPM guardian keeps its signature too, so that granting it access
	// needs no trip to its TPM.
	if !withKeys || inTPM {
		if raw, err := readRegular(filepath.Join(dir, encryptionSigFile)); err == nil {
			if sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw))); err == nil {
				g.EncryptionCertSignature = sig
			} else {
				note("%s is damaged", encryptionSigFile)
			}
		}
	}
	switch {
	case withKeys && inTPM:
		var pcrs *tpmkey.PCRBinding
		var id *tpmkey.Identity
		if e.Meta.TPM != nil {
			pcrs, id = e.Meta.TPM.PCRs, &e.Meta.TPM.Identity
		}
		for _, k := range []struct {
			file, role string
			pcrs       *tpmkey.PCRBinding
		}{{signingTPMKeyFile, "signing", nil}, {encryptionTPMKeyFile, "encryption", pcrs}} {
			key, err := readTPMKey(filepath.Join(dir, k.file), tpm, fmt.Sprintf("guardian %q's %s key", name, k.role), k.pcrs)
			if err != nil {
				note("%s: %s", k.file, describe(err))
				continue
			}
			key.Identity = id
			if k.role == "signing" {
				g.SigningKey = key
			} else {
				g.EncryptionKey = key
			}
		}
	case withKeys:
		if k, err := readKey(filepath.Join(dir, signingKeyFile)); err != nil {
			note("%s: %s", signingKeyFile, describe(err))
		} else {
			g.SigningKey = k
		}
		if k, err := readKey(filepath.Join(dir, encryptionKeyFile)); err != nil {
			note("%s: %s", encryptionKeyFile, describe(err))
		} else {
			g.EncryptionKey = k
		}
	}
	if withKeys {
		if g.SigningKey != nil && g.Signing != nil && !guardian.KeyMatches(g.SigningKey.Public(), g.Signing) {
			note("the signing key does not match the signing certificate")
		}
		if g.EncryptionKey != nil && g.Encryption != nil && !guardian.KeyMatches(g.EncryptionKey.Public(), g.Encryption) {
			note("the encryption key does not match the encryption certificate")
		}
	}
	// What the files hold, not what guardian.json said when the entry was
	// written: a key deleted or damaged since is not there.
	e.Meta.HasPrivateKeys = g.SigningKey != nil && g.EncryptionKey != nil
	if len(problems) > 0 {
		e.Problems = problems
		e.Problem = strings.Join(problems, "; ")
		// Without keys, only a public-only guardian's signature file says
		// the entry was public only, rather than one whose keys are lost.
		e.MetaOnly = !metaOK && len(problems) == metaProblems && g.Signing != nil && g.Encryption != nil &&
			(g.HasPrivateKeys() || g.EncryptionCertSignature != nil) &&
			g.Validate(guardian.Policy{AllowExpired: true, AllowUntrustedRoot: true}) == nil
	}
	return e
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func describe(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "missing"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// readRegular reads a regular file of at most 1 MiB, refusing links.
func readRegular(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if fi.Size() > 1<<20 {
		return nil, errors.New("too large")
	}
	return os.ReadFile(path)
}

func readCert(path string) (*x509.Certificate, error) {
	raw, err := readRegular(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, errors.New("damaged certificate")
	}
	return c, nil
}

func readKey(path string) (*rsa.PrivateKey, error) {
	raw, err := readRegular(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM PKCS#8 private key")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, errors.New("damaged private key")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an RSA key")
	}
	return rk, nil
}

func readTPMKey(path string, tpm *tpmkey.Device, label string, pcrs *tpmkey.PCRBinding) (*tpmkey.Key, error) {
	raw, err := readRegular(path)
	if err != nil {
		return nil, err
	}
	k, err := tpmkey.Parse(tpm, raw, label, pcrs)
	if err != nil {
		return nil, errors.New("not a TSS2 PRIVATE KEY blob")
	}
	return k, nil
}

type entryFile struct {
	name string
	data []byte
	perm fs.FileMode
}

// writeEntry writes every file of g into dir, which must be new, each file
// synced, then the directory.
func writeEntry(dir string, g *guardian.Guardian, meta Meta) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	mj, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	files := []entryFile{
		{signingCertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: g.Signing.Raw}), 0o644},
		{encryptionCertFil, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: g.Encryption.Raw}), 0o644},
	}
	if meta.HasPrivateKeys && meta.Keys == guardian.KeysTPM {
		sk, _ := g.SigningKey.(*tpmkey.Key)
		ek, _ := g.EncryptionKey.(*tpmkey.Key)
		if sk == nil || ek == nil {
			return fmt.Errorf("guardian %q: its keys are not both TPM keys", g.Name)
		}
		sig, err := g.SignEncryptionCertificate()
		if err != nil {
			return err
		}
		files = append(files,
			entryFile{signingTPMKeyFile, sk.PEM(), 0o600},
			entryFile{encryptionTPMKeyFile, ek.PEM(), 0o600},
			entryFile{encryptionSigFile, []byte(base64.StdEncoding.EncodeToString(sig) + "\n"), 0o644})
	} else if meta.HasPrivateKeys {
		sk, ek, err := g.SoftwareKeys()
		if err != nil {
			return err
		}
		for _, k := range []struct {
			name string
			key  *rsa.PrivateKey
		}{{signingKeyFile, sk}, {encryptionKeyFile, ek}} {
			der, err := x509.MarshalPKCS8PrivateKey(k.key)
			if err != nil {
				return err
			}
			files = append(files, entryFile{k.name, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600})
		}
	}
	if !meta.HasPrivateKeys && g.EncryptionCertSignature != nil {
		files = append(files, entryFile{encryptionSigFile, []byte(base64.StdEncoding.EncodeToString(g.EncryptionCertSignature) + "\n"), 0o644})
	}
	// guardian.json last: an entry is only taken for whole when it is there.
	files = append(files, entryFile{metaFile, append(mj, '\n'), 0o644})
	for _, f := range files {
		if err := writeNew(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	return atomicfile.SyncDir(dir)
}

func writeNew(path string, data []byte, perm fs.FileMode) error {
	f, err := atomicfile.CreateExcl(path, perm)
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

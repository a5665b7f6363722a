package vtpm

import (
	"archive/tar"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"time"
)

// The bundle carries a vTPM state to another host: a ustar archive (so that
// tar tvf lists it) of
//
//	manifest.json      what is inside, in clear
//	keyprotector.kp    the key protector holding the transport key
//	payload/NAME       each file, AES-256-GCM under a key derived from the
//	                   transport key, bound to its name and the manifest
//
// Nothing in it reveals the state or its key; any change, a missing,
// added or swapped member, is detected when it is opened.
const (
	BundleFormat  = "guardctl-vtpm-bundle"
	BundleVersion = 1

	manifestMember = "manifest.json"
	kpMember       = "keyprotector.kp"
	payloadPrefix  = "payload/"

	// SecretFile is the payload name of the swtpm key or passphrase of an
	// encrypted state.
	SecretFile = "secret"

	payloadInfo = "guardctl vtpm bundle v1 payload key"
	aadPrefix   = "guardctl vtpm bundle v1\x00"
)

// Limits on a bundle read from outside.
const (
	MaxBundleSize   = 64 << 20
	maxBundleFiles  = 64
	maxManifestSize = 64 << 10
)

// Manifest describes a bundle (docs/json.md has its schema).
type Manifest struct {
	Format     string    `json:"format"`
	Version    int       `json:"version"`
	CreatedAt  time.Time `json:"createdAt"`
	VM         *VM       `json:"vm,omitempty"`
	TPMVersion string    `json:"tpmVersion"`
	Layout     Layout    `json:"layout"`
	// SwtpmVersion is the source host's swtpm, when known: state moves to the
	// same or a newer libtpms.
	SwtpmVersion    string           `json:"swtpmVersion,omitempty"`
	StateEncryption *StateEncryption `json:"stateEncryption,omitempty"`
	Payload         PayloadFormat    `json:"payload"`
	Files           []FileEntry      `json:"files"`
}

// VM is the identity of the VM the state belongs to, where known.
type VM struct {
	UUID string `json:"uuid,omitempty"`
	Name string `json:"name,omitempty"`
}

// StateEncryption says how swtpm encrypts the state, when it does.
type StateEncryption struct {
	Cipher    string `json:"cipher"`              // aes-128-cbc or aes-256-cbc
	Secret    string `json:"secret"`              // key or passphrase
	KeyFormat string `json:"keyFormat,omitempty"` // hex or binary, for a key
	// KDF is swtpm's kdf= for a passphrase (pbkdf2 or sha512); bundles
	// made before it was recorded mean pbkdf2, swtpm's default.
	KDF KDF `json:"kdf,omitempty"`
}

// SwtpmKey is the value of swtpm's --key option for the state, with its
// key or passphrase in file.
func (e *StateEncryption) SwtpmKey(file string) string {
	if e.Secret == "passphrase" {
		kdf := e.KDF
		if kdf == "" {
			kdf = KDFPBKDF2
		}
		return fmt.Sprintf("pwdfile=%s,mode=%s,kdf=%s", file, e.Cipher, kdf)
	}
	s := fmt.Sprintf("file=%s,mode=%s", file, e.Cipher)
	if e.KeyFormat == "binary" {
		s += ",format=binary"
	}
	return s
}

// PayloadFormat names the payload's cryptography.
type PayloadFormat struct {
	AEAD string `json:"aead"`
	KDF  string `json:"kdf"`
}

// FileEntry is one payload file.
type FileEntry struct {
	Name string `json:"name"`
	Mode uint32 `json:"mode"`
	Size int64  `json:"size"`
	// SHA256 of the plaintext; empty for the secret, whose hash would let a
	// weak passphrase be guessed offline.
	SHA256 string `json:"sha256,omitempty"`
}

var payloadName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Bundle is a bundle in memory, its payload still encrypted.
type Bundle struct {
	Manifest     Manifest
	manifestRaw  []byte
	KeyProtector []byte            // the key protector file
	payload      map[string][]byte // nonce || ciphertext, by file name
}

func payloadKey(transportKey []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, transportKey, nil, payloadInfo, 32)
}

func (b *Bundle) aad(name string) []byte {
	digest := sha256.Sum256(b.manifestRaw)
	return append([]byte(aadPrefix+name+"\x00"), digest[:]...)
}

// Seal makes a bundle of files (plaintext, by payload name) under the
// transport key the key protector kp holds.
func Seal(m Manifest, files map[string][]byte, modes map[string]uint32, kp, transportKey []byte) (*Bundle, error) {
	m.Format, m.Version = BundleFormat, BundleVersion
	m.Payload = PayloadFormat{AEAD: "AES-256-GCM", KDF: "HKDF-SHA256"}
	m.Files = nil
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if !payloadName.MatchString(name) {
			return nil, fmt.Errorf("bad payload name %q", name)
		}
		e := FileEntry{Name: name, Mode: modes[name], Size: int64(len(files[name]))}
		if name != SecretFile {
			sum := sha256.Sum256(files[name])
			e.SHA256 = hex.EncodeToString(sum[:])
		}
		m.Files = append(m.Files, e)
	}
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	b := &Bundle{Manifest: m, manifestRaw: append(raw, '\n'), KeyProtector: kp, payload: map[string][]byte{}}
	aead, err := newAEAD(transportKey)
	if err != nil {
		return nil, err
	}
	for name, data := range files {
		nonce := make([]byte, aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return nil, err
		}
		b.payload[name] = aead.Seal(nonce, nonce, data, b.aad(name))
	}
	return b, nil
}

func newAEAD(transportKey []byte) (cipher.AEAD, error) {
	key, err := payloadKey(transportKey)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Open decrypts and checks every payload file, which authenticates the
// manifest (its digest is in each file's associated data); callers act on
// the manifest's fields only after Open succeeded.
func (b *Bundle) Open(transportKey []byte) (map[string][]byte, error) {
	aead, err := newAEAD(transportKey)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, f := range b.Manifest.Files {
		sealed := b.payload[f.Name]
		if len(sealed) < aead.NonceSize() {
			return nil, errorf(KindTampered, "payload %s is truncated", f.Name)
		}
		plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], b.aad(f.Name))
		if err != nil {
			return nil, errorf(KindTampered, "payload %s does not decrypt: the bundle was changed, a member was swapped, or the key protector is not this bundle's", f.Name)
		}
		if int64(len(plain)) != f.Size {
			return nil, errorf(KindTampered, "payload %s is %d bytes; the manifest says %d", f.Name, len(plain), f.Size)
		}
		if f.SHA256 != "" {
			sum := sha256.Sum256(plain)
			if hex.EncodeToString(sum[:]) != f.SHA256 {
				return nil, errorf(KindTampered, "payload %s does not match its SHA-256 in the manifest", f.Name)
			}
		}
		out[f.Name] = plain
	}
	// Every payload file authenticated the manifest: only now are its
	// fields acted on, so that a changed byte is a tampered bundle, never
	// a decision taken on what an attacker wrote.
	if e := b.Manifest.StateEncryption; e != nil && e.KDF != "" {
		if _, err := ParseKDF(string(e.KDF)); err != nil || e.Secret != "passphrase" {
			return nil, errorf(KindUnsupported, "the manifest names the key derivation %q for a %s; guardctl knows pbkdf2 and sha512, for a passphrase", e.KDF, e.Secret)
		}
	}
	return out, nil
}

// Reseal returns the bundle with another key protector holding the same
// transport key (grant, revoke): the payload is untouched.
func (b *Bundle) Reseal(kp []byte) *Bundle {
	c := *b
	c.KeyProtector = kp
	return &c
}

// Marshal writes the bundle as a ustar archive.
func (b *Bundle) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := b.Manifest.CreatedAt.Truncate(time.Second)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add(manifestMember, b.manifestRaw); err != nil {
		return nil, err
	}
	if err := add(kpMember, b.KeyProtector); err != nil {
		return nil, err
	}
	for _, f := range b.Manifest.Files {
		if err := add(payloadPrefix+f.Name, b.payload[f.Name]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// layoutDiff says where data departs from the canonical archive.
func layoutDiff(canonical, data []byte) string {
	n := min(len(canonical), len(data))
	for i := range n {
		if canonical[i] != data[i] {
			return fmt.Sprintf("byte %d differs", i)
		}
	}
	if len(data) > len(canonical) {
		return fmt.Sprintf("%d bytes follow its end", len(data)-len(canonical))
	}
	return fmt.Sprintf("it ends %d bytes early", len(canonical)-len(data))
}

// ReadBundle parses a bundle, bounded, with exactly the members its
// manifest names, in order, and nothing else.
func ReadBundle(data []byte) (*Bundle, error) {
	if len(data) > MaxBundleSize {
		return nil, errorf(KindInvalid, "the bundle is %d bytes, more than %d", len(data), MaxBundleSize)
	}
	tr := tar.NewReader(bytes.NewReader(data))
	b := &Bundle{payload: map[string][]byte{}}
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, errorf(KindInvalid, "not a guardctl vTPM bundle (a ustar archive): %v", err)
		}
		if len(names) == 2+maxBundleFiles {
			return nil, errorf(KindInvalid, "the bundle has too many members")
		}
		// Plain ustar members only: no PAX records (which could declare
		// sparse files far larger than the archive), no links or devices.
		if h.Typeflag != tar.TypeReg || len(h.PAXRecords) > 0 || h.Size < 0 || h.Size > int64(len(data)) {
			return nil, errorf(KindInvalid, "the bundle member %q is not a plain file of the archive", h.Name)
		}
		// The header says how large the manifest is before it is read;
		// each member is read into a buffer of its declared size (within
		// the archive's), never grown by doubling.
		if len(names) == 0 && (h.Name != manifestMember || h.Size > maxManifestSize) {
			return nil, errorf(KindInvalid, "not a guardctl vTPM bundle: it does not start with %s of at most %d bytes", manifestMember, maxManifestSize)
		}
		content := make([]byte, h.Size)
		if _, err := io.ReadFull(tr, content); err != nil {
			return nil, errorf(KindInvalid, "the bundle is truncated in member %q", h.Name)
		}
		names = append(names, h.Name)
		switch {
		case len(names) == 1:
			if h.Name != manifestMember || h.Size > maxManifestSize {
				return nil, errorf(KindInvalid, "not a guardctl vTPM bundle: it does not start with %s", manifestMember)
			}
			b.manifestRaw = content
			dec := json.NewDecoder(bytes.NewReader(content))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&b.Manifest); err != nil {
				return nil, errorf(KindInvalid, "the bundle's manifest does not parse: %v", err)
			}
			if b.Manifest.Format != BundleFormat || b.Manifest.Version != BundleVersion {
				return nil, errorf(KindUnsupported, "bundle format %q version %d is not one this guardctl reads (%s %d)", b.Manifest.Format, b.Manifest.Version, BundleFormat, BundleVersion)
			}
			if len(b.Manifest.Files) == 0 || len(b.Manifest.Files) > maxBundleFiles {
				return nil, errorf(KindInvalid, "the manifest lists %d files", len(b.Manifest.Files))
			}
			seen := map[string]bool{}
			for _, f := range b.Manifest.Files {
				if !payloadName.MatchString(f.Name) || seen[f.Name] {
					return nil, errorf(KindInvalid, "the manifest lists a bad or repeated file name %q", f.Name)
				}
				seen[f.Name] = true
			}
		case len(names) == 2:
			if h.Name != kpMember {
				return nil, errorf(KindInvalid, "the bundle's second member is %q, not %s", h.Name, kpMember)
			}
			b.KeyProtector = content
		default:
			i := len(names) - 3
			if i >= len(b.Manifest.Files) || h.Name != payloadPrefix+b.Manifest.Files[i].Name {
				return nil, errorf(KindTampered, "the bundle member %q is not the one the manifest lists there", h.Name)
			}
			b.payload[b.Manifest.Files[i].Name] = content
		}
	}
	if len(names) < 2 || len(b.payload) != len(b.Manifest.Files) {
		return nil, errorf(KindTampered, "the bundle lacks members its manifest lists: it is truncated")
	}
	// The layout is read strictly: the archive must be byte for byte the one
	// guardctl writes for these members (headers, zero padding, the two
	// zero blocks that end it, nothing after), so that no byte outside what
	// the key protector and the payload's authentication cover can change.
	canonical, err := b.Marshal()
	if err != nil {
		return nil, errorf(KindInvalid, "the bundle cannot be written back: %v", err)
	}
	if !bytes.Equal(canonical, data) {
		return nil, errorf(KindTampered, "the bundle is not byte for byte the archive guardctl writes for its members (%s): its headers, padding or end were changed, or data was added", layoutDiff(canonical, data))
	}
	return b, nil
}

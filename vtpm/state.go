package vtpm

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/guardctl/guardctl/internal/atomicfile"
)

// Layout is how a state is kept on disk.
type Layout string

const (
	// LayoutDir is swtpm's directory backend (--tpmstate dir=), as libvirt
	// keeps it: tpm2-00.permall and, after a suspend, tpm2-00.volatilestate.
	LayoutDir Layout = "dir"
	// LayoutLinear is swtpm's linear file backend (backend-uri=file://), as
	// Proxmox keeps it.
	LayoutLinear Layout = "linear"
	// LayoutBlob is a single state blob file (a tpm2-00.permall on its own).
	LayoutBlob Layout = "blob"
)

// State is a TPM 2.0 state as swtpm keeps it, read into memory.
type State struct {
	Path   string
	Layout Layout
	// Blobs holds swtpm's blobs by state name: permall, and volatilestate
	// or savestate when present.
	Blobs map[string][]byte
	// Size is the linear file's size, kept when it is written again.
	Size int
	// Device is the block device a linear state is on (Path, or the
	// device Path links to), written in place with WriteDevice.
	Device string
	// Image describes the qcow2 image a linear state is kept in (Proxmox
	// VE 9's tpmstate0), nil for a raw file or device.
	Image *ImageInfo
	// Others are a state directory's files that are not swtpm's blobs
	// (libvirt's ek-rsa2048.crt and ek-secp384r1.crt, and whatever else
	// was put there), by file name; they travel with the state untouched.
	Others map[string][]byte
	// Modes are the permission bits of a state directory's files, or of
	// the state file itself (""), as they were read.
	Modes map[string]fs.FileMode
}

// dirFile is the file the directory backend keeps a TPM 2.0 blob in.
func dirFile(name string) string { return "tpm2-00." + name }

// PermallName is the file swtpm keeps a TPM 2.0's permanent state in.
var PermallName = dirFile("permall")

// ReadState reads the state at path: a swtpm state directory, a linear
// state file, or a single blob file. A missing or empty state, one of
// zeros only (a fresh volume: no state yet), and TPM 1.2 state, are refused
// with what to do.
func ReadState(path string) (*State, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return readDir(path)
	}
	if isBlockDevice(fi) {
		return readDeviceState(path)
	}
	if isQcow2File(path) {
		return readQcow2State(path, path, "")
	}
	if fi.Size() > MaxBlobSize {
		return nil, errorf(KindInvalid, "%s is %d bytes, more than a vTPM state may be (%d)", path, fi.Size(), MaxBlobSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if isLinear(data) {
		blobs, err := parseLinear(data)
		if err != nil {
			return nil, err
		}
		if len(blobs) == 0 || len(blobs["permall"]) == 0 {
			return nil, errorf(KindNoState, "the linear state file %s holds no TPM state yet: the TPM was never set up (swtpm_setup), or the state was lost", path)
		}
		return &State{Path: path, Layout: LayoutLinear, Blobs: blobs, Size: len(data), Modes: map[string]fs.FileMode{"": fi.Mode().Perm()}}, nil
	}
	if len(data) == 0 {
		return nil, errorf(KindNoState, "%s is empty: there is no TPM state to carry", path)
	}
	if IsZero(data) {
		return nil, errorf(KindNoState, "%s holds only zeros: it is a fresh volume that holds no TPM state yet (the VM has not been started with its TPM), or the state is elsewhere", path)
	}
	return &State{Path: path, Layout: LayoutBlob, Blobs: map[string][]byte{"permall": data}, Modes: map[string]fs.FileMode{"": fi.Mode().Perm()}}, nil
}

// readDeviceState reads a linear state from a block device, or from the
// one path links to.
func readDeviceState(path string) (*State, error) {
	dev, ok, err := ResolveDevice(path)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s reaches a block device through more than one symbolic link; name the device or its one link", path)
	}
	data, err := readDevicePath(dev, path)
	if err != nil {
		return nil, err
	}
	if hasQcow2Magic(data) {
		return readQcow2State(path, dev, dev)
	}
	if IsZero(data) {
		return nil, errorf(KindNoState, "the block device %s holds only zeros: it is a fresh volume that holds no TPM state yet (the VM has not been started with its TPM), or the state is elsewhere", path)
	}
	if !isLinear(data) {
		return nil, errorf(KindInvalid, "the block device %s does not hold a swtpm linear state", path)
	}
	blobs, err := parseLinear(data)
	if err != nil {
		return nil, err
	}
	if len(blobs["permall"]) == 0 {
		return nil, errorf(KindNoState, "the linear state on %s holds no TPM state yet: the TPM was never set up (swtpm_setup), or the state was lost", path)
	}
	return &State{Path: path, Layout: LayoutLinear, Blobs: blobs, Size: len(data), Device: dev}, nil
}

// readDir reads a state directory whole: swtpm's blobs and every other
// regular file in it (libvirt's EK certificates, what administrators put
// there), each with its mode. What cannot be carried faithfully (a
// subdirectory, a link, a FIFO, a socket, a device, a name a bundle cannot
// hold) is refused by name, never skipped; swtpm's .lock stays out.
func readDir(dir string) (*State, error) {
	s := &State{Path: dir, Layout: LayoutDir, Blobs: map[string][]byte{}, Others: map[string][]byte{}, Modes: map[string]fs.FileMode{}}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	blobOf := map[string]string{}
	for _, n := range blobNames {
		blobOf[dirFile(n)] = n
	}
	hasPermall, total := false, 0
	for _, de := range des {
		if de.Name() == PermallName {
			hasPermall = true
		}
	}
	if !hasPermall {
		if fi, err := os.Stat(filepath.Join(dir, "tpm-00.permall")); err == nil && fi.Mode().IsRegular() {
			return nil, errorf(KindUnsupported, "%s holds TPM 1.2 state (tpm-00.permall); guardctl carries TPM 2.0 state only", dir)
		}
		if fi, err := os.Stat(filepath.Join(dir, "tpm2")); err == nil && fi.IsDir() {
			return nil, errorf(KindNoState, "%s holds no %s but a tpm2/ directory: it is the VM's swtpm directory, and its TPM 2.0 state is in %s", dir, PermallName, filepath.Join(dir, "tpm2"))
		}
		return nil, errorf(KindNoState, "%s holds no %s: the TPM was never set up, or its state is not here (libvirt would make a new TPM and the guest would lose its sealed secrets)", dir, PermallName)
	}
	for _, de := range des {
		name := de.Name()
		if name == ".lock" || strings.HasPrefix(name, atomicfile.TempPrefix) {
			// swtpm's lock, made again by the swtpm that runs on the
			// state; what a stopped guardctl left was never state.
			continue
		}
		path := filepath.Join(dir, name)
		if err := carriable(path, name, de.Type()); err != nil {
			return nil, err
		}
		if len(s.Modes) == maxBundleFiles-1 {
			return nil, errorf(KindUnsupported, "%s holds more than %d files; a bundle carries at most that many: move what is not the VM's TPM state out of it", dir, maxBundleFiles-1)
		}
		data, err := ReadNoFollow(path, MaxBlobSize)
		if err != nil {
			return nil, err
		}
		// The bundle holds it all, and is read back whole, bounded.
		if total += len(data); total > MaxBundleSize/2 {
			return nil, errorf(KindInvalid, "%s holds more than %d bytes of files; a bundle carries at most that: move what is not the VM's TPM state out of it", dir, MaxBundleSize/2)
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return nil, err
		}
		s.Modes[name] = fi.Mode().Perm()
		if b, ok := blobOf[name]; ok {
			s.Blobs[b] = data
		} else {
			s.Others[name] = data
		}
	}
	if IsZero(s.Blobs["permall"]) {
		return nil, errorf(KindNoState, "%s holds only zeros: it holds no TPM state yet (the VM has not been started with its TPM), or the state was lost", filepath.Join(dir, PermallName))
	}
	return s, nil
}

// blobNames are swtpm's TPM 2.0 state blobs, in the order it keeps them.
var blobNames = []string{"permall", "volatilestate", "savestate"}

// carriable refuses, by name, an entry of a state directory a bundle cannot
// carry faithfully.
func carriable(path, name string, t fs.FileMode) error {
	what := ""
	switch {
	case t&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link; guardctl does not follow links inside a state, and a state directory is carried whole: replace the link by the file itself, or move it out, and wrap again", path)
	case t.IsDir():
		what = "a subdirectory"
	case t&fs.ModeNamedPipe != 0:
		what = "a FIFO"
	case t&fs.ModeSocket != 0:
		what = "a socket"
	case t&fs.ModeDevice != 0:
		what = "a device"
	case !t.IsRegular():
		what = "not a regular file"
	}
	if what != "" {
		return fmt.Errorf("%s is %s; a state directory is carried whole, and this cannot be carried faithfully: move it out of the directory (or replace it by the file itself) and wrap again", path, what)
	}
	if name == SecretFile || !payloadName.MatchString(name) {
		return errorf(KindUnsupported, "%s: a bundle cannot carry a file of this name (names are letters, digits, '.', '_' and '-', up to 64, not starting with a dot, and not %q); rename or move it and wrap again", path, SecretFile)
	}
	return nil
}

// ReadNoFollow reads the file at path, which must be a regular file and not
// a symbolic link: a file inside a state directory is never followed out of
// it (a link to another VM's state, or to /etc/passwd, is refused by name).
// The file opened is checked to be the one looked at, so a link swapped in
// meanwhile is refused too.
func ReadNoFollow(path string, limit int64) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is a symbolic link; guardctl does not follow links inside a state", path)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > limit {
		return nil, errorf(KindInvalid, "%s is larger than %d bytes", path, limit)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	now, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !os.SameFile(fi, now) {
		return nil, fmt.Errorf("%s changed while it was being read (a symbolic link swapped in?); refusing it", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, errorf(KindInvalid, "%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

// HasVolatile reports whether the state holds volatile state (written by a
// suspend, or swtpm_ioctl -v) that swtpm would resume from at its next start.
func (s *State) HasVolatile() bool { return len(s.Blobs["volatilestate"]) > 0 }

// Names are the state's blob names, sorted.
func (s *State) Names() []string {
	return slices.Sorted(maps.Keys(s.Blobs))
}

// Files returns what is written to disk for blobs in this state's layout:
// file name (relative to Path for a directory; "" for the file itself) to
// bytes. A directory's other files come along as they are.
func (s *State) Files(blobs map[string][]byte) map[string][]byte {
	switch s.Layout {
	case LayoutDir:
		out := map[string][]byte{}
		for n, b := range s.Others {
			out[n] = b
		}
		for n, b := range blobs {
			out[dirFile(n)] = b
		}
		return out
	case LayoutLinear:
		return map[string][]byte{"": buildLinear(blobs, s.Size)}
	default:
		return map[string][]byte{"": blobs["permall"]}
	}
}

// Transform applies f to every blob, returning the new blobs; nothing is
// written.
func (s *State) Transform(f func(name string, blob []byte) ([]byte, error)) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, n := range s.Names() {
		b, err := f(n, s.Blobs[n])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out[n] = b
	}
	return out, nil
}

// ErrInUse is returned when a process (a swtpm, a qemu-storage-daemon, a
// QEMU) has the state open or holds its lock; the error names it where it
// can.
var ErrInUse = errors.New("the state is in use")

// CheckNotInUse fails with ErrInUse when a process holds a lock on the
// state or has it open, as CheckPathNotInUse tells.
// For a qcow2 image, qemu's image lock is asked too (a qemu-storage-daemon
// holds it while it exports the image).
func (s *State) CheckNotInUse() error {
	if err := CheckPathNotInUse(s.Path); err != nil || s.Image == nil {
		return err
	}
	image := s.Path
	if s.Device != "" {
		image = s.Device
	}
	_, err := Qcow2Info(image, false)
	return err
}

// CheckPathNotInUse fails with ErrInUse when a process holds a lock on the
// state at path (swtpm's lock file in a state directory, or the linear file
// itself) or has it open: for a state file the file itself, for a directory
// the directory or a file in it. swtpm takes no lock on its linear file
// backend, so on Linux every process's open files (/proc/*/fd) are looked
// at. Processes of other users are seen only by root. A path that does not
// exist is not in use.
func CheckPathNotInUse(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	lock, open := path, []string{path}
	if fi.IsDir() {
		lock = filepath.Join(path, ".lock")
		des, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		for _, de := range des {
			// Only what stat reaches: a link inside is not followed out.
			if de.Type().IsRegular() {
				open = append(open, filepath.Join(path, de.Name()))
			}
		}
	}
	locked, err := lockHeld(lock)
	if err != nil {
		return err
	}
	// The process is named where it can be found (a qemu-storage-daemon
	// holds qemu's image lock on a qcow2 image, a swtpm its .lock).
	pid, name, err := openBy(open...)
	if err != nil {
		return err
	}
	if pid != 0 {
		return fmt.Errorf("%w: process %d (%s) has it open", ErrInUse, pid, name)
	}
	if locked {
		return fmt.Errorf("%w: a process holds its lock (a running swtpm holds its state's)", ErrInUse)
	}
	return nil
}

// PassphraseKey returns the key passphrase derives that opens every blob of
// the state, and the key derivation that made it: kdf when given, else
// whichever of swtpm's opens it (its default first). bits is the state's
// key size.
func (s *State) PassphraseKey(passphrase []byte, bits int, kdf KDF) (Key, KDF, error) {
	kdfs := KDFs
	if kdf != "" {
		kdfs = []KDF{kdf}
	}
	var firstErr error
	for _, d := range kdfs {
		key, err := KeyFromPassphrase(passphrase, bits, d)
		if err == nil {
			_, err = s.Transform(func(_ string, b []byte) ([]byte, error) { return Decrypt(b, key) })
		}
		if err == nil {
			return key, d, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if len(kdfs) > 1 {
		var ve *Error
		if errors.As(firstErr, &ve) && ve.Kind == KindKey {
			return nil, "", errorf(KindKey, "%v (tried swtpm's key derivations pbkdf2 and sha512)", firstErr)
		}
	}
	return nil, "", firstErr
}

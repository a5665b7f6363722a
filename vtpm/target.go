package vtpm

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"github.com/guardctl/guardctl/internal/atomicfile"
)

// A state is written to one of four kinds of target: a state directory
// (libvirt), a linear state file (Proxmox directory storage, raw), a block
// device (Proxmox LVM, ZFS or Ceph volumes, written in place) or a qcow2
// image (Proxmox VE 9's tpmstate0, a file or a block device holding
// qcow2). Each is a Target; an unwrap is a Plan made against one, which the
// command shows (--dry-run) or applies.

// TargetKind names a kind of target.
type TargetKind string

const (
	TargetDir    TargetKind = "directory"
	TargetFile   TargetKind = "file"
	TargetDevice TargetKind = "device"
	TargetQcow2  TargetKind = "qcow2"
)

// Owner is the user and group a written state is given (libvirt runs swtpm
// as tss); -1 leaves either as it is.
type Owner struct{ UID, GID int }

func (o *Owner) apply(path string) error {
	if o == nil {
		return nil
	}
	return os.Lchown(path, o.UID, o.GID)
}

// TargetError is a target that cannot take a state, or a path that is not
// the target the user meant; Hint says what to do.
type TargetError struct{ Msg, Hint string }

func (e *TargetError) Error() string { return e.Msg }

// Image is a state as it is put on disk: its layout, and its files by name
// (relative to a directory; "" for a linear or blob file itself) with the
// modes recorded for them.
type Image struct {
	// Source names the state in errors ("the state in vm1.vtpm").
	Source string
	Layout Layout
	Files  map[string][]byte
	Modes  map[string]fs.FileMode
}

// Target is a place a state is written to.
type Target interface {
	// Kind is the kind of target.
	Kind() TargetKind
	// Path is the path the target was named by.
	Path() string
	// Device is the block device written in place, if any.
	Device() string
	// Info describes a qcow2 image, nil for the other kinds.
	Info() *ImageInfo
	// CheckNotInUse refuses a target a process (a swtpm, a
	// qemu-storage-daemon, QEMU) has open or locked.
	CheckNotInUse() error
	// Current reads the state the target holds: fresh reports one that
	// holds nothing yet (missing, empty, all zeros); an error, that it
	// holds something that is not a state guardctl reads.
	Current() (st *State, fresh bool, err error)
	// writes lists the paths a Replace writes with their modes.
	writes(img Image) []Write
	// replace puts img in place of what the target holds.
	replace(img Image, opt UnwrapOptions, fresh bool) (backup string, err error)
	// rewrite writes a state's files again in place (rekey), keeping
	// their owner and mode; backups are kept with keep.
	rewrite(st *State, files map[string][]byte, keep bool, backupDir string) ([]string, error)
	// fixes lists the owner and mode to set on the state in place.
	fixes(img Image, own *Owner) []Fix
}

// Write is a file a plan writes, with its mode.
type Write struct {
	Path string      `json:"path"`
	Mode fs.FileMode `json:"mode"`
}

// Fix is an owner and mode to set on a file or directory in place; a zero
// Mode leaves the mode.
type Fix struct {
	Path  string
	Mode  fs.FileMode
	Owner *Owner
}

func (f Fix) apply() error {
	if err := f.Owner.apply(f.Path); err != nil {
		return err
	}
	if f.Mode == 0 {
		return nil
	}
	return os.Chmod(f.Path, f.Mode)
}

// StateFileMode is the mode an unwrapped state file is written with,
// whatever mode it had on the source: 0640 where the source let its group
// read it (swtpm and swtpm_setup write their files 0640, libvirt gives the
// group to swtpm's user), else 0600. Nothing is ever written for others to
// read or for anyone to execute.
func StateFileMode(recorded fs.FileMode) fs.FileMode {
	if recorded&0o040 != 0 {
		return 0o640
	}
	return 0o600
}

// OpenTarget returns the target at path for a state of layout: a block
// device (path itself, or the one link 'pvesm path' gives), a qcow2 image
// (a file, or a block device holding qcow2), a directory, or a file.
// source names the state in errors ("the state in vm1.vtpm").
func OpenTarget(path string, layout Layout, source string) (Target, error) {
	if source == "" {
		source = "the state"
	}
	dev, isDev, err := ResolveDevice(path)
	if err != nil && layout != LayoutDir {
		return nil, err
	}
	if isDev {
		if layout == LayoutDir {
			return nil, &TargetError{Msg: fmt.Sprintf("%s is a block device, and %s is a state directory; a block device takes a linear state", path, source),
				Hint: "unwrap it into a directory (--to DIR) for swtpm --tpmstate dir=DIR; a volume takes a bundle wrapped from a linear state (swtpm's backend-uri=file://)"}
		}
		if layout != LayoutLinear {
			return nil, &TargetError{Msg: fmt.Sprintf("%s is a block device, and %s is a single blob file; swtpm reads a linear state from a block device", path, source)}
		}
		head, err := readHead(dev)
		if err != nil {
			return nil, err
		}
		if hasQcow2Magic(head) {
			return openQcow2(path, dev)
		}
		return &deviceTarget{path: path, dev: dev}, nil
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if layout == LayoutDir {
			return newDirTarget(path)
		}
		return &fileTarget{path: path}, nil
	case err != nil:
		return nil, err
	case fi.Mode()&fs.ModeSymlink != 0:
		return nil, fmt.Errorf("%s is a symbolic link; refusing to write through it (only a link to a block device is followed, for a linear state)", path)
	case fi.IsDir():
		if layout != LayoutDir {
			return nil, &TargetError{Msg: fmt.Sprintf("%s exists and is not a regular file, qcow2 image or block device", path)}
		}
		return newDirTarget(path)
	case !fi.Mode().IsRegular():
		return nil, &TargetError{Msg: fmt.Sprintf("%s exists and is not a %s", path, map[bool]string{true: "directory", false: "regular file or block device"}[layout == LayoutDir])}
	case isQcow2File(path):
		if layout != LayoutLinear {
			return nil, &TargetError{Msg: fmt.Sprintf("%s is a qcow2 image, and %s is a %s state; a qcow2 image takes a linear state", path, source, layout),
				Hint: "a qcow2 tpmstate volume takes a bundle wrapped from a linear state (swtpm's backend-uri=file://, as Proxmox keeps it)"}
		}
		return openQcow2(path, "")
	case layout == LayoutDir:
		return nil, &TargetError{Msg: fmt.Sprintf("%s exists and is not a directory", path)}
	}
	return &fileTarget{path: path}, nil
}

// TargetOf is the target a state is kept in, for rewriting it in place.
func TargetOf(st *State) Target {
	switch {
	case st.Image != nil:
		image := st.Path
		if st.Device != "" {
			image = st.Device
		}
		return &qcow2Target{path: st.Path, image: image, dev: st.Device, info: st.Image}
	case st.Device != "":
		return &deviceTarget{path: st.Path, dev: st.Device}
	case st.Layout == LayoutDir:
		return &dirTarget{path: st.Path}
	}
	return &fileTarget{path: st.Path}
}

func readHead(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return head[:n], nil
}

var uuidName = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// IsUUID reports whether s is a UUID in its usual text form.
func IsUUID(s string) bool { return uuidName.MatchString(s) }

func newDirTarget(path string) (Target, error) {
	// libvirt keeps a VM's state in /var/lib/libvirt/swtpm/UUID/tpm2: the
	// UUID directory itself is not where swtpm looks.
	if IsUUID(filepath.Base(path)) {
		return nil, &TargetError{Msg: fmt.Sprintf("%s is a libvirt VM's swtpm directory, not its state directory", path),
			Hint: fmt.Sprintf("libvirt's swtpm reads the state from the tpm2/ directory inside it: --to %s", filepath.Join(path, "tpm2"))}
	}
	return &dirTarget{path: path}, nil
}

// Leftovers are what killed runs of guardctl left beside path: temporary
// files and directories (some holding plain state) that were never in
// place.
func Leftovers(path string) []string {
	left, _ := filepath.Glob(tempPrefix(path) + "*")
	return left
}

func tempPrefix(path string) string { return atomicfile.TempNamePrefix(path) }

// removeLeftovers removes what Leftovers lists.
func removeLeftovers(paths []string) error {
	for _, l := range paths {
		if err := os.RemoveAll(l); err != nil {
			return fmt.Errorf("removing %s, left by an earlier guardctl that was stopped: %w", l, err)
		}
	}
	return nil
}

// mkdirs makes dir and its missing parents (0700) and returns how to take
// back what it made, for a command that fails.
func mkdirs(dir string) (undo func(), err error) {
	var made []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		made = append(made, d)
	}
	undo = func() {
		for _, d := range made {
			os.Remove(d) // only while empty
		}
	}
	if err := atomicfile.MkdirAll(dir); err != nil {
		undo()
		return func() {}, err
	}
	return undo, nil
}

package vtpm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

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

// --- a state directory ---

type dirTarget struct{ path string }

func (t *dirTarget) Kind() TargetKind     { return TargetDir }
func (t *dirTarget) Path() string         { return t.path }
func (t *dirTarget) Device() string       { return "" }
func (t *dirTarget) Info() *ImageInfo     { return nil }
func (t *dirTarget) CheckNotInUse() error { return notInUse(t.path) }

func notInUse(path string) error {
	if err := CheckPathNotInUse(path); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func (t *dirTarget) Current() (*State, bool, error) {
	des, err := os.ReadDir(t.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	if len(des) == 0 {
		return nil, true, nil
	}
	st, err := ReadState(t.path)
	return st, false, err
}

func (t *dirTarget) writes(img Image) []Write {
	var out []Write
	for _, n := range slices.Sorted(maps.Keys(img.Files)) {
		out = append(out, Write{Path: filepath.Join(t.path, n), Mode: StateFileMode(img.Modes[n])})
	}
	return out
}

// replace writes the files into a new directory beside the target and
// renames it into place, keeping what was there as PATH.TIME.bak.
func (t *dirTarget) replace(img Image, opt UnwrapOptions, fresh bool) (string, error) {
	dir := t.path
	parent := filepath.Dir(dir)
	_, statErr := os.Stat(parent)
	undo, err := mkdirs(parent)
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			undo()
		}
	}()
	// libvirt keeps each VM's swtpm directory (the parent of tpm2) 0700 and
	// owned by the swtpm user too: one guardctl made goes to the same owner.
	if errors.Is(statErr, fs.ErrNotExist) {
		if err := opt.Owner.apply(parent); err != nil {
			return "", err
		}
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(tempPrefix(dir))+"*")
	if err != nil {
		return "", err
	}
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o700); err != nil {
		return "", err
	}
	for _, name := range slices.Sorted(maps.Keys(img.Files)) {
		p := filepath.Join(tmp, name)
		if _, err := atomicfile.WriteFile(p, img.Files[name], StateFileMode(img.Modes[name]), atomicfile.Options{}); err != nil {
			return "", err
		}
		if err := opt.Owner.apply(p); err != nil {
			return "", err
		}
	}
	if err := opt.Owner.apply(tmp); err != nil {
		return "", err
	}
	var backup string
	if fi, err := os.Lstat(dir); err == nil && fi.IsDir() {
		if des, _ := os.ReadDir(dir); len(des) > 0 {
			if !opt.Force {
				return "", fmt.Errorf("%s already holds a state: %w", dir, atomicfile.ErrExists)
			}
			backup = atomicfile.BackupName(dir, time.Now())
			if err := os.Rename(dir, backup); err != nil {
				return "", err
			}
			// Like every backup: the owner's alone.
			if err := os.Chmod(backup, 0o700); err != nil {
				return "", err
			}
		} else if err := os.Remove(dir); err != nil {
			return "", err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return backup, err
	}
	ok = true
	return backup, atomicfile.SyncDir(parent)
}

func (t *dirTarget) rewrite(st *State, files map[string][]byte, keep bool, _ string) ([]string, error) {
	var backups []string
	for _, n := range slices.Sorted(maps.Keys(files)) {
		path := filepath.Join(t.path, n)
		fi, err := os.Stat(path)
		if err != nil {
			return backups, err
		}
		if old, err := ReadNoFollow(path, MaxBlobSize); err == nil && bytes.Equal(old, files[n]) {
			continue // not one of swtpm's blobs: unchanged
		}
		backup, err := atomicfile.WriteFile(path, files[n], fi.Mode().Perm(), atomicfile.Options{Overwrite: true, Backup: keep})
		if err != nil {
			return backups, err
		}
		if backup != "" {
			backups = append(backups, backup)
		}
		if err := KeepOwner(path, fi); err != nil {
			return backups, fmt.Errorf("%s was rewritten but its owner could not be kept: %w", path, err)
		}
	}
	return backups, nil
}

func (t *dirTarget) fixes(img Image, own *Owner) []Fix {
	var out []Fix
	want := func(path string, mode fs.FileMode) {
		if f, ok := needsFix(path, mode, own); ok {
			out = append(out, f)
		}
	}
	want(t.path, 0o700)
	for _, n := range slices.Sorted(maps.Keys(img.Files)) {
		want(filepath.Join(t.path, n), StateFileMode(img.Modes[n]))
	}
	return out
}

// needsFix returns the fix path needs to have mode (when not 0) and own.
func needsFix(path string, mode fs.FileMode, own *Owner) (Fix, bool) {
	fi, err := os.Lstat(path)
	if err != nil {
		return Fix{}, false
	}
	ok := mode == 0 || fi.Mode().Perm() == mode
	if uid, gid, known := OwnerOf(fi); known && own != nil {
		ok = ok && (own.UID < 0 || own.UID == uid) && (own.GID < 0 || own.GID == gid)
	}
	return Fix{Path: path, Mode: mode, Owner: own}, !ok
}

// --- a linear state file or a single blob file ---

type fileTarget struct{ path string }

func (t *fileTarget) Kind() TargetKind     { return TargetFile }
func (t *fileTarget) Path() string         { return t.path }
func (t *fileTarget) Device() string       { return "" }
func (t *fileTarget) Info() *ImageInfo     { return nil }
func (t *fileTarget) CheckNotInUse() error { return notInUse(t.path) }

func (t *fileTarget) Current() (*State, bool, error) {
	fi, err := os.Lstat(t.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	if fi.Size() <= MaxDeviceSize {
		if data, err := os.ReadFile(t.path); err == nil && IsZero(data) {
			// A freshly allocated volume file (or an empty one) holds
			// no state.
			return nil, true, nil
		}
	}
	st, err := ReadState(t.path)
	return st, false, err
}

func (t *fileTarget) writes(img Image) []Write {
	return []Write{{Path: t.path, Mode: StateFileMode(img.Modes[""])}}
}

func (t *fileTarget) replace(img Image, opt UnwrapOptions, fresh bool) (string, error) {
	undo, err := mkdirs(filepath.Dir(t.path))
	if err != nil {
		return "", err
	}
	// A fresh, all-zero volume holds no state: replaced without --force,
	// and with no backup.
	backup, err := atomicfile.WriteFile(t.path, img.Files[""], StateFileMode(img.Modes[""]), atomicfile.Options{Overwrite: opt.Force || fresh, Backup: !fresh})
	if err == nil {
		err = opt.Owner.apply(t.path)
	}
	if err != nil && backup == "" {
		undo()
	}
	return backup, err
}

func (t *fileTarget) rewrite(st *State, files map[string][]byte, keep bool, _ string) ([]string, error) {
	fi, err := os.Stat(t.path)
	if err != nil {
		return nil, err
	}
	backup, err := atomicfile.WriteFile(t.path, files[""], fi.Mode().Perm(), atomicfile.Options{Overwrite: true, Backup: keep})
	var backups []string
	if backup != "" {
		backups = append(backups, backup)
	}
	if err != nil {
		return backups, err
	}
	if err := KeepOwner(t.path, fi); err != nil {
		return backups, fmt.Errorf("%s was rewritten but its owner could not be kept: %w", t.path, err)
	}
	return backups, nil
}

func (t *fileTarget) fixes(img Image, own *Owner) []Fix {
	if f, ok := needsFix(t.path, StateFileMode(img.Modes[""]), own); ok {
		return []Fix{f}
	}
	return nil
}

// --- a block device holding a raw linear state ---

type deviceTarget struct{ path, dev string }

func (t *deviceTarget) Kind() TargetKind { return TargetDevice }
func (t *deviceTarget) Path() string     { return t.path }
func (t *deviceTarget) Device() string   { return t.dev }
func (t *deviceTarget) Info() *ImageInfo { return nil }

// CheckNotInUse's own errors name the device.
func (t *deviceTarget) CheckNotInUse() error { return CheckDeviceNotInUse(t.dev) }

func (t *deviceTarget) Current() (*State, bool, error) {
	fresh, err := DeviceFresh(t.dev)
	if err != nil || fresh {
		return nil, fresh, err
	}
	st, err := readDeviceState(t.path)
	return st, false, err
}

func (t *deviceTarget) writes(Image) []Write { return []Write{{Path: t.dev}} }

func (t *deviceTarget) replace(img Image, opt UnwrapOptions, _ bool) (string, error) {
	// Written in place, its old contents kept first.
	return WriteDevice(t.dev, img.Files[""], DeviceOptions{Force: opt.Force, BackupDir: opt.BackupDir, BackupName: filepath.Base(t.path), KeepBackup: true})
}

func (t *deviceTarget) rewrite(st *State, files map[string][]byte, keep bool, backupDir string) ([]string, error) {
	// In place; the old contents are kept until the new ones read back,
	// and after that only when asked.
	backup, err := WriteDevice(t.dev, files[""], DeviceOptions{Force: true, BackupDir: backupDir, BackupName: filepath.Base(t.path), KeepBackup: keep})
	if backup == "" {
		return nil, err
	}
	return []string{backup}, err
}

// A device keeps its owner and mode.
func (t *deviceTarget) fixes(Image, *Owner) []Fix { return nil }

// --- a qcow2 image: a file, or a block device holding qcow2 ---

type qcow2Target struct {
	path  string // as named
	image string // what qemu-img opens: the file, or the device
	dev   string
	info  *ImageInfo
}

func openQcow2(path, dev string) (Target, error) {
	image := path
	if dev != "" {
		image = dev
	}
	// -U: whether the image is in use is CheckNotInUse's to say.
	info, err := Qcow2Info(image, true)
	if err != nil {
		return nil, err
	}
	return &qcow2Target{path: path, image: image, dev: dev, info: info}, nil
}

func (t *qcow2Target) Kind() TargetKind { return TargetQcow2 }
func (t *qcow2Target) Path() string     { return t.path }
func (t *qcow2Target) Device() string   { return t.dev }
func (t *qcow2Target) Info() *ImageInfo { return t.info }

// CheckNotInUse asks qemu's image lock (a qemu-storage-daemon or QEMU
// holds it while it has the image open for writing) and /proc (a swtpm,
// or anything without the lock).
func (t *qcow2Target) CheckNotInUse() error {
	if t.dev != "" {
		if err := CheckDeviceNotInUse(t.dev); err != nil {
			return err
		}
	} else if err := notInUse(t.path); err != nil {
		return err
	}
	_, err := Qcow2Info(t.image, false)
	return err
}

func (t *qcow2Target) Current() (*State, bool, error) {
	data, err := readQcow2Raw(t.image, t.info)
	if err != nil {
		return nil, false, err
	}
	if IsZero(data) {
		return nil, true, nil
	}
	st, err := readQcow2State(t.path, t.image, t.dev)
	return st, false, err
}

func (t *qcow2Target) writes(Image) []Write {
	if t.dev != "" {
		return []Write{{Path: t.dev}}
	}
	mode := fs.FileMode(0)
	if fi, err := os.Stat(t.path); err == nil {
		mode = fi.Mode().Perm()
	}
	return []Write{{Path: t.path, Mode: mode}}
}

// fit lays a linear image out to exactly size bytes: padded with zeros, or
// without zero padding beyond it.
func fit(image []byte, size int64, where string) ([]byte, error) {
	if need := linearExtent(image); int64(need) > size {
		return nil, fmt.Errorf("%s is %d bytes, smaller than the state (%d bytes); give it a volume of at least that size", where, size, need)
	}
	if int64(len(image)) > size && !IsZero(image[size:]) {
		return nil, fmt.Errorf("%s is %d bytes, smaller than the state", where, size)
	}
	data := make([]byte, size)
	copy(data, image)
	return data, nil
}

func (t *qcow2Target) replace(img Image, opt UnwrapOptions, fresh bool) (string, error) {
	return t.put(img.Files[""], !fresh, true, opt.BackupDir, opt.Owner)
}

func (t *qcow2Target) rewrite(st *State, files map[string][]byte, keep bool, backupDir string) ([]string, error) {
	backup, err := t.put(files[""], true, keep, backupDir, nil)
	if backup == "" {
		return nil, err
	}
	return []string{backup}, err
}

// put writes the linear image into the qcow2 image. backup keeps what the
// image was (0600, in backupDir) first; without keep that copy is removed
// once the new state reads back. A file is written as a copy beside it,
// renamed into place (a killed write leaves the image as it was); a block
// device is written in place, like a raw one.
func (t *qcow2Target) put(image []byte, backup, keep bool, backupDir string, own *Owner) (string, error) {
	data, err := fit(image, t.info.VirtualSize, t.path)
	if err != nil {
		return "", err
	}
	if backupDir == "" {
		backupDir = "."
	}
	keepOld := func() (string, error) {
		if !backup {
			return "", nil
		}
		if err := atomicfile.MkdirAll(backupDir); err != nil {
			return "", fmt.Errorf("keeping a backup of %s before writing it: %w", t.path, err)
		}
		name := atomicfile.BackupName(filepath.Join(backupDir, filepath.Base(t.path)), time.Now())
		if err := copyFile(t.image, name); err != nil {
			os.Remove(name)
			return "", fmt.Errorf("keeping a backup of %s before writing it: %w", t.path, err)
		}
		return name, nil
	}
	done := func(b string, err error) (string, error) {
		if err != nil {
			if b != "" {
				return b, fmt.Errorf("%w; what %s held before is in %s", err, t.path, b)
			}
			return "", err
		}
		if b != "" && !keep {
			if err := os.Remove(b); err != nil {
				return b, fmt.Errorf("%s was written, but its backup %s could not be removed: %w", t.path, b, err)
			}
			b = ""
		}
		return b, nil
	}
	if t.dev != "" {
		f, err := openDeviceNotInUse(t.dev)
		if err != nil {
			return "", err
		}
		defer f.Close()
		b, err := keepOld()
		if err != nil {
			return "", err
		}
		return done(b, writeQcow2Raw(t.dev, "", data))
	}
	fi, err := os.Stat(t.path)
	if err != nil {
		return "", err
	}
	cp := tempPrefix(t.path) + fmt.Sprintf("%d", time.Now().UnixNano())
	if err := copyFile(t.path, cp); err != nil {
		os.Remove(cp)
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			os.Remove(cp)
		}
	}()
	if err := writeQcow2Raw(cp, t.path, data); err != nil {
		return "", err
	}
	if err := os.Chmod(cp, fi.Mode().Perm()); err != nil {
		return "", err
	}
	if err := KeepOwner(cp, fi); err != nil {
		return "", err
	}
	if err := own.apply(cp); err != nil {
		return "", err
	}
	b, err := keepOld()
	if err != nil {
		return "", err
	}
	if err := os.Rename(cp, t.path); err != nil {
		return done(b, err)
	}
	ok = true
	return done(b, atomicfile.SyncDir(filepath.Dir(t.path)))
}

// copyFile copies src to the new file dst (0600), synced.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := atomicfile.CreateExcl(dst, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// A qcow2 image keeps its mode; --chown gives it its owner.
func (t *qcow2Target) fixes(_ Image, own *Owner) []Fix {
	if t.dev != "" {
		return nil
	}
	if f, ok := needsFix(t.path, 0, own); ok {
		return []Fix{f}
	}
	return nil
}

// --- the plan ---

// UnwrapOptions say how an unwrap may replace what a target holds.
type UnwrapOptions struct {
	// Force allows replacing a target that holds a state or other data
	// (anything but nothing or zeros); it is kept as a backup first.
	Force bool
	// BackupDir is where a block device's or qcow2 image's old contents
	// are kept (0600); a directory or file is kept beside itself.
	BackupDir string
	// Owner is given to what is written (--chown), nil for none.
	Owner *Owner
}

// Plan is what an unwrap will do at its target: what is written where,
// what is kept, what earlier killed runs left that is removed; or that
// the state is there already and only its owner and modes are set.
type Plan struct {
	Target Target
	// Writes are the files written, with their modes (none when the state
	// is in place).
	Writes []Write
	// InPlace: the target holds the state already; Fixes are what is left
	// to set on it.
	InPlace bool
	Fixes   []Fix
	// Fresh: the target holds nothing yet; else what it holds is kept as
	// a backup (in BackupDir for a device or qcow2 image).
	Fresh     bool
	BackupDir string
	// Leftovers are what earlier guardctl runs that were stopped left
	// beside the target; they are removed.
	Leftovers []string

	img Image
	opt UnwrapOptions
}

// PlanUnwrap plans putting img at path. It refuses (with the reason) a
// target that cannot take the state, one in use, and one that holds
// something else without opt.Force.
func PlanUnwrap(path string, img Image, opt UnwrapOptions) (*Plan, error) {
	t, err := OpenTarget(path, img.Layout, img.Source)
	if err != nil {
		return nil, err
	}
	if opt.Owner != nil && (t.Kind() == TargetDevice || t.Device() != "") {
		return nil, &TargetError{Msg: fmt.Sprintf("%s is a block device: it keeps its owner, --chown does not apply", path)}
	}
	p := &Plan{Target: t, img: img, opt: opt, Leftovers: Leftovers(path)}
	if t.Kind() == TargetDevice || t.Kind() == TargetQcow2 {
		p.BackupDir = opt.BackupDir
	}
	st, fresh, curErr := t.Current()
	if curErr != nil && errors.Is(curErr, ErrInUse) {
		return nil, curErr
	}
	if curErr == nil && st != nil && holds(st, img) {
		p.InPlace = true
		p.Fixes = t.fixes(img, opt.Owner)
		if len(p.Fixes) > 0 || len(p.Leftovers) > 0 {
			if err := t.CheckNotInUse(); err != nil {
				return nil, err
			}
		}
		return p, nil
	}
	p.Fresh = fresh
	if !fresh && !opt.Force {
		if t.Kind() == TargetDevice || t.Device() != "" {
			return nil, fmt.Errorf("%s: %w", path, ErrDeviceHoldsData)
		}
		if t.Kind() == TargetQcow2 {
			return nil, fmt.Errorf("the qcow2 image %s: %w", path, ErrDeviceHoldsData)
		}
		return nil, fmt.Errorf("%s already holds a state: %w", path, atomicfile.ErrExists)
	}
	// A state a running swtpm uses would be written over by it.
	if err := t.CheckNotInUse(); err != nil {
		return nil, err
	}
	p.Writes = t.writes(img)
	return p, nil
}

// Changes reports whether applying the plan changes anything.
func (p *Plan) Changes() bool {
	return !p.InPlace || len(p.Fixes) > 0 || len(p.Leftovers) > 0
}

// Apply does what the plan says. backup is where the target's old
// contents are kept, if they are.
func (p *Plan) Apply() (backup string, err error) {
	if err := removeLeftovers(p.Leftovers); err != nil {
		return "", err
	}
	if p.InPlace {
		for _, f := range p.Fixes {
			if err := f.apply(); err != nil {
				return "", err
			}
		}
		return "", nil
	}
	return p.Target.replace(p.img, p.opt, p.Fresh)
}

// holds reports whether st is img's state: the same swtpm blobs and, for
// a directory, the same other files.
func holds(st *State, img Image) bool {
	blobs, err := BlobsOf(img.Layout, img.Files)
	if err != nil || !st.HoldsBlobs(img.Layout, blobs) {
		return false
	}
	if img.Layout != LayoutDir {
		return true
	}
	others := 0
	for name, data := range img.Files {
		if _, isBlob := blobOfFile(name); isBlob {
			continue
		}
		others++
		if have, ok := st.Others[name]; !ok || !bytes.Equal(have, data) {
			return false
		}
	}
	return others == len(st.Others)
}

func blobOfFile(name string) (string, bool) {
	for _, n := range blobNames {
		if dirFile(n) == name {
			return n, true
		}
	}
	return "", false
}

// Rewrite writes files (as State.Files gives them) to the state st in
// place, each keeping its owner and mode; with keep the previous files are
// kept as backups (for a block device or qcow2 image, in backupDir).
func Rewrite(st *State, files map[string][]byte, keep bool, backupDir string) ([]string, error) {
	t := TargetOf(st)
	if err := removeLeftovers(Leftovers(st.Path)); err != nil {
		return nil, err
	}
	return t.rewrite(st, files, keep, backupDir)
}

// holdsDataError is ErrDeviceHoldsData: a kind of atomicfile.ErrExists, so
// that the command asks for --force.
type holdsDataError struct{}

func (holdsDataError) Error() string {
	return "it holds data (a state or something else), not the zeros of a fresh volume, and is replaced only with --force"
}
func (holdsDataError) Is(target error) bool { return target == atomicfile.ErrExists }

// backupSuffix matches what atomicfile.BackupName adds to a name.
var backupSuffix = regexp.MustCompile(`\.\d{8}T\d{6}Z-[0-9a-f]{6}\.bak$`)

// Backups lists the backups guardctl kept of the state st's files by
// earlier runs: PATH.TIME-XXXXXX.bak beside each of swtpm's files (a
// directory's, or the state file itself), or, for a block device or qcow2
// image, NAME.TIME-XXXXXX.bak in backupDir.
func Backups(st *State, backupDir string) []string {
	var of []string
	switch {
	case st.Device != "" || st.Image != nil:
		if backupDir == "" {
			backupDir = "."
		}
		of = []string{filepath.Join(backupDir, filepath.Base(st.Path))}
	case st.Layout == LayoutDir:
		for _, n := range st.Names() {
			of = append(of, filepath.Join(st.Path, dirFile(n)))
		}
	default:
		of = []string{st.Path}
	}
	var out []string
	for _, path := range of {
		probe := atomicfile.BackupName(path, time.Time{})
		prefix := probe[:len(probe)-len(backupSuffix.FindString(probe))]
		matches, _ := filepath.Glob(globEscape(prefix) + ".*.bak")
		for _, m := range matches {
			if fi, err := os.Lstat(m); err == nil && fi.Mode().IsRegular() && backupSuffix.MatchString(m) && len(m)-len(backupSuffix.FindString(m)) == len(prefix) {
				out = append(out, m)
			}
		}
	}
	slices.Sort(out)
	return out
}

// globEscape quotes the characters filepath.Match gives a meaning.
func globEscape(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}

// RemoveFiles removes paths (the backups Backups listed).
func RemoveFiles(paths []string) error {
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

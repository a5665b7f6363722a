package vtpm

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/guardctl/guardctl/internal/atomicfile"
)

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
	// A qemu-storage-daemon started meanwhile would go on writing the
	// image the rename replaces.
	if err := t.CheckNotInUse(); err != nil {
		return done(b, err)
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

package vtpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/guardctl/guardctl/internal/atomicfile"
)

// A linear state may live on a block device: on Proxmox VE, the tpmstate
// volume of local-lvm, ZFS or Ceph storage is a block device, and
// 'pvesm path' names a symbolic link to it (/dev/pve/vm-100-disk-1 ->
// ../dm-3). Such a state is read like a file and written in place.

// MaxDeviceSize bounds a block device taken as a linear state: Proxmox's
// tpmstate volumes are 4 MiB (a storage may round up to its extent size).
// A larger device is most likely the wrong one, and is refused.
const MaxDeviceSize = 64 << 20

// isBlockDevice reports whether fi is a block device.
func isBlockDevice(fi fs.FileInfo) bool {
	return fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice == 0
}

// ResolveDevice returns the block device path names: path itself when it
// is one, or, when path is a symbolic link, its target, which must be a
// block device itself (one link only, as Proxmox's volume links are). ok
// is false, with no error, when path does not exist or is neither; a link
// to anything else is an error.
func ResolveDevice(path string) (dev string, ok bool, err error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if isBlockDevice(fi) {
		return path, true, nil
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return "", false, nil
	}
	target, err := os.Readlink(path)
	if err != nil {
		return "", false, err
	}
	if !filepath.IsAbs(target) {
		// Relative to the link's real directory, as the kernel reads it.
		dir, err := filepath.EvalSymlinks(filepath.Dir(path))
		if err != nil {
			return "", false, err
		}
		target = filepath.Join(dir, target)
	}
	ti, err := os.Lstat(target)
	if err != nil {
		return "", false, fmt.Errorf("%s is a symbolic link to %s, which cannot be read (%w); refusing to write through it", path, target, err)
	}
	if !isBlockDevice(ti) {
		return "", false, fmt.Errorf("%s is a symbolic link to %s, which is not a block device; refusing to write through it", path, target)
	}
	return target, true, nil
}

// readDevice reads a whole block device, bounded by MaxDeviceSize.
// readDevicePath reads the whole block device dev, named name in errors.
func readDevicePath(dev, name string) ([]byte, error) {
	f, err := os.Open(dev)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readDevice(f, name)
}

func readDevice(f *os.File, name string) ([]byte, error) {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	if size > MaxDeviceSize {
		return nil, errorf(KindInvalid, "%s is a block device of %d bytes, larger than a TPM state volume may be (%d): is it the right device?", name, size, MaxDeviceSize)
	}
	data := make([]byte, size)
	if _, err := f.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return data, nil
}

// IsZero reports whether data is all zeros: a freshly allocated volume,
// which holds no state.
func IsZero(data []byte) bool {
	for len(data) > 0 {
		n := min(len(data), 4096)
		if !bytes.Equal(data[:n], zeros[:n]) {
			return false
		}
		data = data[n:]
	}
	return true
}

var zeros [4096]byte

// linearExtent is where the last section of a linear image ends: the bytes
// a device must hold.
func linearExtent(image []byte) int {
	end := linearHdrSize
	if len(image) < linearHdrSize {
		return len(image)
	}
	for i := range linearSlots {
		s := image[12+i*12:]
		off, section := int(binary.LittleEndian.Uint32(s)), int(binary.LittleEndian.Uint32(s[8:]))
		if off != 0 && off+section > end {
			end = off + section
		}
	}
	return end
}

// DeviceOptions say how WriteDevice may replace what a device holds.
type DeviceOptions struct {
	// Force allows replacing a device that holds anything but zeros.
	Force bool
	// BackupDir is where the old contents are kept (0600) before the
	// device is written; BackupName names the file (a timestamp and
	// random suffix are added).
	BackupDir, BackupName string
	// KeepBackup keeps the backup once the new contents read back; without
	// it the backup is removed then (it is needed only until then).
	KeepBackup bool
}

// ErrDeviceHoldsData is returned for a device that holds something other
// than zeros, without DeviceOptions.Force.
// It is a kind of atomicfile.ErrExists.
var ErrDeviceHoldsData error = holdsDataError{}

// writeDevice is WriteDevice once the device is open for writing.
func writeDevice(f *os.File, dev string, image []byte, opt DeviceOptions) (backup string, err error) {
	old, err := readDevice(f, dev)
	if err != nil {
		return "", err
	}
	size := len(old)
	if need := linearExtent(image); size < need {
		return "", fmt.Errorf("%s is %d bytes, smaller than the state (%d bytes); give it a volume of at least that size", dev, size, need)
	}
	// The image is padded with zeros to the device's size, or loses zero
	// padding beyond it: everything outside swtpm's sections is zeros.
	data := make([]byte, size)
	copy(data, image)
	if len(image) > size && !IsZero(image[size:]) {
		return "", fmt.Errorf("%s is %d bytes, smaller than the state", dev, size)
	}
	if !IsZero(old) {
		if !opt.Force {
			return "", fmt.Errorf("%s: %w", dev, ErrDeviceHoldsData)
		}
		dir := opt.BackupDir
		if dir == "" {
			dir = "."
		}
		name := opt.BackupName
		if name == "" {
			name = filepath.Base(dev)
		}
		if err := atomicfile.MkdirAll(dir); err != nil {
			return "", fmt.Errorf("keeping a backup of %s before writing it: %w", dev, err)
		}
		backup = atomicfile.BackupName(filepath.Join(dir, name), time.Now())
		if _, err := atomicfile.WriteFile(backup, old, 0o600, atomicfile.Options{}); err != nil {
			return "", fmt.Errorf("keeping a backup of %s before writing it: %w", dev, err)
		}
	}
	fail := func(err error) (string, error) {
		if backup != "" {
			return backup, fmt.Errorf("%w; what %s held before is in %s", err, dev, backup)
		}
		return "", err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		return fail(fmt.Errorf("writing %s: %w", dev, err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("writing %s: %w", dev, err))
	}
	dropCache(f)
	back := make([]byte, size)
	if _, err := f.ReadAt(back, 0); err != nil && !errors.Is(err, io.EOF) {
		return fail(fmt.Errorf("reading %s back: %w", dev, err))
	}
	if !bytes.Equal(back, data) {
		return fail(fmt.Errorf("%s does not read back what was written to it", dev))
	}
	if backup != "" && !opt.KeepBackup {
		if err := os.Remove(backup); err != nil {
			return backup, fmt.Errorf("%s was written, but its backup %s could not be removed: %w", dev, backup, err)
		}
		backup = ""
	}
	return backup, nil
}

// DeviceFresh reports whether the block device dev holds only zeros (a
// freshly allocated volume, which holds no state).
func DeviceFresh(dev string) (bool, error) {
	data, err := readDevicePath(dev, dev)
	if err != nil {
		return false, err
	}
	return IsZero(data), nil
}

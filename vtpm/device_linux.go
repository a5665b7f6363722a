//go:build linux

package vtpm

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// WriteDevice writes a linear state image onto the block device dev in
// place: refused while the device is in use (opened exclusively by the
// kernel or another program, as a mounted or device-mapper-held device is,
// which O_EXCL tells on Linux; or locked by a swtpm), when it is smaller
// than the state, and, without opt.Force, when it holds anything but
// zeros. What it held is kept as a 0600 backup first; the device is then
// written, synced, read back from the device (not the page cache) and
// compared. It returns the backup's path, if one is kept.
func WriteDevice(dev string, image []byte, opt DeviceOptions) (backup string, err error) {
	f, err := openDeviceNotInUse(dev)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return writeDevice(f, dev, image, opt)
}

// CheckDeviceNotInUse refuses the block device dev while it is in use, as
// WriteDevice does before it writes: for a dry run, and before anything
// else is done.
func CheckDeviceNotInUse(dev string) error {
	f, err := openDeviceNotInUse(dev)
	if err != nil {
		return err
	}
	return f.Close()
}

// openDeviceNotInUse opens dev exclusively for writing, refused while it
// is in use.
func openDeviceNotInUse(dev string) (*os.File, error) {
	f, err := os.OpenFile(dev, os.O_RDWR|os.O_EXCL, 0)
	if errors.Is(err, syscall.EBUSY) {
		return nil, fmt.Errorf("%s is in use (mounted, held by device-mapper or opened exclusively by another program); refusing to write it", dev)
	}
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*os.File, error) {
		f.Close()
		return nil, err
	}
	if held, err := lockHeld(dev); err != nil {
		return fail(err)
	} else if held {
		return fail(fmt.Errorf("%s: %w: a process holds a lock on it", dev, ErrInUse))
	}
	// swtpm opens a linear state without O_EXCL and may not lock it: a
	// process that has the device open is found in /proc.
	if pid, name, err := openBy(dev); err != nil {
		return fail(err)
	} else if pid != 0 {
		return fail(fmt.Errorf("%s: %w: process %d (%s) has it open", dev, ErrInUse, pid, name))
	}
	return f, nil
}

// sameBlockDevice reports whether a and b are block devices with the same
// device number: the same device, whichever node names it.
func sameBlockDevice(a, b os.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && isBlockDevice(a) && isBlockDevice(b) && sa.Rdev == sb.Rdev
}

// dropCache drops the device's cached pages, so that what is read next
// comes from the device.
func dropCache(f *os.File) {
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

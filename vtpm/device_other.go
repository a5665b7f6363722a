//go:build !linux

package vtpm

import (
	"errors"
	"os"
)

// WriteDevice is supported on Linux only, where Proxmox keeps its volumes
// and where O_EXCL tells whether a block device is in use.
func WriteDevice(dev string, image []byte, opt DeviceOptions) (string, error) {
	return "", errors.New(dev + ": writing a state to a block device is supported on Linux only")
}

// CheckDeviceNotInUse: writing a block device is refused anyway here.
func CheckDeviceNotInUse(string) error { return nil }

func dropCache(*os.File) {}

// openDeviceNotInUse: writing a block device is supported on Linux only.
func openDeviceNotInUse(dev string) (*os.File, error) {
	return nil, errors.New(dev + ": writing a state to a block device is supported on Linux only")
}

var _ = writeDevice

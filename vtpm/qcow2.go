package vtpm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Proxmox VE 9 keeps a VM's tpmstate0 in a qcow2 image on directory
// storage, and on LVM storage with snapshot-as-volume-chain (a block
// device holding qcow2); qemu-storage-daemon exports it to swtpm as a
// linear state file. guardctl reads and writes such images only through
// qemu-img, which every Proxmox host has: the state inside is read as raw
// bytes (qemu-img convert -O raw, through a private directory) and written
// back into the image (qemu-img convert -n), so that the image keeps its
// format, virtual size, backing file and internal snapshots.

// ImageInfo is what qemu-img info says about a qcow2 image.
type ImageInfo struct {
	Format        string `json:"format"`
	VirtualSize   int64  `json:"virtualSize"`
	BackingFile   string `json:"backingFile,omitempty"`
	BackingFormat string `json:"backingFormat,omitempty"`
}

// qcow2Magic starts every qcow2 image ("QFI\xfb").
var qcow2Magic = []byte{'Q', 'F', 'I', 0xfb}

func hasQcow2Magic(data []byte) bool { return bytes.HasPrefix(data, qcow2Magic) }

// isQcow2File reports whether the regular file at path starts like a qcow2
// image.
func isQcow2File(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, len(qcow2Magic))
	if _, err := io.ReadFull(f, head); err != nil {
		return false
	}
	return hasQcow2Magic(head)
}

// qemuImg runs qemu-img; its own message is the error.
func qemuImg(args ...string) ([]byte, error) { return qemuImgWith(nil, args...) }

// qemuImgWith runs qemu-img with scratch's file handed to it (as its fd 3),
// when it has one.
func qemuImgWith(scratch *rawScratch, args ...string) ([]byte, error) {
	path, err := exec.LookPath("qemu-img")
	if err != nil {
		return nil, errors.New("reading or writing a qcow2 image needs qemu-img (Debian's qemu-utils), which is not installed here")
	}
	var stderr bytes.Buffer
	cmd := exec.Command(path, args...)
	cmd.Stderr = &stderr
	if scratch != nil && scratch.inherit != nil {
		cmd.ExtraFiles = []*os.File{scratch.inherit}
	}
	out, err := cmd.Output()
	if err != nil {
		msg := strings.Join(strings.Fields(stderr.String()), " ")
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("qemu-img %s: %s", args[0], msg)
	}
	return out, nil
}

// Qcow2Info asks qemu-img about the image at path (a file or a block
// device). Without share it takes qemu's image lock as a reader would, so
// an image a qemu-storage-daemon or QEMU has open for writing is refused
// with ErrInUse.
func Qcow2Info(path string, share bool) (*ImageInfo, error) {
	args := []string{"info", "--output=json", "-f", "qcow2"}
	if share {
		args = append(args, "-U")
	}
	out, err := qemuImg(append(args, path)...)
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			return nil, fmt.Errorf("%s: %w: qemu's image lock is held (a qemu-storage-daemon or QEMU has the image open)", path, ErrInUse)
		}
		return nil, errorf(KindInvalid, "%s is not a qcow2 image qemu-img reads: %v", path, err)
	}
	var raw struct {
		Format        string `json:"format"`
		VirtualSize   int64  `json:"virtual-size"`
		Backing       string `json:"backing-filename"`
		BackingFormat string `json:"backing-filename-format"`
		Specific      struct {
			Data struct {
				DataFile string `json:"data-file"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("qemu-img info %s: %v", path, err)
	}
	if raw.Format != "qcow2" {
		return nil, errorf(KindInvalid, "%s is a %s image, not qcow2", path, raw.Format)
	}
	if raw.Specific.Data.DataFile != "" {
		// Its data lives in another file, which a write would change in
		// place whatever happens to the image: not written atomically.
		return nil, errorf(KindUnsupported, "%s keeps its data in the external file %s; guardctl handles qcow2 images that hold their own data", path, raw.Specific.Data.DataFile)
	}
	if raw.VirtualSize > MaxDeviceSize {
		return nil, errorf(KindInvalid, "%s is a qcow2 image of %d bytes, larger than a TPM state volume may be (%d): is it the right image?", path, raw.VirtualSize, MaxDeviceSize)
	}
	return &ImageInfo{Format: raw.Format, VirtualSize: raw.VirtualSize, BackingFile: raw.Backing, BackingFormat: raw.BackingFormat}, nil
}

// privateDir makes a directory only this user reads, for the raw state
// qemu-img reads or writes: beside near when it is given (so that what a
// killed run left is found and removed by the next), else in the system's
// temporary directory.
func privateDir(near string) (string, error) {
	dir, pattern := os.TempDir(), "guardctl-qcow2-"
	if near != "" {
		dir, pattern = filepath.Dir(near), filepath.Base(tempPrefix(near))
	}
	tmp, err := os.MkdirTemp(dir, pattern+"*")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return tmp, nil
}

// readQcow2Raw returns the virtual disk of the qcow2 image at path, through
// its backing chain, as qemu-img reads it.
func readQcow2Raw(path string, info *ImageInfo) ([]byte, error) {
	scratch, err := newRawScratch(info.VirtualSize, "")
	if err != nil {
		return nil, err
	}
	defer scratch.Close()
	if _, err := qemuImgWith(scratch, "convert", "-n", "-U", "-f", "qcow2", "-O", "raw", path, scratch.Name()); err != nil {
		return nil, err
	}
	data, err := scratch.ReadAll(MaxDeviceSize)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != info.VirtualSize {
		return nil, fmt.Errorf("qemu-img read %d bytes of %s, whose virtual size is %d", len(data), path, info.VirtualSize)
	}
	return data, nil
}

// readQcow2State reads the linear state in the qcow2 image at path (dev is
// the block device holding it, if any; image is what qemu-img opens).
func readQcow2State(path, image, dev string) (*State, error) {
	info, err := Qcow2Info(image, true)
	if err != nil {
		return nil, err
	}
	data, err := readQcow2Raw(image, info)
	if err != nil {
		return nil, err
	}
	if IsZero(data) {
		return nil, errorf(KindNoState, "the qcow2 image %s holds only zeros: it is a fresh volume that holds no TPM state yet (the VM has not been started with its TPM), or the state is elsewhere", path)
	}
	if !isLinear(data) {
		return nil, errorf(KindInvalid, "the qcow2 image %s does not hold a swtpm linear state", path)
	}
	blobs, err := parseLinear(data)
	if err != nil {
		return nil, err
	}
	if len(blobs["permall"]) == 0 {
		return nil, errorf(KindNoState, "the linear state in %s holds no TPM state yet: the TPM was never set up (swtpm_setup), or the state was lost", path)
	}
	st := &State{Path: path, Layout: LayoutLinear, Blobs: blobs, Size: len(data), Device: dev, Image: info}
	if fi, err := os.Stat(image); err == nil && dev == "" {
		st.Modes = map[string]os.FileMode{"": fi.Mode().Perm()}
	}
	return st, nil
}

// writeQcow2Raw writes data (the image's whole virtual size) into the qcow2
// image at image: qemu-img reads the raw bytes from a scratch file (in
// memory where the system has memfd, else in a private directory beside
// near) and writes them into the existing image, which keeps its format,
// size and backing file. What was written is read back and compared.
func writeQcow2Raw(image, near string, data []byte) error {
	scratch, err := newRawScratch(int64(len(data)), near)
	if err != nil {
		return err
	}
	defer scratch.Close()
	if err := scratch.Fill(data); err != nil {
		return err
	}
	if _, err := qemuImgWith(scratch, "convert", "-n", "-f", "raw", "-O", "qcow2", scratch.Name(), image); err != nil {
		return err
	}
	if err := syncPath(image); err != nil {
		return err
	}
	info, err := Qcow2Info(image, false)
	if err != nil {
		return err
	}
	back, err := readQcow2Raw(image, info)
	if err != nil {
		return fmt.Errorf("reading %s back: %w", image, err)
	}
	if !bytes.Equal(back, data) {
		return fmt.Errorf("%s does not read back what was written to it", image)
	}
	return nil
}

// syncPath fsyncs the file or device at path.
func syncPath(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

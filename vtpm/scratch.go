package vtpm

import (
	"io"
	"os"
	"path/filepath"
)

// rawScratch is where the raw bytes of a qcow2 image's virtual disk pass
// between guardctl and qemu-img: plain state, so it is kept off the disk
// where the system allows (an anonymous memory file, handed to qemu-img as
// its fd 3 and named /proc/self/fd/3), else in a private (0700) directory,
// beside the image when it is written, that a killed run's successor
// removes.
type rawScratch struct {
	f       *os.File
	name    string // the path qemu-img opens
	inherit *os.File
	dir     string // the private directory, when one was made
}

func newRawScratch(size int64, near string) (*rawScratch, error) {
	if f, ok := memFile(); ok {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, err
		}
		return &rawScratch{f: f, name: "/proc/self/fd/3", inherit: f}, nil
	}
	dir, err := privateDir(near)
	if err != nil {
		return nil, err
	}
	name := filepath.Join(dir, "state.raw")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		err = f.Truncate(size)
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		os.RemoveAll(dir)
		return nil, err
	}
	return &rawScratch{f: f, name: name, dir: dir}, nil
}

// Name is the path qemu-img opens the scratch file by.
func (s *rawScratch) Name() string { return s.name }

// Fill writes data at the start of the scratch file.
func (s *rawScratch) Fill(data []byte) error {
	_, err := s.f.WriteAt(data, 0)
	return err
}

// ReadAll reads the scratch file whole, up to limit bytes.
func (s *rawScratch) ReadAll(limit int64) ([]byte, error) {
	fi, err := s.f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, errorf(KindInvalid, "the image's virtual disk is larger than %d bytes", limit)
	}
	data := make([]byte, fi.Size())
	if _, err := s.f.ReadAt(data, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return data, nil
}

// Close drops the scratch file, and its directory if it has one.
func (s *rawScratch) Close() error {
	err := s.f.Close()
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
	return err
}

//go:build linux

package vtpm

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

const unixOFDGetLk = unix.F_OFD_GETLK

// openBy returns a process other than this one that has one of the files
// at paths open (its PID and command name), or 0. Processes whose /proc
// entries this user cannot read are skipped.
func openBy(paths ...string) (int, string, error) {
	var wants []os.FileInfo
	for _, path := range paths {
		want, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // gone meanwhile: no one has it open
		}
		if err != nil {
			return 0, "", err
		}
		wants = append(wants, want)
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, "", nil // no /proc: nothing more can be known
	}
	self := os.Getpid()
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		fdDir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			fi, err := os.Stat(filepath.Join(fdDir, fd.Name()))
			if err != nil {
				continue
			}
			for _, want := range wants {
				if os.SameFile(fi, want) || sameBlockDevice(fi, want) {
					comm, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "comm"))
					return pid, strings.TrimSpace(string(comm)), nil
				}
			}
		}
	}
	return 0, "", nil
}

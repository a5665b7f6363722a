//go:build linux

package vtpm

import "golang.org/x/sys/unix"

const unixOFDGetLk = unix.F_OFD_GETLK

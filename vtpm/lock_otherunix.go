//go:build unix && !linux

package vtpm

import "golang.org/x/sys/unix"

// Without open-file-description locks, F_GETLK still reports another
// process's lock.
const unixOFDGetLk = unix.F_GETLK

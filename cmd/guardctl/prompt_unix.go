//go:build unix

package main

import (
	"bytes"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// terminalAnswers asks the terminal on in and out for the cursor position,
// as the prompt library does before every prompt, and reports whether it
// answered within timeout. The library waits for the answer forever, and
// some terminals never give one (script(1) with piped input, CI "tty"
// modes).
func terminalAnswers(in, out *os.File, timeout time.Duration) bool {
	fd := int(in.Fd())
	old, err := term.MakeRaw(fd)
	if err != nil {
		return false
	}
	defer term.Restore(fd, old)
	if _, err := out.WriteString("\x1b[6n"); err != nil {
		return false
	}
	deadline := time.Now().Add(timeout)
	var got []byte
	buf := make([]byte, 64)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left/time.Millisecond)+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			return false
		}
		m, err := unix.Read(fd, buf)
		if err != nil || m <= 0 {
			return false
		}
		got = append(got, buf[:m]...)
		// The answer is ESC [ row ; col R.
		if i := bytes.Index(got, []byte("\x1b[")); i >= 0 && bytes.IndexByte(got[i:], 'R') > 0 {
			return true
		}
	}
}

//go:build unix

package e2e

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSilentTerminal runs the prompts on a pseudo-terminal that never
// answers the cursor-position query (as script(1) with piped input and
// some CI "tty" modes): guardctl gives up waiting and refuses as it does
// without a terminal, instead of hanging.
func TestSilentTerminal(t *testing.T) {
	store := t.TempDir()
	if _, e, code := runGuardctl(t, store, "guardian", "create", "g", "--host", "h"); code != 0 {
		t.Fatal(e)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"guardian", "remove", "g"}, "pass --yes to confirm"},
		{[]string{"guardian", "export", "g", "--dir", t.TempDir()}, "pass --password-file FILE"},
	} {
		// The clock starts before guardctl does, so that the time it
		// waited is never over-counted by a slow start.
		start := time.Now()
		cmd, screen, _ := startOnTerminal(t, store, tc.args...)
		var mu sync.Mutex
		var seen bytes.Buffer
		readAll := make(chan struct{})
		go func() { // read what guardctl writes; never answer
			defer close(readAll)
			b := make([]byte, 4096)
			for {
				n, err := screen.ptmx.Read(b)
				mu.Lock()
				seen.Write(b[:n])
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%v: still waiting for the terminal after 30s", tc.args)
		}
		took := time.Since(start)
		select { // the last lines may still be in the terminal
		case <-readAll:
		case <-time.After(5 * time.Second):
		}
		mu.Lock()
		out := seen.String()
		mu.Unlock()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitUsage {
			t.Errorf("%v: %v, want exit %d\n%s", tc.args, err, exitUsage, out)
		}
		if !strings.Contains(out, "the terminal did not answer") || !strings.Contains(out, tc.want) {
			t.Errorf("%v: the terminal shows:\n%s", tc.args, out)
		}
		if took < terminalTimeout {
			t.Errorf("%v: gave up after %v, before the %v timeout", tc.args, took, terminalTimeout)
		}
	}
	if _, _, code := runGuardctl(t, store, "guardian", "show", "g"); code != 0 {
		t.Fatal("the guardian is gone although nobody confirmed")
	}
}

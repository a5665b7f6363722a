//go:build unix

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/guardctl/guardctl/internal/testenv"
)

// guardctlCmd runs guardctl (built by TestMain) on store; a test that
// set fakeWindowsEnv gets the build with the test hooks, whose --store
// hyperv is over that fake of Windows.
func guardctlCmd(t *testing.T, store string, args ...string) *exec.Cmd {
	t.Helper()
	exe := guardctlBin
	if os.Getenv(fakeWindowsEnv) != "" {
		exe = hookedGuardctl(t)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "GUARDCTL_STORE="+store, "GUARDCTL_PASSWORD=")
	return cmd
}

func runGuardctl(t *testing.T, store string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := guardctlCmd(t, store, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// listed returns the guardians list -o json reports.
func listed(t *testing.T, store string) []guardianView {
	t.Helper()
	out, errOut, code := runGuardctl(t, store, "guardian", "list", "-o", "json")
	if code != 0 {
		t.Fatalf("guardian list: exit %d: %s", code, errOut)
	}
	var views []guardianView
	if err := json.Unmarshal([]byte(out), &views); err != nil {
		t.Fatalf("guardian list -o json: %v\n%s", err, out)
	}
	return views
}

// TestPromptThroughTerminal answers guardctl's password prompts on a
// pseudo-terminal, as a person would, and checks that the prompts go to the
// terminal (standard error), never to standard output.
func TestPromptThroughTerminal(t *testing.T) {
	store := t.TempDir()
	if _, e, code := runGuardctl(t, store, "guardian", "create", "g", "--host", "h"); code != 0 {
		t.Fatal(e)
	}
	dir := t.TempDir()
	cmd, screen, stdout := startOnTerminal(t, store, "guardian", "export", "g", "--dir", dir, "-o", "json")
	screen.waitFor("Password for g-signing.pfx and g-encryption.pfx")
	screen.type_("hunter2-but-longer\r")
	screen.waitFor("Enter it again")
	screen.type_("hunter2-but-longer\r")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("export through the terminal: %v\nscreen:\n%s", err, screen.text())
	}
	if strings.Contains(screen.text(), "hunter2") {
		t.Errorf("the password was echoed:\n%s", screen.text())
	}
	var res exportResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || len(res.Files) != 2 {
		t.Fatalf("standard output is not the JSON result alone (%v):\n%s", err, stdout.String())
	}
	testenv.Tools(t, "reading the exported PFX back", "openssl")
	out, err := exec.Command("openssl", "pkcs12", "-in", filepath.Join(dir, "g-signing.pfx"), "-passin", "pass:hunter2-but-longer", "-noout").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl cannot open the PFX with the password typed at the prompt: %v\n%s", err, out)
	}
}

// startOnTerminal starts guardctl with a pseudo-terminal as its standard
// input and error (its controlling terminal) and standard output captured.
func startOnTerminal(t *testing.T, store string, args ...string) (*exec.Cmd, *terminalScreen, *bytes.Buffer) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ptmx.Close() })
	cmd := guardctlCmd(t, store, args...)
	var stdout bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, &stdout, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	return cmd, &terminalScreen{t: t, ptmx: ptmx}, &stdout
}

// TestConfirmThroughTerminal answers guardian remove's question: no keeps
// the guardian, yes moves it to the trash.
func TestConfirmThroughTerminal(t *testing.T) {
	store := t.TempDir()
	if _, e, code := runGuardctl(t, store, "guardian", "create", "g", "--host", "h"); code != 0 {
		t.Fatal(e)
	}
	cmd, screen, _ := startOnTerminal(t, store, "guardian", "remove", "g")
	screen.waitFor(`Move guardian "g" and its private keys to the trash?`)
	screen.type_("n\r")
	if err := cmd.Wait(); err == nil {
		t.Fatal("guardian remove answered no exited 0")
	}
	screen.waitFor("cancelled; nothing was changed")
	if _, _, code := runGuardctl(t, store, "guardian", "show", "g"); code != 0 {
		t.Fatal("the guardian is gone after answering no")
	}
	cmd, screen, _ = startOnTerminal(t, store, "guardian", "remove", "g")
	screen.waitFor("to the trash?")
	screen.type_("y\r")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("guardian remove answered yes: %v\n%s", err, screen.text())
	}
	if _, _, code := runGuardctl(t, store, "guardian", "show", "g"); code != exitNotFound {
		t.Fatalf("guardian show after remove: exit %d, want %d", code, exitNotFound)
	}
}

// terminalScreen reads what guardctl writes to the terminal and answers the
// cursor-position queries the prompt library sends.
type terminalScreen struct {
	t    *testing.T
	ptmx *os.File
	mu   sync.Mutex
	buf  bytes.Buffer
	once sync.Once
}

func (s *terminalScreen) start() {
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := s.ptmx.Read(b)
			if n > 0 {
				s.mu.Lock()
				s.buf.Write(b[:n])
				s.mu.Unlock()
				if bytes.Contains(b[:n], []byte("\x1b[6n")) {
					s.ptmx.Write([]byte("\x1b[1;1R"))
				}
			}
			if err != nil {
				return
			}
		}
	}()
}

func (s *terminalScreen) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func (s *terminalScreen) waitFor(what string) {
	s.once.Do(s.start)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(s.text(), what) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.t.Fatalf("the terminal never showed %q; it shows:\n%s", what, s.text())
}

func (s *terminalScreen) type_(keys string) {
	// Let the prompt switch the terminal to raw mode before typing.
	time.Sleep(100 * time.Millisecond)
	if _, err := io.WriteString(s.ptmx, keys); err != nil {
		s.t.Fatal(err)
	}
}

// crashIterations is how many times each crash test kills its command; CI
// runs the default, GUARDCTL_CRASH_ITERATIONS asks for more (or fewer).
func crashIterations(t *testing.T) int {
	n := 100
	if v := os.Getenv("GUARDCTL_CRASH_ITERATIONS"); v != "" {
		if _, err := fmt.Sscan(v, &n); err != nil {
			t.Fatalf("GUARDCTL_CRASH_ITERATIONS=%q: %v", v, err)
		}
	}
	return n
}

// runOrKill runs cmd and kills it with SIGKILL after a random delay of up
// to maxDelay, unless it finished first. It reports whether cmd finished
// (successfully: a failure before the kill fails the test).
func runOrKill(t *testing.T, cmd *exec.Cmd, maxDelay time.Duration) bool {
	t.Helper()
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s failed before it was killed: %v\n%s", strings.Join(cmd.Args[1:], " "), err, errOut.String())
		}
		return true
	case <-time.After(time.Duration(rand.Int64N(int64(maxDelay)))):
		cmd.Process.Kill()
		return <-done == nil
	}
}

// TestConcurrentWrites runs many guardctl processes on one store at once:
// distinct creates all land, a contested name is created exactly once (the
// others get the documented "already exists"), and forced imports of one
// name (each of another guardian) each leave a whole guardian with the
// replaced ones in the trash.
func TestConcurrentWrites(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	pfxDir := t.TempDir()
	pwFile := filepath.Join(pfxDir, "pw")
	os.WriteFile(pwFile, []byte("pw"), 0o600)
	src := t.TempDir()
	const workers = 8
	for w := range workers {
		seed := fmt.Sprintf("seed%d", w)
		if _, e, code := runGuardctl(t, src, "guardian", "create", seed, "--host", "h"); code != 0 {
			t.Fatal(e)
		}
		if _, e, code := runGuardctl(t, src, "guardian", "export", seed, "--dir", pfxDir, "--password-file", pwFile); code != 0 {
			t.Fatal(e)
		}
	}
	type result struct {
		op     string
		code   int
		stderr string
	}
	results := make(chan result, workers*4)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, args := range [][]string{
				{"guardian", "create", fmt.Sprintf("own%d", w), "--host", "h"},
				{"guardian", "create", "contested", "--host", "h"},
				{"guardian", "import", "shared", "--force", "--password-file", pwFile,
					"--signing", filepath.Join(pfxDir, fmt.Sprintf("seed%d-signing.pfx", w)), "--encryption", filepath.Join(pfxDir, fmt.Sprintf("seed%d-encryption.pfx", w))},
				{"guardian", "list", "-o", "json"},
			} {
				_, e, code := runGuardctl(t, store, args...)
				results <- result{args[1] + " " + args[2], code, e}
			}
		}()
	}
	wg.Wait()
	close(results)
	contestedWins, imports := 0, 0
	for r := range results {
		switch {
		case r.op == "create contested" && r.code == 0:
			contestedWins++
		case r.op == "create contested" && r.code == exitExists && strings.Contains(r.stderr, "already exists"):
		case r.code != 0:
			t.Errorf("%s: exit %d: %s", r.op, r.code, r.stderr)
		case r.op == "import shared":
			imports++
		}
	}
	if contestedWins != 1 {
		t.Errorf("the contested name was created %d times; want exactly once", contestedWins)
	}
	views := listed(t, store)
	if len(views) != workers+2 {
		t.Errorf("the store lists %d guardians; want %d", len(views), workers+2)
	}
	for _, v := range views {
		if v.Status != "ok" {
			t.Errorf("guardian %s: %s", v.Name, v.statusText())
		}
	}
	out, _, _ := runGuardctl(t, store, "guardian", "list", "--removed", "-o", "json")
	var removed []removedView
	json.Unmarshal([]byte(out), &removed)
	if len(removed) != imports-1 {
		t.Errorf("the trash holds %d replaced guardians; %d forced imports should leave %d", len(removed), imports, imports-1)
	}
	if _, e, code := runGuardctl(t, store, "store", "check"); code != 0 {
		t.Errorf("store check: exit %d: %s", code, e)
	}
}

// TestBatchProgressOnTerminal: a batch grant draws a progress bar on a
// terminal (standard error), standard output stays empty, and it ends with
// the one closing line.
func TestBatchProgressOnTerminal(t *testing.T) {
	store, dir := t.TempDir(), t.TempDir()
	for _, g := range []string{"owner", "other"} {
		if _, e, code := runGuardctl(t, store, "guardian", "create", g, "--host", "h"); code != 0 {
			t.Fatal(e)
		}
	}
	first := filepath.Join(dir, "vm0.kp")
	if _, e, code := runGuardctl(t, store, "kp", "new", "--owner", "owner", "--out", first); code != 0 {
		t.Fatal(e)
	}
	data, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"kp", "grant", first}
	for i := 1; i < 40; i++ {
		f := filepath.Join(dir, fmt.Sprintf("vm%d.kp", i))
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, f)
	}
	cmd, screen, stdout := startOnTerminal(t, store, append(args, "--guardian", "other", "--yes", "--no-backup")...)
	screen.waitFor("guardctl: granted 40, unchanged 0, failed 0")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("kp grant: %v\n%s", err, screen.text())
	}
	text := screen.text()
	if !strings.Contains(text, "granting") || !strings.Contains(text, "/40)") || !strings.Contains(text, "\r") {
		t.Errorf("no progress bar on the terminal:\n%q", text)
	}
	if strings.Contains(text, "vm1.kp") {
		t.Errorf("one line per file without --verbose:\n%s", text)
	}
	if stdout.Len() != 0 {
		t.Errorf("standard output holds %q", stdout.String())
	}
}

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/internal/hypervfake"
	"github.com/guardctl/guardctl/internal/testhook"
)

// repoRoot is the repository, relative to this package's directory (go
// test's working directory).
const repoRoot = ".."

// exeSuffix is what a program's name ends with on this OS.
var exeSuffix = map[bool]string{true: ".exe"}[runtime.GOOS == "windows"]

// guardctlBin is the real guardctl, built once by TestMain.
var guardctlBin string

// buildDir holds what TestMain builds; it goes when the tests end.
var buildDir string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	var err error
	buildDir, err = os.MkdirTemp("", "guardctl-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(buildDir)
	guardctlBin = filepath.Join(buildDir, "guardctl"+exeSuffix)
	if err := buildGuardctl(guardctlBin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// buildGuardctl builds ../cmd/guardctl into out with go build, with the
// build tags given.
func buildGuardctl(out string, tags ...string) error {
	args := []string{"build", "-o", out}
	for _, tag := range tags {
		args = append(args, "-tags", tag)
	}
	cmd := exec.Command("go", append(args, filepath.Join(repoRoot, "cmd", "guardctl"))...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %v: %v\n%s", args, err, b)
	}
	return nil
}

var (
	hookedOnce sync.Once
	hookedBin  string
	hookedErr  error
)

// hookedGuardctl is guardctl built with the test hooks
// (cmd/guardctl/testhooks.go): --store hyperv over the fake of Windows
// that fakeWindowsEnv names, and a kill where killAtEnv says. Only the
// tests that need a hook run it; it is built the first time one asks.
func hookedGuardctl(t *testing.T) string {
	t.Helper()
	hookedOnce.Do(func() {
		hookedBin = filepath.Join(buildDir, "guardctl-testhooks"+exeSuffix)
		hookedErr = buildGuardctl(hookedBin, "guardctl_testhooks")
	})
	if hookedErr != nil {
		t.Fatal(hookedErr)
	}
	return hookedBin
}

// The test hooks' environment variables.
const (
	fakeWindowsEnv = hypervfake.Env
	killAtEnv      = testhook.KillAtEnv
)

// guardctl's exit codes (docs/cli.md).
const (
	exitFailure      = 1
	exitUsage        = 2
	exitNotFound     = 3
	exitExists       = 4
	exitVerification = 5
	exitStoreProblem = 6
)

// terminalTimeout is how long guardctl waits for a terminal to answer its
// cursor-position query before it gives up (cmd/guardctl/root.go).
const terminalTimeout = 2 * time.Second

// guardianView is what guardian list and show -o json give for a guardian
// (docs/json.md): the fields these tests read.
type guardianView struct {
	Name           string    `json:"name"`
	HasPrivateKeys bool      `json:"hasPrivateKeys"`
	Status         string    `json:"status"`
	Problem        string    `json:"problem,omitempty"`
	Warning        string    `json:"warning,omitempty"`
	DaysLeft       *int      `json:"daysLeft,omitempty"`
	Signing        *certView `json:"signing"`
	Encryption     *certView `json:"encryption"`
}

type certView struct {
	Thumbprint string `json:"thumbprint"`
}

// statusText is the status as guardian list shows it, for messages.
func (v guardianView) statusText() string {
	s := v.Status
	switch v.Status {
	case "broken":
		return "broken: " + v.Problem
	case "warning":
		return "warning: " + v.Warning
	case "expiring":
		if v.DaysLeft != nil {
			s = fmt.Sprintf("expiring in %d days", *v.DaysLeft)
		}
	}
	if v.Warning != "" {
		s += "; " + v.Warning
	}
	return s
}

// removedView is a guardian in the trash, as guardian list --removed -o
// json gives it.
type removedView struct {
	Name string `json:"name"`
}

// checkResult is store check -o json.
type checkResult struct {
	Findings []certstore.Finding `json:"findings"`
}

// exportResult is guardian export -o json.
type exportResult struct {
	Files []struct {
		Path string `json:"path"`
	} `json:"files"`
}

// Package testenv decides, in one place, what a test does when a tool it
// drives (keytool, swtpm, Wine, ...) or root is missing: on a developer's
// machine it skips, naming what is missing and what needs it; under CI
// (CI=true, set by .ci/run, which installs every tool and runs as root) it
// fails, so that nothing is silently left untested there.
//
// It is only for tests; no release build imports it.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// CI reports whether the tests run under CI (CI=true), where every tool
// and root are required.
func CI() bool { return os.Getenv("CI") == "true" }

// missing returns why what cannot run here ("" when it can): the first of
// tools not installed, or, with root, that this does not run as root.
func missing(root bool, tools []string) string {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is not installed"
		}
	}
	if root && os.Geteuid() != 0 {
		return fmt.Sprintf("running as uid %d, not root", os.Geteuid())
	}
	return ""
}

// Condition is the decision for a testscript condition: true when tools
// (and root, with root) are here; false when not, so that the script
// skips; an error under CI, which has them, so that the script fails.
// what says what needs them.
func Condition(root bool, what string, tools ...string) (bool, error) {
	why := missing(root, tools)
	if why == "" {
		return true, nil
	}
	if CI() {
		return false, fmt.Errorf("%s: %s, and CI (CI=true) has it: %s", what, why, hint(root, tools))
	}
	return false, nil
}

// Tools skips t, naming the missing tool and what needs it, unless every
// one of tools is installed; under CI it fails t instead.
func Tools(t testing.TB, what string, tools ...string) {
	t.Helper()
	need(t, false, what, tools)
}

// Root is Tools for a test that also needs to run as root.
func Root(t testing.TB, what string, tools ...string) {
	t.Helper()
	need(t, true, what, tools)
}

func need(t testing.TB, root bool, what string, tools []string) {
	t.Helper()
	why := missing(root, tools)
	switch {
	case why == "":
	case CI():
		t.Fatalf("%s: %s, and CI (CI=true) has it: %s", what, why, hint(root, tools))
	default:
		t.Skipf("%s: %s (%s; CI=true makes this a failure)", what, why, hint(root, tools))
	}
}

func hint(root bool, tools []string) string {
	var h []string
	if len(tools) > 0 {
		h = append(h, "make deps installs "+strings.Join(tools, ", "))
	}
	if root {
		h = append(h, "run as root")
	}
	return strings.Join(h, "; ")
}

// Package testhook holds points where a test binary can stop guardctl at a
// chosen instant (a kill between two steps that are otherwise too close
// together to hit). Every hook is nil, and does nothing, in guardctl itself.
package testhook

import "os"

// BetweenReplaceRenames runs in the directory store's replace of a guardian
// after the old entry went to the trash and before the new one is renamed
// into place.
var BetweenReplaceRenames func()

// KillAtEnv names the hook point at which guardctl, built with the
// guardctl_testhooks tag (../../e2e), kills itself with SIGKILL: "replace"
// is BetweenReplaceRenames (TestKillBetweenReplaceRenames).
const KillAtEnv = "GUARDCTL_TEST_KILL_AT"

// KillFromEnv sets the hook KillAtEnv names, if any, to kill this process.
func KillFromEnv() {
	if os.Getenv(KillAtEnv) == "replace" {
		BetweenReplaceRenames = func() {
			self, _ := os.FindProcess(os.Getpid())
			self.Kill() // SIGKILL on unix
		}
	}
}

//go:build guardctl_testhooks

package main

import (
	"github.com/guardctl/guardctl/internal/hypervfake"
	"github.com/guardctl/guardctl/internal/testhook"
)

// A guardctl built with -tags guardctl_testhooks, as the end-to-end tests
// in ../../e2e build it, and never a release, has the test hooks: --store
// hyperv over a fake of Windows when hypervfake.Env names one, and a kill
// at the point testhook.KillAtEnv names. Without those variables it is
// guardctl itself.
func init() {
	openStore = hypervfake.OpenStore
	testhook.KillFromEnv()
}

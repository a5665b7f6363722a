// Command guardctl keeps VMs with a virtual TPM alive across host
// reinstalls and migrations: it manages guardians, key protectors and
// software vTPM state.
package main

import (
	"os"
)

// version is set at release time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:]))
}

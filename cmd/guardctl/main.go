// Command guardctl keeps VMs with a virtual TPM alive across host
// reinstalls and migrations: it manages guardians, key protectors and
// software vTPM state.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

package keyprotector

import (
	"fmt"
	"strings"

	"github.com/guardctl/guardctl/guardian"
)

// EscrowError refuses a key protector (or a bundle's) that only TPM
// guardians of this store could open: it would die with this host's TPM
// (a firmware update that clears it, a replaced board, a lost host).
type EscrowError struct {
	// Guardians are the TPM guardians that alone could open it.
	Guardians []string
}

func (e *EscrowError) Error() string {
	return fmt.Sprintf("only %s, whose keys never leave this host's TPM, could open it: if the TPM is cleared or fails, or the host is lost, the key is lost with it",
		quoteList(e.Guardians))
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	if len(q) == 1 {
		return "guardian " + q[0]
	}
	return "guardians " + strings.Join(q, ", ")
}

// CheckEscrow refuses p when every wrapping it keeps (all but those drop
// reports, which a revoke is about to remove; nil keeps all) is for a
// guardian of local whose keys a TPM holds. One wrapping for anyone else
// (an escrow file guardian, another host) is enough.
func (p *Protector) CheckEscrow(local []*guardian.Guardian, drop func(*Wrapping) bool) error {
	var tpmOnly []string
	for _, w := range p.Wrappings {
		if drop != nil && drop(w) {
			continue
		}
		var holder *guardian.Guardian
		for _, g := range local {
			if w.Matches(g) {
				holder = g
				break
			}
		}
		if holder == nil || holder.KeyLocation() != guardian.KeysTPM {
			return nil
		}
		tpmOnly = append(tpmOnly, holder.Name)
	}
	if len(tpmOnly) == 0 {
		return nil // nothing left to open it: the owner's wrapping is never dropped
	}
	return &EscrowError{Guardians: tpmOnly}
}

package vtpm

import (
	"fmt"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/atomicfile"
	"github.com/guardctl/guardctl/keyprotector"
)

// AccessOptions control GrantFile and RevokeFile.
type AccessOptions struct {
	// Policy is what the bundle's key protector must verify under.
	Policy keyprotector.Policy
	// Backup keeps the previous bundle as PATH.TIME.bak (0600).
	Backup bool
	// DryRun reads, verifies and changes in memory, and writes nothing.
	DryRun bool
	// Rotate, for a revoke, re-encrypts the payload under a new transport
	// key wrapped for those who keep access, so that a revoked guardian
	// that kept the old key learns nothing from the new bundle.
	Rotate bool
	// Escrow, for a revoke, refuses (a *keyprotector.EscrowError) to leave
	// a bundle that only this store's TPM guardians could open.
	Escrow bool
	// KeepEarlierBackups, for a revoke, keeps the backups earlier runs left
	// that still open for the revoked guardian; without it they are
	// removed (a dry run only lists them).
	KeepEarlierBackups bool
}

// AccessResult is what GrantFile or RevokeFile did.
type AccessResult struct {
	Changed bool
	Backup  string // the backup kept, if any
	// RemovedBackups and KeptBackups are a revoke's earlier backups that
	// still open for the revoked guardian: removed (a change), or kept as
	// AccessOptions.KeepEarlierBackups asked.
	RemovedBackups, KeptBackups []string
	// Bundle is the bundle as it is now (or, in a dry run, would be).
	Bundle *Bundle
}

// GrantFile adds a wrapping for g to the key protector of the bundle file
// at path, leaving the payload as it is, in one locked
// read-verify-change-write (atomicfile.Update). identities are this
// store's guardians: the owner's private signing key and one that can
// unwrap must be among them.
func GrantFile(path string, identities []*guardian.Guardian, g *guardian.Guardian, opt AccessOptions) (AccessResult, error) {
	return changeAccess(path, identities, opt, func(p *keyprotector.Protector) (bool, []byte, error) { return p.Grant(identities, g) }, nil)
}

// RevokeFile removes from the bundle file at path the wrapping of g, or,
// when g is nil, of the guardian whose signing certificate has thumbprint
// tp (which need not be in any store), like GrantFile; with opt.Rotate the
// payload goes under a new transport key. Then the earlier backups of the
// file that still open for that guardian (its wrapping is in them, or
// after a rotation their payload is under the old transport key) are
// removed unless opt.KeepEarlierBackups: otherwise the revoke would take
// nothing away.
func RevokeFile(path string, identities []*guardian.Guardian, g *guardian.Guardian, tp string, opt AccessOptions) (AccessResult, error) {
	if g != nil {
		tp = guardian.Thumbprint(g.Signing)
	}
	var oldKey []byte
	revoke := func(p *keyprotector.Protector) (bool, []byte, error) {
		target := g
		if target == nil {
			w := p.FindThumbprint(tp)
			if w == nil {
				return false, nil, nil
			}
			target = w.Guardian(tp)
		}
		changed, kpXML, err := p.Revoke(identities, target)
		if err != nil || !changed {
			return false, nil, err
		}
		if opt.Escrow {
			left, err := keyprotector.Parse(kpXML)
			if err != nil {
				return false, nil, err
			}
			if err := left.CheckEscrow(identities, nil); err != nil {
				return false, nil, err
			}
		}
		return true, kpXML, nil
	}
	r, err := changeAccess(path, identities, opt, revoke, &oldKey)
	if err != nil {
		return r, err
	}
	stale, err := backupsOpeningFor(path, tp, oldKey)
	if err != nil {
		return r, fmt.Errorf("looking for earlier backups that still open for it: %w", err)
	}
	r.RemovedBackups, r.KeptBackups, err = atomicfile.SettleBackups(stale, r.Backup, opt.KeepEarlierBackups, opt.DryRun)
	r.Changed = r.Changed || len(r.RemovedBackups) > 0
	if err != nil {
		return r, fmt.Errorf("removing the earlier backups that still open for it: %w", err)
	}
	return r, nil
}

// changeAccess rewrites the bundle at path with its key protector changed
// by change (and, with opt.Rotate, its payload under a new transport key,
// the old one left in *oldKey when oldKey is not nil).
func changeAccess(path string, identities []*guardian.Guardian, opt AccessOptions, change func(*keyprotector.Protector) (bool, []byte, error), oldKey *[]byte) (AccessResult, error) {
	var now *Bundle
	backup, changed, err := UpdateFile(path, UpdateOptions{Backup: opt.Backup, DryRun: opt.DryRun}, func(b *Bundle) (*Bundle, error) {
		now = b
		p, err := keyprotector.Parse(b.KeyProtector)
		if err != nil {
			return nil, err
		}
		if err := p.Verify(opt.Policy); err != nil {
			return nil, err
		}
		changed, kpXML, err := change(p)
		if err != nil || !changed {
			return nil, err
		}
		next := b.Reseal(keyprotector.EncodeFile(kpXML))
		if opt.Rotate {
			var old []byte
			if next, old, err = rotate(b, kpXML, identities); err != nil {
				return nil, err
			}
			if oldKey != nil {
				*oldKey = old
			}
		}
		now = next
		return next, nil
	})
	return AccessResult{Changed: changed, Backup: backup, Bundle: now}, err
}

// rotate seals b's payload again under a new transport key, wrapped for
// the members of the key protector kpXML, and returns the old key.
func rotate(b *Bundle, kpXML []byte, identities []*guardian.Guardian) (*Bundle, []byte, error) {
	p, err := keyprotector.Parse(kpXML)
	if err != nil {
		return nil, nil, err
	}
	oldKey, _, err := p.Unwrap(identities)
	if err != nil {
		return nil, nil, err
	}
	files, err := b.Open(oldKey)
	if err != nil {
		return nil, nil, err
	}
	owner, keep, err := p.Members(identities)
	if err != nil {
		return nil, nil, err
	}
	tk := keyprotector.NewTransportKey()
	_, rotatedXML, err := keyprotector.New(tk, owner, keep)
	if err != nil {
		return nil, nil, err
	}
	modes := map[string]uint32{}
	for _, f := range b.Manifest.Files {
		modes[f.Name] = f.Mode
	}
	next, err := Seal(b.Manifest, files, modes, keyprotector.EncodeFile(rotatedXML), tk)
	return next, oldKey, err
}

package keyprotector

import (
	"fmt"
	"path/filepath"

	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/atomicfile"
)

// FileOptions control GrantFile and RevokeFile.
type FileOptions struct {
	// Policy is what the key protector read must verify under.
	Policy Policy
	// Backup keeps the previous file as PATH.TIME.bak, mode 0600. After a
	// revoke that copy still lets the revoked guardian unwrap: RevokeFile's
	// callers ask for it only when the user explicitly does.
	Backup bool
	// DryRun does all the reading, verifying and changing in memory and
	// writes nothing; the result says whether a real run would change
	// the file.
	DryRun bool
	// Batch, when set, is shared by every file of one grant or revoke:
	// what is the same for each is done once, the cryptography of
	// concurrent calls runs on at most as many goroutines as NewBatch
	// was given, and the
	// files' directories are synced once, by Batch.Sync.
	Batch *Batch
	// Escrow, for a revoke, refuses (an *EscrowError) to leave a key
	// protector that only this store's TPM guardians could open
	// (CheckEscrow over the identities given); it is checked on the file
	// as read under its lock.
	Escrow bool
	// KeepEarlierBackups, for a revoke, keeps the backups earlier runs
	// left of the file that still let the revoked guardian unwrap; without
	// it they are removed (a dry run only lists them), since a revoke that
	// leaves them takes nothing away.
	KeepEarlierBackups bool
}

// FileResult is what GrantFile or RevokeFile did.
type FileResult struct {
	Changed bool
	Backup  string // the backup kept, if any
	// RemovedBackups and KeptBackups are a revoke's earlier backups that
	// still let the revoked guardian unwrap: removed (which is a change),
	// or kept as FileOptions.KeepEarlierBackups asked.
	RemovedBackups, KeptBackups []string
}

// GrantFile adds a wrapping for g to the key protector file at path (see
// Grant) in one locked read-verify-change-write: a concurrent change of the
// same file by another guardctl is never lost (atomicfile.Update).
func GrantFile(path string, identities []*guardian.Guardian, g *guardian.Guardian, opt FileOptions) (FileResult, error) {
	return changeFile(path, opt, func(p *Protector) (bool, []byte, error) { return p.grant(identities, g, opt.Batch) })
}

// RevokeFile removes g's wrapping from the key protector file at path (see
// Revoke), like GrantFile. It keeps no copy of the old file unless
// opt.Backup.
func RevokeFile(path string, identities []*guardian.Guardian, g *guardian.Guardian, opt FileOptions) (FileResult, error) {
	return revokeFile(path, guardian.Thumbprint(g.Signing), opt, func(p *Protector) (bool, []byte, error) {
		if opt.Escrow {
			if err := p.CheckEscrow(identities, func(w *Wrapping) bool { return w.Matches(g) }); err != nil {
				return false, nil, err
			}
		}
		return p.Revoke(identities, g)
	})
}

// RevokeThumbprintFile is RevokeFile for the guardian whose signing
// certificate has thumbprint tp (see FindThumbprint), which need not be in
// any store; a file with no such wrapping is unchanged.
func RevokeThumbprintFile(path string, identities []*guardian.Guardian, tp string, opt FileOptions) (FileResult, error) {
	return revokeFile(path, tp, opt, func(p *Protector) (bool, []byte, error) {
		w := p.FindThumbprint(tp)
		if w == nil {
			return false, nil, nil
		}
		if opt.Escrow {
			if err := p.CheckEscrow(identities, func(x *Wrapping) bool { return x == w }); err != nil {
				return false, nil, err
			}
		}
		return p.Revoke(identities, w.Guardian(tp))
	})
}

// revokeFile changes the file, then deals with the earlier backups that
// still let the guardian whose signing thumbprint is tp unwrap.
func revokeFile(path, tp string, opt FileOptions, change func(*Protector) (bool, []byte, error)) (FileResult, error) {
	r, err := changeFile(path, opt, change)
	if err != nil {
		return r, err
	}
	stale, err := backupsOpeningFor(path, tp)
	if err != nil {
		return r, fmt.Errorf("looking for earlier backups that still let it unwrap: %w", err)
	}
	r.RemovedBackups, r.KeptBackups, err = atomicfile.SettleBackups(stale, r.Backup, opt.KeepEarlierBackups, opt.DryRun)
	r.Changed = r.Changed || len(r.RemovedBackups) > 0
	if err != nil {
		return r, fmt.Errorf("removing the earlier backups that still let it unwrap: %w", err)
	}
	return r, nil
}

func changeFile(path string, opt FileOptions, change func(*Protector) (bool, []byte, error)) (FileResult, error) {
	uo := atomicfile.UpdateOptions{MaxSize: MaxFileSize, Backup: opt.Backup, DryRun: opt.DryRun, DeferDirSync: opt.Batch != nil}
	if opt.Batch != nil && opt.Backup && !opt.DryRun {
		uo.StagingDir = opt.Batch.stagingDirFor(filepath.Dir(path))
	}
	backup, changed, err := atomicfile.Update(path, uo, func(old []byte) ([]byte, error) {
		return opt.Batch.work(func() ([]byte, error) {
			p, err := Parse(old)
			if err != nil {
				return nil, err
			}
			if err := p.verify(opt.Policy, opt.Batch); err != nil {
				return nil, err
			}
			changed, xml, err := change(p)
			if err != nil || !changed {
				return nil, err
			}
			return EncodeFile(xml), nil
		})
	})
	if changed && !opt.DryRun && opt.Batch != nil {
		opt.Batch.dirs.Store(filepath.Dir(path), struct{}{})
	}
	return FileResult{Changed: changed, Backup: backup}, err
}

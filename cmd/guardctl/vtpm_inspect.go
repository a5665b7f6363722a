package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/guardctl/guardctl/keyprotector"
	"github.com/guardctl/guardctl/vtpm"
	"github.com/spf13/cobra"
)

// bundleView is the JSON output of vtpm inspect, wrap, grant and revoke.
type bundleView struct {
	File         string        `json:"file"`
	Manifest     vtpm.Manifest `json:"manifest"`
	KeyProtector kpView        `json:"keyProtector"`
	// ManifestVerified: this host opened the bundle, and every payload
	// file authenticates the manifest; ManifestProblem says why not.
	ManifestVerified bool   `json:"manifestVerified"`
	ManifestProblem  string `json:"manifestProblem,omitempty"`
	// Verified: everything shown is verified (the key protector's
	// signatures and owner, and the manifest).
	Verified bool `json:"verified"`
	// Backup is the previous bundle kept by grant, or by revoke with
	// --keep-backup; BackupOpensFor says whom that copy still lets in.
	Backup         string `json:"backup,omitempty"`
	BackupOpensFor string `json:"backupOpensFor,omitempty"`
	// RemovedBackups are the earlier backups (kept by grants or revokes
	// with --keep-backup) that still opened for the guardian a revoke
	// took away, which it removed (with --dry-run: would remove);
	// KeptBackups, the same left in place with --keep-backup.
	RemovedBackups []string `json:"removedBackups,omitempty"`
	KeptBackups    []string `json:"keptBackups,omitempty"`
	manifestErr    error
	outcome
}

// readBundle reads a bundle and its key protector.
func readBundle(path string) (*vtpm.Bundle, *keyprotector.Protector, error) {
	data, err := readInput(path, vtpm.MaxBundleSize)
	if err != nil {
		return nil, nil, err
	}
	b, err := vtpm.ReadBundle(data)
	if err != nil {
		return nil, nil, inFile(path, err)
	}
	p, err := keyprotector.Parse(b.KeyProtector)
	if err != nil {
		return nil, nil, inFile(path, err)
	}
	return b, p, nil
}

// showBundle shows b and what of it this host verified: the key
// protector's signatures and owner, and the manifest, which only a host that
// can open the bundle authenticates (every payload file's AES-GCM tag covers
// the manifest's digest).
func (a *app) showBundle(path string, b *vtpm.Bundle, p *keyprotector.Protector, verr error, extra ...func(*bundleView)) (bundleView, error) {
	kv, err := a.describeKP(path, p, verr)
	if err != nil {
		return bundleView{}, err
	}
	v := bundleView{File: path, Manifest: b.Manifest, KeyProtector: kv}
	switch {
	case !kv.CanUnwrap:
		v.ManifestProblem = "this host cannot open the bundle, and only a host that can checks the manifest"
	default:
		ids, err := a.identities()
		if err != nil {
			return bundleView{}, err
		}
		tk, _, err := p.Unwrap(ids)
		if err == nil {
			_, err = b.Open(tk)
		}
		switch {
		case err != nil:
			v.ManifestProblem, v.manifestErr = err.Error(), err
		case !kv.OwnerKnown:
			// The payload authenticates the manifest under a key that
			// anyone holding this host's public guardian could have
			// wrapped: that proves nothing about who wrote it.
			v.ManifestProblem = "its owner is unknown: the payload decrypts, but anyone holding this host's public guardian could have made the bundle"
		default:
			v.ManifestVerified = true
		}
	}
	v.Verified = kv.Verified && v.ManifestVerified
	for _, f := range extra {
		f(&v)
	}
	v.outcome = a.outcome
	return v, a.print(v)
}

// writeText writes the bundle's manifest, each line marked when it is
// unverified, then its key protector.
func (v bundleView) writeText(w io.Writer) error {
	m := v.Manifest
	mark := func(s string) string {
		if !v.ManifestVerified {
			return s + "  (unverified)"
		}
		return s
	}
	vm := "-"
	if m.VM != nil {
		vm = strings.TrimSpace(m.VM.Name + " " + m.VM.UUID)
	}
	enc := "plain (not encrypted by swtpm)"
	if m.StateEncryption != nil {
		enc = fmt.Sprintf("%s, its %s is in the bundle (swtpm --key %s)", m.StateEncryption.Cipher, m.StateEncryption.Secret, m.StateEncryption.SwtpmKey("F"))
	}
	var files []string
	for _, f := range m.Files {
		files = append(files, fmt.Sprintf("%s (%d bytes)", f.Name, f.Size))
	}
	swtpm := m.SwtpmVersion
	if swtpm == "" {
		swtpm = "unknown"
	}
	manifest := "verified: every payload file decrypts and authenticates it"
	if !v.ManifestVerified {
		manifest = "UNVERIFIED: " + v.ManifestProblem
	}
	if err := writeDetails(w, [][2]string{
		{"Bundle", v.File},
		{"Manifest", manifest},
		{"Created", mark(m.CreatedAt.Format(time.RFC3339))},
		{"VM", mark(vm)},
		{"TPM", mark("TPM " + m.TPMVersion + ", " + string(m.Layout) + " layout, from swtpm " + swtpm)},
		{"State encryption", mark(enc)},
		{"Files", mark(strings.Join(files, ", "))},
	}); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return v.KeyProtector.writeText(w)
}

func newVTPMInspectCmd(a *app) *cobra.Command {
	var allowExpired bool
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "What a bundle holds, who can open it, and whether this host can",
		Long: `Show a bundle's manifest and key protector, and what of them this host verified:
the key protector's signatures, whether its owner is a guardian this store knows,
and the manifest, which only a host that can open the bundle checks (it decrypts
every payload file, whose authentication covers the manifest). What could not be
verified is marked so. Exits 0 when everything shown is verified, 5 when
something does not verify or the guardian certificates are expired (unless
--allow-expired), 8 when something shown is unverified.`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, p, err := readBundle(args[0])
			if err != nil {
				return err
			}
			verr := p.Verify(keyprotector.Policy{Now: time.Now(), AllowExpired: allowExpired})
			v, err := a.showBundle(args[0], b, p, verr)
			if err != nil {
				return err
			}
			if kindOfKP(verr) == keyprotector.KindVerification || kindOfKP(verr) == keyprotector.KindInvalid {
				return &cliError{code: exitVerification, msg: args[0] + ": " + verr.Error()}
			}
			if v.manifestErr != nil {
				return inFile(args[0], v.manifestErr)
			}
			if v.KeyProtector.NeedsAllowExpired {
				return inFile(args[0], verr)
			}
			if !v.Verified {
				what := v.KeyProtector.Unverified
				if what == "" {
					what = "the manifest: " + v.ManifestProblem
				}
				return unverifiedError(args[0], what, !v.KeyProtector.OwnerKnown)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&allowExpired, "allow-expired", false, "do not count expired guardian certificates as a problem")
	return cmd
}

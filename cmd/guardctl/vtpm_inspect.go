package main

import (
	"fmt"
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

func (a *app) showBundle(path string, b *vtpm.Bundle, p *keyprotector.Protector, verr error) error {
	kv, err := a.describeKP(path, p, verr)
	if err != nil {
		return err
	}
	if a.output == "json" {
		return writeJSON(a.stdout, bundleView{File: path, Manifest: b.Manifest, KeyProtector: kv})
	}
	m := b.Manifest
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
	if err := writeDetails(a.stdout, [][2]string{
		{"Bundle", path},
		{"Created", m.CreatedAt.Format(time.RFC3339)},
		{"VM", vm},
		{"TPM", "TPM " + m.TPMVersion + ", " + string(m.Layout) + " layout, from swtpm " + swtpm},
		{"State encryption", enc},
		{"Files", strings.Join(files, ", ")},
	}); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout)
	return a.printKP(kv)
}

func newVTPMInspectCmd(a *app) *cobra.Command {
	var allowExpired bool
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "What a bundle holds, who can open it, and whether this host can",
		Args:  exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, p, err := readBundle(args[0])
			if err != nil {
				return err
			}
			verr := p.Verify(keyprotector.Policy{Now: time.Now(), AllowExpired: allowExpired})
			if err := a.showBundle(args[0], b, p, verr); err != nil {
				return err
			}
			if kindOfKP(verr) == keyprotector.KindVerification || kindOfKP(verr) == keyprotector.KindInvalid {
				return &cliError{code: exitVerification, msg: args[0] + ": " + verr.Error()}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&allowExpired, "allow-expired", false, "do not count expired guardian certificates as a problem")
	return cmd
}

package main

import (
	"fmt"
	"os"
	"slices"

	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
	"github.com/spf13/cobra"
)

func newGuardianCreateCmd(a *app) *cobra.Command {
	var keySize, validYears int
	var host string
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Generate a guardian shaped like Hyper-V's",
		Long: `Generate a guardian: two self-signed RSA certificates with SHA-256 signatures,
"CN=Shielded VM Signing Certificate (NAME) (HOST)" (digitalSignature) and
"CN=Shielded VM Encryption Certificate (NAME) (HOST)" (keyEncipherment,
dataEncipherment), with their private keys, as New-HgsGuardian
-GenerateCertificates makes them.`,
		Example: `  guardctl guardian create UntrustedGuardian
  guardctl guardian create host-b --key-size 3072 --valid-years 5`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := validName(name); err != nil {
				return err
			}
			if !slices.Contains(guardian.KeySizes, keySize) {
				return usageError("key size %d is not supported; use 2048, 3072 or 4096", keySize)
			}
			if validYears < 1 || validYears > 100 {
				return usageError("--valid-years %d is out of range; use 1 to 100", validYears)
			}
			if host == "" {
				host, _ = os.Hostname()
			}
			st, err := a.store()
			if err != nil {
				return err
			}
			// Fail before spending seconds on key generation.
			if _, err := st.Get(name); err == nil {
				return withHint(fmt.Errorf("guardian %q %w in %s", name, certstore.ErrExists, st.Location()), exitExists,
					"choose another name, or remove the guardian first ('guardctl guardian remove "+name+"')")
			}
			a.setChanged(true)
			if a.dryRun {
				// Key generation is no check: a dry run says what it
				// would make and spends no seconds on keys.
				a.note("would create guardian %q in %s", name, st.Location())
				return a.print(nameResult{Name: name, outcome: a.outcome})
			}
			g, err := guardian.Generate(guardian.GenerateOptions{Name: name, Host: host, KeySize: keySize, ValidYears: validYears})
			if err != nil {
				return err
			}
			c, err := st.Add(g, certstore.OriginGenerated, false)
			if err != nil {
				return err
			}
			a.note("created guardian %q in %s", name, st.Location())
			a.notice(c)
			return a.showGuardian(c.Entry)
		},
	}
	f := cmd.Flags()
	f.IntVar(&keySize, "key-size", 2048, "RSA key size: 2048, 3072 or 4096")
	f.IntVar(&validYears, "valid-years", 10, "years the certificates are valid")
	f.StringVar(&host, "host", "", "host name in the certificate subjects (default: this host's name)")
	cmd.RegisterFlagCompletionFunc("key-size", cobra.FixedCompletions([]string{"2048", "3072", "4096"}, cobra.ShellCompDirectiveNoFileComp))
	a.addDryRun(cmd)
	return cmd
}

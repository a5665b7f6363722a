package main

import (
	"path/filepath"

	"github.com/guardctl/guardctl/internal/atomicfile"
	"github.com/spf13/cobra"
)

// unwrapResult is the JSON output of keyprotector unwrap: never the key.
type unwrapResult struct {
	File       string `json:"file"`
	KeyOut     string `json:"keyOut"`
	KeyBytes   int    `json:"keyBytes"`
	UnwrapWith string `json:"unwrapWith"`
	noText            // the note says it
}

func newKPUnwrapCmd(a *app) *cobra.Command {
	var keyOut string
	var force bool
	var trust trustFlags
	cmd := &cobra.Command{
		Use:   "unwrap FILE --key-out F",
		Short: "Write the transport key (mode 0600) with a local guardian",
		Long: `Unwrap the key protector (FILE, or - for standard input) with a guardian of
this store and write the key to F
(mode 0600; - writes it to standard output when that is not a terminal). Every
signature is verified first, the owner must be a guardian this store knows (its
public guardian is enough; --allow-unknown-owner accepts any), and the key is
checked against the TransportKeySignature. F is not overwritten without --force.`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyOut == "-" {
				if err := a.stdoutFor("--key-out"); err != nil {
					return err
				}
			} else {
				if err := refuseExisting(keyOut, force); err != nil {
					return err
				}
			}
			p, err := readKeyProtector(args[0])
			if err != nil {
				return err
			}
			key, by, err := a.unwrapProtector(args[0], p, trust)
			if err != nil {
				return err
			}
			if keyOut == "-" {
				_, err := a.stdout.Write(key)
				return err
			}
			if err := atomicfile.MkdirAll(filepath.Dir(keyOut)); err != nil {
				return err
			}
			if _, err := atomicfile.WriteFile(keyOut, key, 0o600, atomicfile.Options{Overwrite: force, Backup: true}); err != nil {
				return err
			}
			a.note("unwrapped %d-byte key with guardian %q into %s", len(key), by.Name, keyOut)
			return a.print(unwrapResult{File: args[0], KeyOut: keyOut, KeyBytes: len(key), UnwrapWith: by.Name})
		},
	}
	cmd.Flags().StringVar(&keyOut, "key-out", "", "file to write the key to (mode 0600), or - for standard output")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite the key file, keeping a .bak backup")
	trust.register(cmd)
	cmd.MarkFlagRequired("key-out")
	return cmd
}

package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// fileKinds are the file name extensions that complete each command's
// file arguments: key protectors are *.kp and bundles *.vtpm, as the docs
// and examples name them (any name works; completion offers these first).
var fileKinds = map[string][]string{
	"keyprotector show":   {"kp"},
	"keyprotector unwrap": {"kp"},
	"keyprotector grant":  {"kp"},
	"keyprotector revoke": {"kp"},
	"vtpm inspect":        {"vtpm"},
	"vtpm unwrap":         {"vtpm"},
	"vtpm grant":          {"vtpm"},
	"vtpm revoke":         {"vtpm"},
}

// outKinds are the kinds of the file each command's --out writes.
var outKinds = map[string][]string{
	"keyprotector new":  {"kp"},
	"keyprotector wrap": {"kp"},
	"vtpm wrap":         {"vtpm"},
}

// completeFileKinds sets the completion of the file arguments and --out
// flags in fileKinds and outKinds.
func completeFileKinds(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
		if exts, ok := fileKinds[path]; ok && c.ValidArgsFunction == nil {
			many := strings.Contains(c.Use, "FILE...")
			c.ValidArgsFunction = func(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
				if len(args) > 0 && !many {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return exts, cobra.ShellCompDirectiveFilterFileExt
			}
		}
		if exts, ok := outKinds[path]; ok {
			c.MarkFlagFilename("out", exts...)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

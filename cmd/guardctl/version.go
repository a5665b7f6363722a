package main

import (
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set at release time with -ldflags "-X main.version=… -X main.commit=…
// -X main.date=…"; a build without them takes what Go recorded (the module
// version of a 'go install …@v1.2.3', the commit and its time of a build
// in a git checkout).
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// versionInfo is the JSON output of guardctl version (docs/json.md).
type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Date      string `json:"date,omitempty"`
	Modified  bool   `json:"modified,omitempty"` // built from a work tree with changes
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"` // GOOS/GOARCH
}

// buildVersion is this binary's version.
func buildVersion() versionInfo {
	bi, _ := debug.ReadBuildInfo()
	return versionFrom(bi)
}

// versionFrom fills in what the release flags did not set from bi.
func versionFrom(bi *debug.BuildInfo) versionInfo {
	v := versionInfo{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		return v
	}
	if v.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if v.Commit == "" {
				v.Commit = s.Value
			}
		case "vcs.time":
			if v.Date == "" {
				v.Date = s.Value
			}
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	if bi.GoVersion != "" {
		v.GoVersion = bi.GoVersion
	}
	return v
}

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print guardctl's version, commit, build date and Go version",
		Long: `Print the version of this guardctl binary: the release version (or the module
version of a 'go install …@VERSION', or "dev"), the commit and its date where the
build recorded them, and the Go version and platform it was built with.
-o json gives the same for scripts.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.print(buildVersion())
		},
	}
}

// writeText writes the version as "key: value" lines.
func (v versionInfo) writeText(w io.Writer) error {
	commit := v.Commit
	if commit == "" {
		commit = "unknown"
	}
	if v.Modified {
		commit += " (modified)"
	}
	built := v.Date
	if built == "" {
		built = "unknown"
	}
	return writeDetails(w, [][2]string{
		{"guardctl", v.Version},
		{"Commit", commit},
		{"Date", built},
		{"Go", v.GoVersion + " " + v.Platform},
	})
}

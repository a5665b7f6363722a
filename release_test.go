package guardctl_test

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestReleaseConfig keeps .goreleaser.yaml what the issue asks for and in
// step with `make crossbuild`, which compiles every target it lists.
func TestReleaseConfig(t *testing.T) {
	raw, err := os.ReadFile(".goreleaser.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Version int `yaml:"version"`
		Builds  []struct {
			Main   string   `yaml:"main"`
			Env    []string `yaml:"env"`
			Goos   []string `yaml:"goos"`
			Goarch []string `yaml:"goarch"`
		} `yaml:"builds"`
		Checksum struct {
			NameTemplate string `yaml:"name_template"`
		} `yaml:"checksum"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(false)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Version != 2 || len(cfg.Builds) != 1 || cfg.Checksum.NameTemplate == "" {
		t.Fatalf("unexpected config: %+v", cfg)
	}
	b := cfg.Builds[0]
	if b.Main != "./cmd/guardctl" || !slices.Contains(b.Env, "CGO_ENABLED=0") {
		t.Errorf("build: %+v", b)
	}
	for _, os := range []string{"linux", "darwin", "windows"} {
		if !slices.Contains(b.Goos, os) {
			t.Errorf("goos lacks %s", os)
		}
	}
	for _, arch := range []string{"amd64", "arm64"} {
		if !slices.Contains(b.Goarch, arch) {
			t.Errorf("goarch lacks %s", arch)
		}
	}
	out, err := exec.Command("make", "-s", "print-targets").CombinedOutput()
	if err != nil {
		t.Fatalf("make print-targets: %v\n%s", err, out)
	}
	for _, os := range b.Goos {
		for _, arch := range b.Goarch {
			if !slices.Contains(strings.Fields(string(out)), os+"/"+arch) {
				t.Errorf("make crossbuild does not build %s/%s", os, arch)
			}
		}
	}
}

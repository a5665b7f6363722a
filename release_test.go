package guardctl_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

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

// nfpmContent is one file of a package, as nfpm and goreleaser's nfpms name
// it.
type nfpmContent struct {
	Src      string `yaml:"src"`
	Dst      string `yaml:"dst"`
	Packager string `yaml:"packager"`
}

// TestPackageConfig keeps .goreleaser.yaml's packages the ones 'make
// package' builds from packaging/nfpm.yaml (and 'make test' installs): deb
// and rpm, Apache-2.0, the same files in the same places, the binary, the
// man pages and the completions among them.
func TestPackageConfig(t *testing.T) {
	read := func(path string, v any) {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(raw, v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	var rel struct {
		Nfpms []struct {
			Formats  []string      `yaml:"formats"`
			License  string        `yaml:"license"`
			Bindir   string        `yaml:"bindir"`
			Contents []nfpmContent `yaml:"contents"`
		} `yaml:"nfpms"`
	}
	read(".goreleaser.yaml", &rel)
	var pkg struct {
		License  string        `yaml:"license"`
		Contents []nfpmContent `yaml:"contents"`
	}
	read("packaging/nfpm.yaml", &pkg)
	if len(rel.Nfpms) != 1 {
		t.Fatalf(".goreleaser.yaml has %d nfpms entries", len(rel.Nfpms))
	}
	n := rel.Nfpms[0]
	if !slices.Contains(n.Formats, "deb") || !slices.Contains(n.Formats, "rpm") {
		t.Errorf("nfpms formats %v, want deb and rpm", n.Formats)
	}
	if n.License != "Apache-2.0" || pkg.License != "Apache-2.0" {
		t.Errorf("licenses %q and %q, want Apache-2.0", n.License, pkg.License)
	}
	if _, err := os.Stat("LICENSE"); err != nil {
		t.Error(err)
	}
	dsts := func(cs []nfpmContent) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Dst+" "+c.Packager)
		}
		slices.Sort(out)
		return out
	}
	want := dsts(pkg.Contents)
	got := dsts(append(n.Contents, nfpmContent{Dst: n.Bindir + "/guardctl"}))
	if !slices.Equal(got, want) {
		t.Errorf("the release packages install\n%v\nand make package\n%v", got, want)
	}
	for _, d := range []string{"/usr/bin/guardctl ", "/usr/share/man/man1/ ", "/usr/share/bash-completion/completions/guardctl ",
		"/usr/share/zsh/vendor-completions/_guardctl ", "/usr/share/fish/vendor_completions.d/guardctl.fish "} {
		if !slices.Contains(want, d) {
			t.Errorf("the packages do not install %s", d)
		}
	}
	for _, c := range pkg.Contents {
		if strings.HasPrefix(c.Src, "dist/") {
			continue // made by make completions
		}
		if m, _ := filepath.Glob(c.Src); len(m) == 0 {
			t.Errorf("packaging/nfpm.yaml: %s matches no file", c.Src)
		}
	}
}

// TestNoTrackerReferences keeps the documentation readable by people who
// never saw the project's issue tracker: no "issue 6" or "#12" in the
// README, docs/ (the generated reference included) or examples/.
func TestNoTrackerReferences(t *testing.T) {
	ref := regexp.MustCompile(`(?i)\bissues?\s*#?\d+|(^|[\s(])#\d+\b`)
	files := []string{"README.md"}
	for _, dir := range []string{"docs", "examples"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, path)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			if m := ref.FindString(line); m != "" {
				t.Errorf("%s:%d refers to the tracker (%q): say what it means instead", f, i+1, strings.TrimSpace(m))
			}
		}
	}
}

// TestReadmeInstall keeps the README's Install section in step with what a
// release holds: the archive of each system as .goreleaser.yaml names it,
// the .deb and .rpm as nfpm names them, the go install path of the main
// package, and for Windows where guardctl.exe goes and that Hyper-V's
// store needs an elevated prompt.
func TestReadmeInstall(t *testing.T) {
	raw, err := os.ReadFile(".goreleaser.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ProjectName string `yaml:"project_name"`
		Builds      []struct {
			Main string `yaml:"main"`
		} `yaml:"builds"`
		Archives []struct {
			Formats         []string `yaml:"formats"`
			FormatOverrides []struct {
				Goos    string   `yaml:"goos"`
				Formats []string `yaml:"formats"`
			} `yaml:"format_overrides"`
			NameTemplate string `yaml:"name_template"`
		} `yaml:"archives"`
		Nfpms []struct {
			Formats          []string `yaml:"formats"`
			FileNameTemplate string   `yaml:"file_name_template"`
		} `yaml:"nfpms"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Archives) != 1 || len(cfg.Nfpms) != 1 || len(cfg.Builds) != 1 {
		t.Fatalf("unexpected config: %+v", cfg)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	i := strings.Index(text, "**Install**")
	if i < 0 {
		t.Fatal("the README has no Install section")
	}
	install := text[i:]
	if j := strings.Index(install, "**Build it"); j > 0 {
		install = install[:j]
	}
	ar := cfg.Archives[0]
	tmpl := template.Must(template.New("name").Parse(ar.NameTemplate))
	for _, target := range []string{"linux/amd64", "linux/arm64", "darwin/arm64", "darwin/amd64", "windows/amd64", "windows/arm64"} {
		goos, arch, _ := strings.Cut(target, "/")
		var name strings.Builder
		if err := tmpl.Execute(&name, map[string]string{"ProjectName": cfg.ProjectName, "Version": "${v}", "Os": goos, "Arch": arch}); err != nil {
			t.Fatal(err)
		}
		format := ar.Formats[0]
		for _, o := range ar.FormatOverrides {
			if o.Goos == goos {
				format = o.Formats[0]
			}
		}
		full := name.String() + "." + format
		// An architecture may be named as the variant of the other's file.
		other := strings.TrimSuffix(name.String(), arch) + map[string]string{"amd64": "arm64", "arm64": "amd64"}[arch] + "." + format
		if !strings.Contains(install, full) && !(strings.Contains(install, other) && strings.Contains(install, "_"+goos+"_"+arch)) {
			t.Errorf("the Install section does not name %s", full)
		}
	}
	// nfpm's conventional names: NAME_VERSION_ARCH.deb, NAME-VERSION-RELEASE.ARCH.rpm.
	if n := cfg.Nfpms[0]; n.FileNameTemplate != "{{ .ConventionalFileName }}" || !slices.Equal(n.Formats, []string{"deb", "rpm"}) {
		t.Errorf("nfpms: %+v", n)
	}
	for _, want := range []string{
		"guardctl_${v}_amd64.deb",
		"guardctl-${v}-1.x86_64.rpm",
		"go install github.com/guardctl/guardctl/" + strings.TrimPrefix(cfg.Builds[0].Main, "./") + "@latest",
		"guardctl.exe",
		`C:\Program Files\guardctl`,
		"`--store hyperv`",
		"elevated",
		"checksums.txt",
	} {
		if !strings.Contains(install, want) {
			t.Errorf("the Install section does not say %q", want)
		}
	}
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(mod), "module github.com/guardctl/guardctl\n") {
		t.Errorf("go.mod names another module; the go install line is wrong")
	}
}

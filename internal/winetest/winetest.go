// Package winetest runs guardctl's Windows build under Wine from Linux
// tests.
//
// Debian's Wine 8.0 (package wine64) runs Go's Windows binaries once a
// stub bcryptprimitives.dll is in the prefix's system32 (see
// stub/processprng.c); the stub is built with x86_64-w64-mingw32-gcc (package
// gcc-mingw-w64-x86-64-win32). A test that uses this package skips,
// naming the tool, when they are missing, and fails under CI (CI=true),
// which installs them.
//
// Making a prefix (wineboot -i) takes several seconds and some 700 MB, so
// it is made once per machine, keyed by the Wine version and the stub's
// source, in the user cache directory, and never run in. Each New gives a
// test its own prefix cloned from it (the DLLs hard-linked, everything else
// copied: well under a second) with a wineserver of its own, removed when
// the test ends.
package winetest

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"github.com/guardctl/guardctl/internal/testenv"
)

//go:embed stub/processprng.c
var processPrngSource []byte

// Packages names the Debian packages that provide the tools.
const Packages = "wine wine64 gcc-mingw-w64-x86-64-win32"

// Timeout bounds one program run under Wine.
const Timeout = 2 * time.Minute

var tools = []string{"wine", "wineserver", "wineboot", "x86_64-w64-mingw32-gcc"}

// Require skips the test, naming the tool, when Wine or MinGW is missing,
// and fails it under CI (CI=true), which installs them.
func Require(t testing.TB) {
	t.Helper()
	testenv.Tools(t, "the Windows build under Wine (Debian packages "+Packages+")", tools...)
}

// baseEnv is the environment of every Wine process: no debug channels,
// no Mono or Gecko installer, no desktop menu entries, no display (the
// programs are console programs).
func baseEnv(prefix string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "WINEPREFIX", "WINEDEBUG", "WINEDLLOVERRIDES", "WINEARCH", "DISPLAY", "WAYLAND_DISPLAY":
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"WINEPREFIX="+prefix,
		"WINEARCH=win64",
		"WINEDEBUG=-all",
		"WINEDLLOVERRIDES=mscoree,mshtml=;winemenubuilder.exe=d",
	)
}

var (
	templateOnce sync.Once
	templateDir  string
	templateErr  error
	// TemplateTime is how long this process waited for the template prefix
	// (wineboot -i when it had to be made); for reports.
	TemplateTime time.Duration
)

func cacheRoot() (string, error) {
	if dir := os.Getenv("GUARDCTL_WINETEST_CACHE"); dir != "" {
		return dir, nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "guardctl-winetest"), nil
}

// templateKey names a template by what it is made of: Wine's version and
// wine.inf (wine updates a prefix whose wine.inf changed) and the stub.
func templateKey() (string, error) {
	out, err := exec.Command("wine", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("wine --version: %w", err)
	}
	h := sha256.New()
	h.Write(out)
	for _, inf := range []string{"/usr/share/wine/wine.inf", "/usr/lib/wine/wine.inf"} {
		if fi, err := os.Stat(inf); err == nil {
			fmt.Fprintf(h, "%s %d %d\n", inf, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	h.Write(processPrngSource)
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func template() (string, error) {
	templateOnce.Do(func() {
		start := time.Now()
		templateDir, templateErr = makeTemplate()
		TemplateTime = time.Since(start)
	})
	return templateDir, templateErr
}

func makeTemplate() (string, error) {
	root, err := cacheRoot()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(root, "clones"), 0o700); err != nil {
		return "", err
	}
	key, err := templateKey()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "prefix-"+key)
	// Test processes of several packages start at once; one makes the
	// template, the others wait for it.
	lock := flock.New(filepath.Join(root, "lock"))
	if err := lock.Lock(); err != nil {
		return "", err
	}
	defer lock.Unlock()
	if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
		return dir, nil
	}
	removeStale(root, dir)
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", err
	}
	env := baseEnv(tmp)
	boot := exec.Command("wineboot", "-i")
	boot.Env = env
	if out, err := boot.CombinedOutput(); err != nil {
		return "", fmt.Errorf("wineboot -i: %v: %s", err, out)
	}
	wait := exec.Command("wineserver", "-w")
	wait.Env = env
	if out, err := wait.CombinedOutput(); err != nil {
		return "", fmt.Errorf("wineserver -w: %v: %s", err, out)
	}
	if err := buildStub(filepath.Join(tmp, "drive_c", "windows", "system32", "bcryptprimitives.dll")); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, "ready"), nil, 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// removeStale removes templates of other Wine versions or stubs, and
// clones a killed test left behind (clones share no data with a template
// once made: hard links outlive it).
func removeStale(root, keep string) {
	old, _ := filepath.Glob(filepath.Join(root, "prefix-*"))
	for _, d := range old {
		if d != keep {
			os.RemoveAll(d)
		}
	}
	clones, _ := os.ReadDir(filepath.Join(root, "clones"))
	for _, c := range clones {
		if fi, err := c.Info(); err == nil && time.Since(fi.ModTime()) > 24*time.Hour {
			os.RemoveAll(filepath.Join(root, "clones", c.Name()))
		}
	}
}

func buildStub(dll string) error {
	dir, err := os.MkdirTemp("", "winetest-stub-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "processprng.c")
	if err := os.WriteFile(src, processPrngSource, 0o600); err != nil {
		return err
	}
	cmd := exec.Command("x86_64-w64-mingw32-gcc", "-shared", "-O2", "-s", "-o", dll, src, "-ladvapi32")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the ProcessPrng stub: %v: %s", err, out)
	}
	return nil
}

// Prefix is one test's Wine prefix.
type Prefix struct {
	// Dir is the prefix (WINEPREFIX).
	Dir string
	env []string
}

// New returns a fresh Wine prefix for this test, with a wineserver of its
// own; both are removed when the test ends.
func New(t testing.TB) *Prefix {
	t.Helper()
	Require(t)
	tmpl, err := template()
	if err != nil {
		t.Fatalf("making the Wine prefix: %v", err)
	}
	root, err := cacheRoot()
	if err != nil {
		t.Fatal(err)
	}
	// Clones live next to the template so that hard links work.
	dir, err := os.MkdirTemp(filepath.Join(root, "clones"), "prefix-")
	if err != nil {
		t.Fatal(err)
	}
	p := &Prefix{Dir: dir, env: baseEnv(dir)}
	t.Cleanup(func() {
		kill := exec.Command("wineserver", "-k")
		kill.Env = p.env
		kill.Run()
		os.RemoveAll(dir)
	})
	if err := clone(tmpl, dir); err != nil {
		t.Fatalf("cloning the Wine prefix: %v", err)
	}
	// A wineserver that outlives each program by 30 s, so that a test's
	// runs share it, and that still ends if the test dies before its
	// cleanup. It puts itself in the background, keeping the output it was
	// given: so no pipes here, or Run would wait for it to end.
	server := exec.Command("wineserver", "-p30")
	server.Env = p.env
	if err := server.Run(); err != nil {
		t.Fatalf("wineserver -p30: %v", err)
	}
	// The first program Wine runs in a prefix starts its services, which
	// stay; start them now, with /dev/null for their output (a pipe would
	// stay open as long as they run).
	warm := p.Command(context.Background(), "wine", "cmd.exe", "/c", "exit")
	if err := warm.Run(); err != nil {
		t.Fatalf("wine cmd.exe /c exit: %v", err)
	}
	return p
}

// clone copies the template prefix to dir: the DLLs and programs under
// windows/system32 and syswow64 (nearly all of its size) are hard-linked,
// since Wine only reads them; everything else, the registry above all, is
// copied.
func clone(from, to string) error {
	shared := []string{
		filepath.Join(from, "drive_c", "windows", "system32") + string(filepath.Separator),
		filepath.Join(from, "drive_c", "windows", "syswow64") + string(filepath.Separator),
	}
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil || rel == "." {
			return err
		}
		dst := filepath.Join(to, rel)
		switch {
		case d.IsDir():
			return os.Mkdir(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		case !d.Type().IsRegular():
			return nil
		}
		for _, s := range shared {
			if strings.HasPrefix(path, s) {
				if err := os.Link(path, dst); err == nil {
					return nil
				}
			}
		}
		return copyFile(path, dst)
	})
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Env is the environment Wine processes in this prefix run with.
func (p *Prefix) Env() []string { return append([]string(nil), p.env...) }

// Command is a Unix command (wine, wineserver, ...) set up to run in
// this prefix.
func (p *Prefix) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = p.Env()
	return cmd
}

// Result is what a program run under Wine did.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
}

// Run runs the Windows program exe under Wine with args, the extra
// environment variables env ("NAME=value") and stdin (nil for none). A
// program that ran is not an error, whatever its exit code; an error means
// Wine could not run it or it ran longer than Timeout.
func (p *Prefix) Run(exe string, args, env []string, stdin []byte) (Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cmd := p.Command(ctx, "wine", append([]string{exe}, args...)...)
	cmd.Env = append(cmd.Env, env...)
	// Files, not pipes: a process Wine starts in the background (services,
	// winedevice) inherits them, and a pipe would stay open until it ends.
	dir, err := os.MkdirTemp("", "winetest-run-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	files := make([]*os.File, 3)
	for i, name := range []string{"stdin", "stdout", "stderr"} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return Result{}, err
		}
		defer f.Close()
		files[i] = f
	}
	if _, err := files[0].Write(stdin); err != nil {
		return Result{}, err
	}
	if _, err := files[0].Seek(0, io.SeekStart); err != nil {
		return Result{}, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = files[0], files[1], files[2]
	err = cmd.Run()
	stdout, _ := os.ReadFile(files[1].Name())
	stderr, _ := os.ReadFile(files[2].Name())
	res := Result{Stdout: string(stdout), Stderr: string(stderr)}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("%s ran longer than %v under Wine: %s", filepath.Base(exe), Timeout, res.Stderr)
	case errors.As(err, &exit):
		res.ExitCode = exit.ExitCode()
	case err != nil:
		return res, err
	}
	return res, nil
}

// Build compiles the Go package pkg (a path go build understands, relative
// to the current directory) for windows/amd64 into a temporary directory
// and returns the .exe's path; with test, it compiles the package's test
// binary (go test -c) instead.
func Build(t testing.TB, pkg string, test bool) string {
	t.Helper()
	// go test puts its own go first in PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building for Windows: %v", err)
	}
	name := filepath.Base(pkg)
	args := []string{"build", "-trimpath"}
	if test {
		name += ".test"
		args = []string{"test", "-c", "-trimpath"}
	}
	exe := filepath.Join(t.TempDir(), name+".exe")
	args = append(args, "-o", exe, pkg)
	cmd := exec.Command(goTool, args...)
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=windows go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return exe
}

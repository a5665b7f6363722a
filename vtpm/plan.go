package vtpm

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/guardctl/guardctl/internal/atomicfile"
)

// UnwrapOptions say how an unwrap may replace what a target holds.
type UnwrapOptions struct {
	// Force allows replacing a target that holds a state or other data
	// (anything but nothing or zeros); it is kept as a backup first.
	Force bool
	// BackupDir is where a block device's or qcow2 image's old contents
	// are kept (0600); a directory or file is kept beside itself.
	BackupDir string
	// Owner is given to what is written (--chown), nil for none.
	Owner *Owner
}

// Plan is what an unwrap will do at its target: what is written where,
// what is kept, what earlier killed runs left that is removed; or that
// the state is there already and only its owner and modes are set.
type Plan struct {
	Target Target
	// Writes are the files written, with their modes (none when the state
	// is in place).
	Writes []Write
	// InPlace: the target holds the state already; Fixes are what is left
	// to set on it.
	InPlace bool
	Fixes   []Fix
	// Fresh: the target holds nothing yet; else what it holds is kept as
	// a backup (in BackupDir for a device or qcow2 image).
	Fresh     bool
	BackupDir string
	// Leftovers are what earlier guardctl runs that were stopped left
	// beside the target; they are removed.
	Leftovers []string

	img Image
	opt UnwrapOptions
}

// PlanUnwrap plans putting img at path. It refuses (with the reason) a
// target that cannot take the state, one in use, and one that holds
// something else without opt.Force.
func PlanUnwrap(path string, img Image, opt UnwrapOptions) (*Plan, error) {
	t, err := OpenTarget(path, img.Layout, img.Source)
	if err != nil {
		return nil, err
	}
	if opt.Owner != nil && (t.Kind() == TargetDevice || t.Device() != "") {
		return nil, &TargetError{Msg: fmt.Sprintf("%s is a block device: it keeps its owner, --chown does not apply", path)}
	}
	p := &Plan{Target: t, img: img, opt: opt, Leftovers: Leftovers(path)}
	if t.Kind() == TargetDevice || t.Kind() == TargetQcow2 {
		p.BackupDir = opt.BackupDir
	}
	st, fresh, curErr := t.Current()
	if curErr != nil && errors.Is(curErr, ErrInUse) {
		return nil, curErr
	}
	if curErr == nil && st != nil && holds(st, img) {
		p.InPlace = true
		p.Fixes = t.fixes(img, opt.Owner)
		if len(p.Fixes) > 0 || len(p.Leftovers) > 0 {
			if err := t.CheckNotInUse(); err != nil {
				return nil, err
			}
		}
		return p, nil
	}
	p.Fresh = fresh
	if !fresh && !opt.Force {
		if t.Kind() == TargetDevice || t.Device() != "" {
			return nil, fmt.Errorf("%s: %w", path, ErrDeviceHoldsData)
		}
		if t.Kind() == TargetQcow2 {
			return nil, fmt.Errorf("the qcow2 image %s: %w", path, ErrDeviceHoldsData)
		}
		return nil, fmt.Errorf("%s already holds a state: %w", path, atomicfile.ErrExists)
	}
	// A state a running swtpm uses would be written over by it.
	if err := t.CheckNotInUse(); err != nil {
		return nil, err
	}
	p.Writes = t.writes(img)
	return p, nil
}

// Changes reports whether applying the plan changes anything.
func (p *Plan) Changes() bool {
	return !p.InPlace || len(p.Fixes) > 0 || len(p.Leftovers) > 0
}

// Apply does what the plan says. backup is where the target's old
// contents are kept, if they are.
func (p *Plan) Apply() (backup string, err error) {
	if err := removeLeftovers(p.Leftovers); err != nil {
		return "", err
	}
	if p.InPlace {
		for _, f := range p.Fixes {
			if err := f.apply(); err != nil {
				return "", err
			}
		}
		return "", nil
	}
	return p.Target.replace(p.img, p.opt, p.Fresh)
}

// holds reports whether st is img's state: the same swtpm blobs and, for
// a directory, the same other files.
func holds(st *State, img Image) bool {
	blobs, err := BlobsOf(img.Layout, img.Files)
	if err != nil || !st.HoldsBlobs(img.Layout, blobs) {
		return false
	}
	if img.Layout != LayoutDir {
		return true
	}
	others := 0
	for name, data := range img.Files {
		if _, isBlob := blobOfFile(name); isBlob {
			continue
		}
		others++
		if have, ok := st.Others[name]; !ok || !bytes.Equal(have, data) {
			return false
		}
	}
	return others == len(st.Others)
}

func blobOfFile(name string) (string, bool) {
	for _, n := range blobNames {
		if dirFile(n) == name {
			return n, true
		}
	}
	return "", false
}

// Rewrite writes files (as State.Files gives them) to the state st in
// place, each keeping its owner and mode; with keep the previous files are
// kept as backups (for a block device or qcow2 image, in backupDir).
func Rewrite(st *State, files map[string][]byte, keep bool, backupDir string) ([]string, error) {
	t := TargetOf(st)
	if err := removeLeftovers(Leftovers(st.Path)); err != nil {
		return nil, err
	}
	return t.rewrite(st, files, keep, backupDir)
}

// holdsDataError is ErrDeviceHoldsData: a kind of atomicfile.ErrExists, so
// that the command asks for --force.
type holdsDataError struct{}

func (holdsDataError) Error() string {
	return "it holds data (a state or something else), not the zeros of a fresh volume, and is replaced only with --force"
}
func (holdsDataError) Is(target error) bool { return target == atomicfile.ErrExists }

// backupSuffix matches what atomicfile.BackupName adds to a name.
var backupSuffix = regexp.MustCompile(`\.\d{8}T\d{6}Z-[0-9a-f]{6}\.bak$`)

// Backups lists the backups guardctl kept of the state st's files by
// earlier runs: PATH.TIME-XXXXXX.bak beside each of swtpm's files (a
// directory's, or the state file itself), or, for a block device or qcow2
// image, NAME.TIME-XXXXXX.bak in backupDir.
func Backups(st *State, backupDir string) []string {
	var of []string
	switch {
	case st.Device != "" || st.Image != nil:
		if backupDir == "" {
			backupDir = "."
		}
		of = []string{filepath.Join(backupDir, filepath.Base(st.Path))}
	case st.Layout == LayoutDir:
		for _, n := range st.Names() {
			of = append(of, filepath.Join(st.Path, dirFile(n)))
		}
	default:
		of = []string{st.Path}
	}
	var out []string
	for _, path := range of {
		// The name a backup starts with: the file's, shortened as
		// atomicfile.BackupName shortens it.
		probe := filepath.Base(atomicfile.BackupName(path, time.Time{}))
		prefix := probe[:len(probe)-len(backupSuffix.FindString(probe))]
		des, err := os.ReadDir(filepath.Dir(path))
		if err != nil {
			continue
		}
		for _, de := range des {
			n := de.Name()
			suffix := backupSuffix.FindString(n)
			if de.Type().IsRegular() && suffix != "" && strings.HasPrefix(n, prefix) && len(suffix) == len(n)-len(prefix) {
				out = append(out, filepath.Join(filepath.Dir(path), n))
			}
		}
	}
	slices.Sort(out)
	return out
}

// RemoveFiles removes paths (the backups Backups listed).
func RemoveFiles(paths []string) error {
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Package fuzzseed writes seed corpus files for go test -fuzz, so that fuzz
// targets need not generate RSA keys at start-up (slow under coverage
// instrumentation, and done again by every fuzz worker).
package fuzzseed

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Write stores data as a seed of the fuzz target named target, under
// testdata/fuzz/TARGET in the current package directory.
func Write(target string, data []byte) error {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(data)))
	return os.WriteFile(filepath.Join(dir, "seed-"+hex.EncodeToString(sum[:8])), []byte(body), 0o644)
}

// Requested reports whether GUARDCTL_WRITE_FUZZ_SEEDS=1 asks the seed
// writers to run.
func Requested() bool { return os.Getenv("GUARDCTL_WRITE_FUZZ_SEEDS") == "1" }

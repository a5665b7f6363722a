package main

import (
	"fmt"
	"io"
	"os"
)

// stdinArg is the standard input of the command line being run, for the
// one argument that names it "-" (execute sets it from app.stdin): a second
// argument that asks for it would read nothing.
var stdinArg struct {
	r     io.Reader
	taken bool
}

// readStdin reads standard input for a "-" argument, bounded by limit.
func readStdin(limit int64) ([]byte, error) {
	if stdinArg.taken {
		return nil, usageError("standard input is read once, and two arguments are -; give one of them a file")
	}
	stdinArg.taken = true
	if stdinArg.r == nil {
		return nil, usageError("there is no standard input to read -")
	}
	data, err := io.ReadAll(io.LimitReader(stdinArg.r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading standard input: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, tooLarge("standard input", limit)
	}
	return data, nil
}

// tooLarge is the error for input (a file, or standard input) larger than
// guardctl reads for it: refused input, exit 5 wherever it comes from, as
// the libraries' bounds on what they parse are.
func tooLarge(what string, limit int64) error {
	return &cliError{code: exitVerification, msg: fmt.Sprintf("%s is larger than %d bytes", what, limit),
		hint: tooLargeHint}
}

const tooLargeHint = "no file guardctl reads there is that large; check that it is the right file"

// stdoutFor checks that standard output can take a file whose path is "-"
// (flag names it): not with -o json, whose output standard output holds,
// and not on a terminal, where a key would be shown and binary data
// garble the screen.
func (a *app) stdoutFor(flag string) error {
	if a.output == "json" {
		return usageError("%s - and -o json both want standard output; give %s a file", flag, flag)
	}
	if isTerminalWriter(a.stdout) {
		return usageError("refusing to write %s to a terminal; redirect standard output or give %s a file", flag, flag)
	}
	return nil
}

// notInPlace refuses "-" for a file that a command rewrites in place.
func notInPlace(cmd string, files ...string) error {
	type named struct {
		name string
		fi   os.FileInfo
	}
	seen := make([]named, 0, len(files))
	for _, f := range files {
		if f == "-" {
			return usageError("%s rewrites the file in place, so it cannot be standard input (-); give the file's path", cmd)
		}
		// The same file twice would be changed by the first and found
		// unchanged by the second, which a dry run cannot predict.
		fi, err := os.Stat(f)
		if err != nil {
			continue // reported with the file's own error
		}
		for _, other := range seen {
			if os.SameFile(fi, other.fi) {
				return usageError("%s and %s are the same file; name each file once", other.name, f)
			}
		}
		seen = append(seen, named{f, fi})
	}
	return nil
}

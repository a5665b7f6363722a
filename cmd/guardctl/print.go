package main

// print.go is the one place where guardctl prints what it has to say. A
// command does its work and hands what it found to the functions here; it
// never writes "guardctl: " or chooses between JSON and text itself
// (TestOnePlacePrints fails on a "guardctl: " literal in any other file).
//
// A command's result (standard output):
//
//	type fooResult struct { ...JSON fields (docs/json.md)...; outcome }
//	func (r fooResult) writeText(w io.Writer) error { ...table or lines... }
//	...
//	return a.print(fooResult{...})
//
// The value itself is the JSON form, so its fields and tags are the schema;
// writeText is the form for people. A result whose text form is nothing on
// standard output (the notes on standard error say it all) embeds noText.
//
// Messages (standard error), each prefixed "guardctl: " by message:
//
//	a.note(format, args...)   for people: what was done; not with -o json
//	a.tell(format, args...)   what must be said in every output mode
//	a.warn(format, args...)   "guardctl: warning: ...", in every output mode
//	a.notice(change)          "guardctl: notice: ...", what the store says must be told
//	printError(w, err)        "guardctl: error: ..." and "guardctl: hint: ..."
//
// The format given to note, tell and warn has no prefix and no newline.

import (
	"fmt"
	"io"
	"strings"

	"github.com/guardctl/guardctl/certstore"
)

// result is what a command prints on standard output: the value is its
// JSON form, writeText its human form (a table or "key: value" lines).
type result interface {
	writeText(w io.Writer) error
}

// noText is embedded in a result whose human form is only the notes the
// command wrote to standard error: with -o table standard output stays
// empty. It adds nothing to the JSON.
type noText struct{}

func (noText) writeText(io.Writer) error { return nil }

// print writes r on standard output, as JSON with -o json, else as text.
func (a *app) print(r result) error {
	if a.output == "json" {
		return writeJSON(a.stdout, r)
	}
	return r.writeText(a.stdout)
}

// The kinds of message, the word after "guardctl: ".
const (
	kindPlain   = "" // a note: "guardctl: TEXT"
	kindError   = "error"
	kindHint    = "hint"
	kindWarning = "warning"
	kindNotice  = "notice"
)

// message writes one line to w: "guardctl: TEXT", or "guardctl: KIND: TEXT".
// It is the only function that writes the prefix.
func message(w io.Writer, kind, text string) {
	if kind != kindPlain {
		text = kind + ": " + text
	}
	fmt.Fprintf(w, "guardctl: %s\n", text)
}

// note writes a message for people to standard error (never in JSON mode,
// where the JSON on standard output says it all).
func (a *app) note(format string, args ...any) {
	if a.output == "json" {
		return
	}
	message(a.stderr, kindPlain, fmt.Sprintf(format, args...))
}

// tell writes a message to standard error in every output mode: what a
// script reading the JSON must still be told there (a batch's summary).
func (a *app) tell(format string, args ...any) {
	message(a.stderr, kindPlain, fmt.Sprintf(format, args...))
}

// warn writes a warning to standard error in every output mode.
func (a *app) warn(format string, args ...any) {
	message(a.stderr, kindWarning, fmt.Sprintf(format, args...))
}

// notice tells the user, on standard error and also in JSON mode, what the
// store said must be told once (for example that a name was not
// registered).
func (a *app) notice(c *certstore.Change) {
	if c != nil && c.Notice != "" {
		message(a.stderr, kindNotice, c.Notice)
	}
}

// printError writes err as one line (and a hint) in the age style, and
// returns the exit code for it.
func printError(w io.Writer, err error) int {
	code, hint := classify(err)
	if code == exitInterrupted {
		message(w, kindPlain, "interrupted; nothing was changed")
		return code
	}
	message(w, kindError, strings.ReplaceAll(err.Error(), "\n", " "))
	if hint != "" {
		message(w, kindHint, hint)
	}
	return code
}

package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/AlecAivazis/survey/v2/terminal"
	"github.com/guardctl/guardctl/certstore"
	"github.com/guardctl/guardctl/guardian"
	"github.com/guardctl/guardctl/internal/atomicfile"
	"github.com/guardctl/guardctl/keyprotector"
	"github.com/guardctl/guardctl/tpmkey"
	"github.com/guardctl/guardctl/vtpm"
)

// Exit codes. They are part of the command-line contract (docs/cli.md).
const (
	exitOK           = 0
	exitFailure      = 1   // anything not listed below
	exitUsage        = 2   // bad flags or arguments, or input that is needed but not given
	exitNotFound     = 3   // no such guardian (or removed guardian)
	exitExists       = 4   // the guardian or file exists and --force was not given
	exitVerification = 5   // wrong password; damaged, tampered or mismatched input; a certificate refused by policy
	exitStoreProblem = 6   // store check found problems it did not repair
	exitNoAccess     = 7   // no guardian here can unwrap, or the owner's private key is not here
	exitUnverified   = 8   // shown, but not everything shown is verified (show, inspect)
	exitInterrupted  = 130 // the user interrupted a prompt
)

// cliError is an error with its exit code and an optional hint. It keeps
// the error it was made from (err, when there is one), so that errors.Is
// and errors.As see through a hint to the cause; its own code and hint
// still decide the exit code (classify looks for a cliError first).
type cliError struct {
	code int
	msg  string
	hint string
	// path is the file the error is about, when it is one the user named
	// (openError), so that a caller's hint can be about that file only.
	path string
	err  error // the cause, or nil
}

func (e *cliError) Error() string { return e.msg }

// Unwrap returns the error e was made from, or nil.
func (e *cliError) Unwrap() error { return e.err }

func usageError(format string, args ...any) error {
	return &cliError{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}

func withHint(err error, code int, hint string) error {
	return &cliError{code: code, msg: err.Error(), hint: hint, err: err}
}

// classify turns any error into its exit code and hint.
func classify(err error) (int, string) {
	var ce *cliError
	if errors.As(err, &ce) {
		return ce.code, ce.hint
	}
	if errors.Is(err, terminal.InterruptErr) {
		return exitInterrupted, ""
	}
	var ee *keyprotector.EscrowError
	if errors.As(err, &ee) {
		return exitUsage, "also grant an escrow guardian: --guardian ESCROW, a file guardian exported with 'guardctl guardian export ESCROW' and kept offline (README, \"Escrow\"); --no-escrow writes it anyway"
	}
	var te *tpmkey.Error
	if errors.As(err, &te) {
		switch te.Kind {
		case tpmkey.KindSpec:
			return exitUsage, "--tpm (or GUARDCTL_TPM) takes a device path such as /dev/tpmrm0, or swtpm:host=HOST,port=PORT"
		case tpmkey.KindPCR:
			return exitVerification, "this host's boot state is not the one the guardian was bound to: unwrap with the escrow guardian (a file guardian kept offline, imported here), then grant a new TPM guardian of this host ('guardctl guardian create NAME --keys tpm --pcrs ...')"
		case tpmkey.KindPIN:
			return exitVerification, "check the PIN in --pin-file; each wrong PIN counts toward the TPM's dictionary-attack lockout"
		case tpmkey.KindNotLoadable:
			return exitFailure, "a TPM guardian's keys live and die with its TPM: open the VM's key protector with the escrow guardian, then grant a new TPM guardian of this TPM; 'guardctl store check' lists TPM guardians whose keys no longer load"
		case tpmkey.KindMissing:
			return exitFailure, "name the TPM with --tpm (or GUARDCTL_TPM): /dev/tpmrm0 needs the tss group; a swtpm is swtpm:host=HOST,port=PORT"
		case tpmkey.KindBusy:
			return exitFailure, "try again when the TPM is free"
		case tpmkey.KindLockout:
			return exitFailure, "the TPM is in dictionary-attack lockout after wrong PINs: wait for its recovery time, or have its owner clear the lockout ('tpm2_dictionarylockout --clear-lockout'); check the PIN in --pin-file before trying again"
		case tpmkey.KindInvalid:
			return exitVerification, ""
		}
		return exitFailure, ""
	}
	if errors.Is(err, certstore.ErrTPMUnsupported) {
		return exitUsage, "create TPM guardians in a directory store (--store DIR); docs/hyperv.md says what Hyper-V's store would need"
	}
	var ge *guardian.Error
	if errors.As(err, &ge) {
		switch ge.Kind {
		case guardian.KindPassword:
			return exitVerification, "check the password; it is read from --password-file, GUARDCTL_PASSWORD or the prompt, in that order"
		case guardian.KindExpired:
			return exitVerification, "to use the guardian anyway (as New-HgsGuardian -AllowExpired does), pass --allow-expired"
		case guardian.KindUntrusted:
			return exitVerification, "to accept a certificate that does not chain to a trusted root (as New-HgsGuardian -AllowUntrustedRoot does), pass --allow-untrusted-root"
		case guardian.KindMismatch:
			return exitVerification, "make sure the signing and encryption files belong to the same guardian and each holds its own private key"
		case guardian.KindUnsupported:
			return exitVerification, ""
		default:
			return exitVerification, ""
		}
	}
	var ke *keyprotector.Error
	if errors.As(err, &ke) {
		switch ke.Kind {
		case keyprotector.KindNoAccess:
			return exitNoAccess, "'guardctl kp show FILE' (a key protector) or 'guardctl vtpm inspect FILE' (a bundle) lists the guardians that can; import one of them ('guardctl guardian import')"
		case keyprotector.KindNotOwner:
			return exitNoAccess, "run this on the owner's host, or import the owner's PFX pair here"
		case keyprotector.KindExpired:
			return exitVerification, "to use it anyway, pass --allow-expired"
		case keyprotector.KindUnsupported:
			return exitVerification, "Hyper-V's own key protector algorithms are not published; see docs/keyprotector.md"
		case keyprotector.KindConflict:
			return exitFailure, ""
		case keyprotector.KindUnknownOwner:
			return exitVerification, "if you trust that owner, import its public guardian ('guardctl guardian export NAME --public' on its host, 'guardctl guardian import NAME --public FILE' here); --allow-unknown-owner accepts it once"
		}
		return exitVerification, ""
	}
	if te := (*vtpm.TargetError)(nil); errors.As(err, &te) {
		return exitUsage, te.Hint
	}
	var ve *vtpm.Error
	if errors.As(err, &ve) {
		if ve.Kind == vtpm.KindNoState {
			return exitNotFound, "check the path; a VM whose TPM state is lost gets a new TPM and its guest loses what it sealed"
		}
		if ve.Kind == vtpm.KindKey {
			return exitVerification, "the key or passphrase must be the one swtpm was started with; a passphrase file is used byte for byte, trailing newline included"
		}
		return exitVerification, ""
	}
	if errors.Is(err, vtpm.ErrInUse) {
		return exitFailure, "shut the VM (and its swtpm) down first"
	}
	if strings.HasPrefix(err.Error(), "required flag(s)") || strings.HasPrefix(err.Error(), "if any flags in the group") || strings.HasPrefix(err.Error(), "at least one of the flags in the group") {
		return exitUsage, ""
	}
	if tl := (*atomicfile.TooLargeError)(nil); errors.As(err, &tl) {
		return exitVerification, tooLargeHint
	}
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return exitFailure, "the disk is full: free some space and run the command again; nothing was changed"
	case errors.Is(err, certstore.ErrUnrecoverable):
		return exitVerification, "'guardctl store recover' lists what lost+found holds and what is wrong with each item"
	case errors.Is(err, certstore.ErrNotFound):
		return exitNotFound, "'guardctl guardian list' shows the guardians in this store (--store or GUARDCTL_STORE selects another)"
	case errors.Is(err, certstore.ErrExists):
		return exitExists, "pass --force to replace it; the guardian it replaces goes to the trash"
	case errors.Is(err, atomicfile.ErrNoDirectory):
		return exitFailure, "create the directory first (guardctl does not make it, so that a mistyped path is not written to), or name another"
	case errors.Is(err, vtpm.ErrDeviceHoldsData):
		return exitExists, "pass --force to replace it; what it holds is kept in --backup-dir first (0600)"
	case errors.Is(err, atomicfile.ErrExists):
		return exitExists, "pass --force to overwrite it; the old file is kept as a .bak backup"
	case errors.Is(err, certstore.ErrUntrusted):
		return exitFailure, "chmod 0700 the store and its directories, make them owned by the user running guardctl, and replace a symbolic link with a directory; 'guardctl store check' lists what is wrong"
	case errors.Is(err, certstore.ErrLayout):
		return exitFailure, "nothing in the store was read or changed; 'guardctl store check' lists what is wrong with it"
	case errors.Is(err, certstore.ErrLocked):
		return exitFailure, "wait for the other guardctl to finish, then try again"
	}
	return exitFailure, ""
}

// noAccessMsg is how the keyprotector package says that no guardian it was
// given can unwrap: the command layer names the store it looked in.
const noAccessMsg = "no guardian in this store"

// noAccessError is err, when it says that no guardian can unwrap, with the
// store named (the usual cause is a wrong or misspelled --store) and a hint
// with the command that lists who can open that kind of file: vtpm inspect
// for a bundle, kp show for a key protector.
func (a *app) noAccessError(err error, bundle bool) error {
	// An error that already has its exit code and hint (a cliError, which
	// may wrap a "no access" of its own) has said what it means.
	var ce *cliError
	var ke *keyprotector.Error
	if errors.As(err, &ce) || !errors.As(err, &ke) || ke.Kind != keyprotector.KindNoAccess {
		return err
	}
	msg := err.Error()
	file := "FILE"
	if i := strings.Index(msg, ": "+noAccessMsg); i > 0 {
		file = msg[:i]
	}
	msg = strings.Replace(msg, noAccessMsg, "no guardian in "+a.storeDescription(), 1)
	show := "guardctl kp show"
	if bundle {
		show = "guardctl vtpm inspect"
		msg = strings.Replace(msg, "can unwrap the key protector", "can unwrap the bundle's key protector", 1)
	}
	return &cliError{code: exitNoAccess, msg: msg, path: file, err: err,
		hint: fmt.Sprintf("'%s %s' lists the guardians that can; import one of them here ('guardctl guardian import'), or name the store that holds one with --store", show, file)}
}

// storeDescription names the store this command uses and where that came
// from: the default, --store or GUARDCTL_STORE.
func (a *app) storeDescription() string {
	name := func(spec string) string {
		if spec == certstore.HyperVSpec {
			return "Hyper-V's store (" + spec + ")"
		}
		return "the store " + spec
	}
	def := certstore.DefaultSpec()
	switch {
	case a.storeSpec == "":
		return name(def) + " (the default; --store or GUARDCTL_STORE names another)"
	case a.storeSpec == os.Getenv("GUARDCTL_STORE"):
		return fmt.Sprintf("%s (named by GUARDCTL_STORE; the default is %s)", name(a.storeSpec), def)
	default:
		return fmt.Sprintf("%s (named by --store; the default is %s)", name(a.storeSpec), def)
	}
}

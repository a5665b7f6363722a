package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/AlecAivazis/survey/v2"
	"github.com/spf13/cobra"
)

// maxPasswordFile bounds what is read as a password.
const maxPasswordFile = 64 << 10

// passwordSource is the --password-file flag of a command.
type passwordSource struct {
	file string
}

// read returns the password from --password-file (- is standard input),
// else GUARDCTL_PASSWORD, else a prompt when a person is at a terminal
// (entered twice when confirm is set, because it protects something new).
func (p *passwordSource) read(a *app, prompt string, confirm bool) (string, error) {
	if p.file != "" {
		b, err := readSecretInput(p.file, maxPasswordFile)
		var ce *cliError
		if errors.As(err, &ce) && ce.code == exitNotFound {
			ce.hint = fmt.Sprintf("--password-file %s names the file that holds the password; check its path (relative paths start from the current directory)", p.file)
		}
		if err != nil {
			return "", err
		}
		// One trailing newline is the file's, not the password's.
		b = bytes.TrimSuffix(b, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
		return string(b), nil
	}
	// An empty variable counts as unset, so that GUARDCTL_PASSWORD= turns it off.
	if pw := os.Getenv("GUARDCTL_PASSWORD"); pw != "" {
		return pw, nil
	}
	if !a.canPrompt() {
		return "", &cliError{code: exitUsage, msg: "a password is needed and there is no terminal to ask for it",
			hint: "pass --password-file FILE (- reads standard input) or set GUARDCTL_PASSWORD"}
	}
	var pw string
	if err := survey.AskOne(&survey.Password{Message: prompt + ":"}, &pw, a.surveyStdio()); err != nil {
		return "", err
	}
	if confirm {
		var again string
		if err := survey.AskOne(&survey.Password{Message: "Enter it again:"}, &again, a.surveyStdio()); err != nil {
			return "", err
		}
		if again != pw {
			return "", usageError("the two passwords differ; nothing was written")
		}
	}
	return pw, nil
}

// readPIN returns the TPM guardians' PIN from --pin-file (- is standard
// input, a FIFO works), else a prompt when a person is at a terminal. A
// PIN is never a flag value or an environment variable: it would show in
// process listings.
func (a *app) readPIN() ([]byte, error) {
	if a.pinFile != "" {
		b, err := readSecretInput(a.pinFile, maxPasswordFile)
		var ce *cliError
		if errors.As(err, &ce) && ce.code == exitNotFound {
			ce.hint = fmt.Sprintf("--pin-file %s names the file that holds the PIN; check its path", a.pinFile)
		}
		if err != nil {
			return nil, err
		}
		b = bytes.TrimSuffix(b, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
		if len(b) == 0 {
			return nil, usageError("the PIN in %s is empty", a.pinFile)
		}
		return b, nil
	}
	if !a.canPrompt() {
		return nil, &cliError{code: exitUsage, msg: "a TPM guardian's key needs its PIN and there is no terminal to ask for it",
			hint: "pass --pin-file FILE (- reads standard input)"}
	}
	var pin string
	if err := survey.AskOne(&survey.Password{Message: "TPM guardian PIN:"}, &pin, a.surveyStdio()); err != nil {
		return nil, err
	}
	return []byte(pin), nil
}

// surveyStdio keeps prompts off standard output, which holds only the
// requested output.
func (a *app) surveyStdio() survey.AskOpt {
	return survey.WithStdio(a.stdin, a.stderr, a.stderr)
}

// confirmsAnnotation marks a command that asks before it changes anything
// (asksToConfirm): without a terminal it needs --yes, and the README lists
// it (TestConfirmingCommands).
const confirmsAnnotation = "guardctl-asks-to-confirm"

// asksToConfirm marks cmd as a command that calls confirm; confirm refuses
// to run in any other, so the list cannot fall behind the code.
func asksToConfirm(cmd *cobra.Command) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[confirmsAnnotation] = "yes"
	return cmd
}

// confirm asks a yes/no question, defaulting to no. --yes answers yes;
// without a person at a terminal (or with --no-input) it refuses.
func (a *app) confirm(question, refusal string) error {
	if !a.asksToConfirm {
		return fmt.Errorf("internal error: a command not marked with asksToConfirm asked for confirmation (%s)", refusal)
	}
	if a.yes || a.dryRun { // a dry run changes nothing to confirm
		return nil
	}
	if !a.canPrompt() {
		return &cliError{code: exitUsage, msg: refusal + " without confirmation", hint: "pass --yes to confirm"}
	}
	ok := false
	if err := survey.AskOne(&survey.Confirm{Message: question, Default: false}, &ok, a.surveyStdio()); err != nil {
		return err
	}
	if !ok {
		return &cliError{code: exitFailure, msg: "cancelled; nothing was changed"}
	}
	return nil
}

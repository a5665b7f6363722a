//go:build !unix

package main

import (
	"os"
	"time"
)

// terminalAnswers: on Windows the prompt library asks the console, which
// always answers.
func terminalAnswers(_, _ *os.File, _ time.Duration) bool { return true }

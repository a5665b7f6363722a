//go:build !linux

package atomicfile

import (
	"errors"
	"os"
)

func openAnonymous(string) (*os.File, bool) { return nil, false }

func linkOpen(*os.File, string) error { return errors.ErrUnsupported }

// Package fault is the error type the libraries share: a message for the
// user and a kind, of each library's own enumeration, from which the
// command layer chooses an exit code and a hint.
package fault

import "fmt"

// Error is an error of kind K.
type Error[K ~int] struct {
	Kind K
	Msg  string
}

func (e *Error[K]) Error() string { return e.Msg }

// About returns the same error about the named file, keeping its kind.
func (e *Error[K]) About(path string) error { return &Error[K]{Kind: e.Kind, Msg: path + ": " + e.Msg} }

// New formats an error of kind k.
func New[K ~int](k K, format string, args ...any) error {
	return &Error[K]{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

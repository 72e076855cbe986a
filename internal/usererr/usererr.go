// Package usererr holds the errors that carry advice for the person running
// clusterctl: an *InputError is bad input (exit status 2, nothing was done)
// with the fix, a *HintError is a failure (exit status 1) with a suggestion.
// The CLI's root command is the one place they are printed. The package
// depends on nothing of clusterctl's, so any package can return them.
package usererr

import "fmt"

// InputError is a problem with what the user asked for or configured: the
// CLI exits with status 2 and nothing is created. Fix tells the user what to
// do about it.
type InputError struct {
	Err error
	Fix string
}

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// BadInput returns an *InputError whose message is formatted like fmt.Errorf
// (so %w works) and whose Fix is fix.
func BadInput(fix, format string, args ...any) error {
	return &InputError{Err: fmt.Errorf(format, args...), Fix: fix}
}

// HintError is an operational failure (exit status 1) that carries a
// suggestion for the user.
type HintError struct {
	Err  error
	Hint string
}

func (e *HintError) Error() string { return e.Err.Error() }
func (e *HintError) Unwrap() error { return e.Err }

// WithHint wraps err with a suggestion for the user. A nil err stays nil.
func WithHint(err error, hint string) error {
	if err == nil {
		return nil
	}
	return &HintError{Err: err, Hint: hint}
}

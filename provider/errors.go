package provider

import (
	"errors"
	"fmt"
)

// ErrNotFound reports that a machine, image or network does not exist.
var ErrNotFound = errors.New("not found")

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

package provider

import (
	"errors"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

// ErrNotFound reports that a machine, image or network does not exist.
var ErrNotFound = errors.New("not found")

// The user-facing errors live in internal/usererr, which depends on nothing
// of clusterctl's; these names keep the providers' spelling working.
type (
	// InputError is bad input: exit status 2 with a fix (see usererr.InputError).
	InputError = usererr.InputError
	// HintError is a failure with a suggestion (see usererr.HintError).
	HintError = usererr.HintError
)

// BadInput returns an *InputError whose message is formatted like fmt.Errorf
// (so %w works) and whose Fix is fix.
func BadInput(fix, format string, args ...any) error {
	return usererr.BadInput(fix, format, args...)
}

// WithHint wraps err with a suggestion for the user. A nil err stays nil.
func WithHint(err error, hint string) error { return usererr.WithHint(err, hint) }

package provider

import "errors"

// ErrNotFound reports that a machine, image or network does not exist.
// (The user-facing errors, InputError and HintError, are internal/usererr's.)
var ErrNotFound = errors.New("not found")

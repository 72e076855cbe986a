package usererr_test

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

func TestBadInputWrapsAndCarriesTheFix(t *testing.T) {
	err := usererr.BadInput("create the file", "config %q: %w", "c.yaml", fs.ErrNotExist)
	var in *usererr.InputError
	if !errors.As(err, &in) || in.Fix != "create the file" {
		t.Fatalf("BadInput gave %#v, want an *InputError with the fix", err)
	}
	if got, want := err.Error(), `config "c.yaml": file does not exist`; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Error("BadInput's %w does not unwrap to the cause")
	}
}

func TestWithHint(t *testing.T) {
	if usererr.WithHint(nil, "anything") != nil {
		t.Error("WithHint(nil) is not nil")
	}
	cause := errors.New("quota exceeded")
	err := usererr.WithHint(cause, "ask for more")
	var h *usererr.HintError
	if !errors.As(err, &h) || h.Hint != "ask for more" || err.Error() != "quota exceeded" || !errors.Is(err, cause) {
		t.Errorf("WithHint gave %#v", err)
	}
	var in *usererr.InputError
	if errors.As(err, &in) {
		t.Error("a hint is not bad input, but errors.As finds an *InputError")
	}
}

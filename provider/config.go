package provider

import (
	"errors"
	"path/filepath"
	"strings"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

// This file is the one way a provider's ParseConfig fills in defaults and
// checks its section of cluster.yaml.

// ResolvePath makes path absolute, taking a relative path relative to
// baseDir (the config file's directory; "" = the working directory). An
// empty path stays empty.
func ResolvePath(baseDir, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	if !filepath.IsAbs(path) && baseDir != "" {
		path = filepath.Join(baseDir, path)
	}
	return filepath.Abs(path)
}

// Default sets *v to def when it is the zero value (a string of spaces
// counts as empty): how providers fill in their config's defaults.
func Default[T comparable](v *T, def T) {
	var zero T
	if s, ok := any(*v).(string); *v == zero || ok && strings.TrimSpace(s) == "" {
		*v = def
	}
}

// Problems collects what is wrong in a provider's config section, so that
// ParseConfig reports every problem at once. Each is a usererr.BadInput
// (exit 2) whose message names the section ("qemu config: …").
type Problems struct {
	section, dir string
	errs         []error
}

// NewProblems checks section (the provider's name) of a config file in
// configDir (relative paths are taken from there).
func NewProblems(section, configDir string) *Problems {
	return &Problems{section: section, dir: configDir}
}

// Bad records a problem, with what to do about it (fix).
func (p *Problems) Bad(fix, format string, args ...any) {
	p.errs = append(p.errs, usererr.BadInput(fix, p.section+" config: "+format, args...))
}

// Add records problems found elsewhere (already user errors, or nil).
func (p *Problems) Add(errs ...error) { p.errs = append(p.errs, errs...) }

// Abs makes the path *path of key absolute (ResolvePath), recording a
// problem, with fix, when it cannot.
func (p *Problems) Abs(key, fix string, path *string) {
	a, err := ResolvePath(p.dir, *path)
	if err != nil {
		p.Bad(fix, "%s %q: %v", key, *path, err)
		return
	}
	*path = a
}

// Err is every problem recorded, joined; nil when there is none.
func (p *Problems) Err() error { return errors.Join(p.errs...) }

// Package toolchain knows which Go releases carry every published security
// fix to crypto/tls and crypto/x509, the packages the node API (mutual TLS)
// and the node certificates rely on, and checks a Go version against that
// list. Its test fails when the toolchain that built it is older than the
// list says, so CI refuses to build clusterctl with an unpatched Go.
//
// The list (Patched) is the project's own; update it when Go publishes a
// security release that touches crypto/tls or crypto/x509. Its sources are
// the Go release history (go.dev/doc/devel/release, kept in the
// golang/website repository as internal/history/release.go) and the
// golang-announce security announcements; the releases after the history
// we could read (go1.26.8 and later, go1.27.x) were checked by comparing
// the crypto/tls and crypto/x509 sources of the toolchain modules.
package toolchain

import (
	"fmt"
	"strconv"
	"strings"
)

// Release is one Go minor line's floor.
type Release struct {
	// Minimum is the first release of the line that has every security fix
	// to crypto/tls and crypto/x509 published so far ("go1.26.10"); empty
	// when the line gets no more fixes (it is out of support).
	Minimum string
	// Why names the releases that moved the floor.
	Why string
}

// Patched maps a Go minor line ("go1.26") to its floor. A line missing
// here is refused: nobody has checked it yet.
var Patched = map[string]Release{
	"go1.25": {
		Why: "unsupported since go1.27.0: the crypto/x509 fix of go1.26.10 and go1.27.3 (CVE-2026-111943) was not backported; " +
			"before that: go1.25.2 (tls, x509), go1.25.5 (x509, two), go1.25.6, go1.25.7 (tls), go1.25.9 (tls, x509), go1.25.11 (x509), go1.25.12, go1.25.13 (tls)",
	},
	"go1.26": {
		Minimum: "go1.26.10",
		Why: "go1.26.1 (x509), go1.26.2 (tls, x509), go1.26.4 (x509), go1.26.5 (tls), go1.26.6 (tls), " +
			"go1.26.9 or go1.26.10 (tls: ECH outer extensions), go1.26.10 (x509: distrusted intermediates, CVE-2026-111943); go1.26.11 changes neither package",
	},
	"go1.27": {
		Minimum: "go1.27.3",
		Why:     "go1.27.2 (tls: ECH outer extensions), go1.27.3 (x509: distrusted intermediates, CVE-2026-111943); go1.27.4 changes only the advertised signature algorithms",
	},
}

// version is a parsed Go release version.
type version struct{ major, minor, patch int }

// parse reads "go1.26.10" (or "go1.26", the .0 release). Pre-releases
// ("go1.27rc1") and development builds are not releases and fail.
func parse(v string) (version, error) {
	rest, ok := strings.CutPrefix(v, "go")
	if !ok {
		return version{}, fmt.Errorf("%q is not a Go release version", v)
	}
	parts := strings.Split(rest, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return version{}, fmt.Errorf("%q is not a Go release version", v)
	}
	var n [3]int
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil || x < 0 || strconv.Itoa(x) != p {
			return version{}, fmt.Errorf("%q is not a Go release version", v)
		}
		n[i] = x
	}
	return version{n[0], n[1], n[2]}, nil
}

func (v version) less(w version) bool {
	if v.major != w.major {
		return v.major < w.major
	}
	if v.minor != w.minor {
		return v.minor < w.minor
	}
	return v.patch < w.patch
}

// Check returns nil when Go release v (as runtime.Version reports it, such
// as "go1.26.11") has every security fix to crypto/tls and crypto/x509 that
// Patched knows, and otherwise an error that says which release to use.
func Check(v string) error {
	// runtime.Version may carry experiments: "go1.26.11 X:nodwarf5".
	v, _, _ = strings.Cut(v, " ")
	got, err := parse(v)
	if err != nil {
		return fmt.Errorf("toolchain %s: cannot tell whether it has the crypto/tls and crypto/x509 security fixes: %w", v, err)
	}
	line := fmt.Sprintf("go%d.%d", got.major, got.minor)
	r, ok := Patched[line]
	switch {
	case !ok:
		return fmt.Errorf("toolchain %s: the %s line is not in internal/toolchain's list; check the Go security releases for crypto/tls and crypto/x509 and add it", v, line)
	case r.Minimum == "":
		return fmt.Errorf("toolchain %s: the %s line gets no more security fixes (%s); use a supported Go", v, line, r.Why)
	}
	min, err := parse(r.Minimum)
	if err != nil {
		return fmt.Errorf("internal/toolchain: %s: %w", line, err)
	}
	if got.less(min) {
		return fmt.Errorf("toolchain %s lacks security fixes to crypto/tls or crypto/x509: use %s or later (%s)", v, r.Minimum, r.Why)
	}
	return nil
}

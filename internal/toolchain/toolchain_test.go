package toolchain

import (
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestBuiltWithPatchedGo fails when the Go that built this test lacks a
// security fix to crypto/tls or crypto/x509: CI then builds nothing with it.
// go.mod's toolchain line makes the go command (GOTOOLCHAIN=auto, the
// default) fetch a patched one.
func TestBuiltWithPatchedGo(t *testing.T) {
	if err := Check(runtime.Version()); err != nil {
		t.Fatalf("%v\nfix: run with the toolchain go.mod names (GOTOOLCHAIN=auto, the default), or set GOTOOLCHAIN to a patched release", err)
	}
	t.Logf("built with %s", runtime.Version())
}

// TestGoModToolchain: go.mod's toolchain line names a patched release, and
// its go line (the minimum Go that may build the module) is not newer.
func TestGoModToolchain(t *testing.T) {
	data, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var goLine, toolchainLine string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "go" {
			goLine = f[1]
		}
		if len(f) == 2 && f[0] == "toolchain" {
			toolchainLine = f[1]
		}
	}
	if toolchainLine == "" {
		t.Fatal("go.mod has no toolchain line")
	}
	if err := Check(toolchainLine); err != nil {
		t.Errorf("go.mod's toolchain %s: %v", toolchainLine, err)
	}
	min, err1 := parse("go" + goLine)
	tc, err2 := parse(toolchainLine)
	if err1 != nil || err2 != nil || tc.less(min) {
		t.Errorf("go.mod: go %s, toolchain %s: want a parsable go line no newer than the toolchain (%v, %v)", goLine, toolchainLine, err1, err2)
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		version string
		want    string // "" when patched, else a part of the error
	}{
		{"go1.26.11", ""},
		{"go1.26.10", ""},
		{"go1.26.10 X:nodwarf5", ""},
		{"go1.26.9", "use go1.26.10 or later"},
		{"go1.26.8", "lacks security fixes to crypto/tls or crypto/x509"},
		{"go1.26", "use go1.26.10 or later"},
		{"go1.26.0", "use go1.26.10 or later"},
		{"go1.27.3", ""},
		{"go1.27.2", "use go1.27.3 or later"},
		{"go1.25.14", "gets no more security fixes"},
		{"go1.28.0", "not in internal/toolchain's list"},
		{"go1.27rc1", "not a Go release version"},
		{"devel go1.27-abcdef", "not a Go release version"},
		{"go1.26.010", "not a Go release version"},
	}
	for _, tt := range tests {
		err := Check(tt.version)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Check(%q) = %v, want nil", tt.version, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Check(%q) = %v, want an error containing %q", tt.version, err, tt.want)
		}
	}
}

// TestPatchedIsWellFormed: every key is a minor line and every floor a
// release of that line.
func TestPatchedIsWellFormed(t *testing.T) {
	for line, r := range Patched {
		v, err := parse(line)
		if err != nil || v.patch != 0 || strings.Count(line, ".") != 1 {
			t.Errorf("key %q is not a Go minor line (go1.N)", line)
			continue
		}
		if r.Why == "" {
			t.Errorf("%s: no source given", line)
		}
		if r.Minimum == "" {
			continue
		}
		m, err := parse(r.Minimum)
		if err != nil || m.major != v.major || m.minor != v.minor {
			t.Errorf("%s: minimum %q is not a release of that line", line, r.Minimum)
		}
	}
}

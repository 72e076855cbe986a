package agent

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// The snapshot is 0600 from the first boot, whatever the umask: serf itself
// would create it 0644.
func TestSnapshotIsPrivateFromTheFirstBoot(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	cfg := testConfig("red")
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	snap := filepath.Join(cfg.StateDir, snapshotFile)
	mode := func(when string) {
		t.Helper()
		fi, err := os.Stat(snap)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: the snapshot is %v, want 0600", when, fi.Mode().Perm())
		}
	}
	a := startAgent(t, cfg, testOptions())
	mode("first boot, serf running")
	a.stop(t)
	mode("after the first run")

	// A snapshot left readable (an older agent) is made private.
	if err := os.Chmod(snap, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := prepareState(cfg, discardLogger()); err != nil {
		t.Fatal(err)
	}
	mode("second boot")
}

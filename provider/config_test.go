package provider

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

// Default fills zero values and blank strings, and keeps anything set.
func TestDefault(t *testing.T) {
	s, blank, set := "", "  ", "kept"
	Default(&s, "def")
	Default(&blank, "def")
	Default(&set, "def")
	n, m := 0, 3
	Default(&n, 1024)
	Default(&m, 1024)
	var d time.Duration
	Default(&d, 30*time.Second)
	if s != "def" || blank != "def" || set != "kept" || n != 1024 || m != 3 || d != 30*time.Second {
		t.Errorf("Default: %q %q %q %d %d %v", s, blank, set, n, m, d)
	}
}

// Problems reports every problem at once, each a user error naming the
// section, and makes relative paths absolute from the config's directory.
func TestProblems(t *testing.T) {
	pr := NewProblems("qemu", "/etc/cluster")
	if pr.Err() != nil {
		t.Fatalf("no problem yet: %v", pr.Err())
	}
	image := "disk.qcow2"
	pr.Abs("image", "fix it", &image)
	pr.Bad("use accel: auto, tcg or kvm", "unknown accel %q", "kvn")
	pr.Add(nil, usererr.BadInput("set cpus", "cpus 0 is out of range"))
	err := pr.Err()
	if image != "/etc/cluster/disk.qcow2" {
		t.Errorf("Abs: %q, want /etc/cluster/disk.qcow2", image)
	}
	if err == nil || !strings.Contains(err.Error(), `qemu config: unknown accel "kvn"`) || !strings.Contains(err.Error(), "cpus 0 is out of range") {
		t.Fatalf("Err = %v, want both problems, the first naming the section", err)
	}
	var ie *usererr.InputError
	if !errors.As(err, &ie) {
		t.Errorf("Err = %v, want a user error (exit 2)", err)
	}
}

package virtualbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/virtualbox/internal/vboxtest"
)

// TestDeleteWaitsForTheSession: right after a power-off the VM process
// still holds the machine's session, and VirtualBox refuses unregistervm
// with VBOX_E_INVALID_OBJECT_STATE, "Cannot unregister the machine '...'
// while it is locked" (Machine::unregister, MachineImpl.cpp). down waits
// for the session instead of failing.
func TestDeleteWaitsForTheSession(t *testing.T) {
	r := newRig(t, "")
	r.setFaults(vboxtest.Faults{SessionRelease: 400 * time.Millisecond})
	c := ctx(t)
	inst, err := r.p.Create(c, r.spec("red", 0))
	if err != nil {
		t.Fatal(err)
	}
	before := len(r.calls())
	if err := r.p.Delete(c, inst.ID); err != nil {
		t.Fatalf("Delete right after the power-off: %v", err)
	}
	n := 0
	for _, call := range r.calls()[before:] {
		if call[0] == "unregistervm" {
			n++
		}
	}
	if n < 2 {
		t.Errorf("unregistervm ran %d times; want refusals while the session was held, then success", n)
	}
	if len(r.registry().Machines) != 0 {
		t.Error("the VM is still registered")
	}

	// A session that is never released within unlockTimeout fails down
	// with VirtualBox's own message.
	r.setFaults(vboxtest.Faults{SessionRelease: time.Hour})
	inst, err = r.p.Create(c, r.spec("red", 0))
	if err != nil {
		t.Fatal(err)
	}
	r.p.unlockTimeout = 100 * time.Millisecond
	err = r.p.Delete(c, inst.ID)
	if err == nil || !strings.Contains(err.Error(), "Cannot unregister the machine 'red.lab' while it is locked") {
		t.Fatalf("Delete with a session that stays locked: %v", err)
	}
}

// TestDryRunShowsTheNetwork: on a fresh host render shows the commands up
// runs to make the host-only network, the very ones PrepareNetwork then
// runs; once it exists, render shows none and names it.
func TestDryRunShowsTheNetwork(t *testing.T) {
	for _, tc := range []struct {
		goos string
		want []string // the network commands, as PrepareNetwork runs them
	}{
		{"linux", []string{
			"VBoxManage hostonlyif create",
			"VBoxManage hostonlyif ipconfig vboxnet0 --ip 192.168.56.1 --netmask 255.255.255.0"}},
		{"darwin", []string{
			"VBoxManage hostonlynet add --name=clusterctl --netmask=255.255.255.0 --lower-ip=192.168.56.1 --upper-ip=192.168.56.9 --enable"}},
	} {
		t.Run(tc.goos, func(t *testing.T) {
			r := newRig(t, "")
			r.p.goos = tc.goos
			c := ctx(t)
			lines, err := r.p.DryRun(c, r.spec("red", 0))
			if err != nil {
				t.Fatal(err)
			}
			var shown []string
			for _, l := range lines {
				if strings.HasPrefix(l, "VBoxManage hostonly") {
					shown = append(shown, strings.ReplaceAll(l, "'<new host-only interface 192.168.56.1>'", "vboxnet0"))
				}
			}
			before := len(r.calls())
			if err := preflight(c, r.p, []provider.NodeSpec{r.spec("red", 0)}); err != nil {
				t.Fatal(err)
			}
			var ran []string
			for _, call := range r.calls()[before:] {
				if strings.HasPrefix(call[0], "hostonly") {
					ran = append(ran, "VBoxManage "+strings.Join(call, " "))
				}
			}
			if strings.Join(shown, "\n") != strings.Join(tc.want, "\n") || strings.Join(ran, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("render shows:\n%s\nPrepareNetwork ran:\n%s\nwant:\n%s", strings.Join(shown, "\n"), strings.Join(ran, "\n"), strings.Join(tc.want, "\n"))
			}

			p := r.provider("")
			p.goos = tc.goos
			lines, err = p.DryRun(c, r.spec("red", 0))
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Join(lines, "\n")
			if strings.Contains(text, "VBoxManage hostonly") || !strings.Contains(text, "--nic2 hostonly") {
				t.Errorf("render once the network exists:\n%s", text)
			}
		})
	}
}

// TestDownAllCleansTheBaseImage: after the last node is gone, the base
// image is no longer registered in VirtualBox (the file stays); the
// host-only interface stays, and Remains names it with the command that
// removes it.
func TestDownAllCleansTheBaseImage(t *testing.T) {
	r := newRig(t, "")
	c := ctx(t)
	inst, err := r.p.Create(c, r.spec("red", 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.p.Delete(c, inst.ID); err != nil {
		t.Fatal(err)
	}
	if !registered(r, r.image) {
		t.Fatal("the base image is not registered after Delete; the test shows nothing")
	}
	if err := r.p.CleanupCluster(c, "lab"); err != nil {
		t.Fatal(err)
	}
	if registered(r, r.image) {
		t.Error("the base image is still registered after CleanupCluster")
	}
	if _, err := os.Stat(r.image); err != nil {
		t.Errorf("base image file: %v, want it kept", err)
	}
	reg := r.registry()
	if len(reg.HostOnlyIfs) != 1 {
		t.Errorf("host-only interfaces %+v, want vboxnet0 kept", reg.HostOnlyIfs)
	}
	lines, err := r.p.Remains(c, "lab")
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "host-only interface vboxnet0 (192.168.56.1/24) stays") || !strings.Contains(lines[0], "VBoxManage hostonlyif remove vboxnet0") {
		t.Errorf("Remains = %q", lines)
	}
	if err := r.p.CleanupCluster(c, "lab"); err != nil {
		t.Errorf("a second CleanupCluster: %v", err)
	}
}

// TestCleanupKeepsASharedBaseImage: another cluster's linked clone still
// hangs off the base image, so it stays registered, and Remains says why.
func TestCleanupKeepsASharedBaseImage(t *testing.T) {
	r := newRig(t, "")
	c := ctx(t)
	other := r.provider("")
	other.env.Cluster, other.env.Dir = "other", filepath.Join(r.root, "state-other")
	spec := r.spec("blue", 1)
	spec.Dir = ""
	if _, err := other.Create(c, spec); err != nil {
		t.Fatal(err)
	}
	inst, err := r.p.Create(c, r.spec("red", 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.p.Delete(c, inst.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.p.CleanupCluster(c, "lab"); err != nil {
		t.Fatal(err)
	}
	if !registered(r, r.image) {
		t.Fatal("CleanupCluster closed a base image another cluster's clone uses")
	}
	lines, err := r.p.Remains(c, "lab")
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || !strings.Contains(lines[1], "stays registered") || !strings.Contains(lines[1], "state-other/nodes/blue/disk.vdi") {
		t.Errorf("Remains = %q", lines)
	}
}

func registered(r *rig, path string) bool {
	for _, md := range r.registry().Media {
		if md.Location == path {
			return true
		}
	}
	return false
}

package virtualbox

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/virtualbox/internal/vboxtest"
)

// TestStopStart: the exact VBoxManage commands of Stop and Start against
// the fake, with a guest that takes two looks to shut down after the ACPI
// power button (VMState stays "running" meanwhile, as VirtualBox shows
// it), and idempotency by reading the state first.
func TestStopStart(t *testing.T) {
	r := newRig(t, "")
	r.setFaults(vboxtest.Faults{ACPIShutdown: 2})
	c := ctx(t)
	inst, err := r.p.Create(c, r.spec("red", 0))
	if err != nil {
		t.Fatal(err)
	}
	seedBefore := r.registry().Machines[0].Controllers

	steps := []struct {
		name string
		do   func() error
		want provider.State
	}{
		{"stop", func() error { return r.p.Stop(c, inst.ID) }, provider.StateStopped},
		{"stop-again", func() error { return r.p.Stop(c, inst.ID) }, provider.StateStopped},
		{"start", func() error { return r.p.Start(c, inst.ID) }, provider.StateRunning},
		{"start-again", func() error { return r.p.Start(c, inst.ID) }, provider.StateRunning},
	}
	var tr strings.Builder
	for _, s := range steps {
		before := len(r.calls())
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		tr.WriteString("# " + s.name + "\n" + r.transcript(r.calls()[before:]))
		st, err := r.p.Status(c, inst.ID)
		if err != nil || st.State != s.want {
			t.Fatalf("Status after %s: %+v %v, want %s", s.name, st, err, s.want)
		}
	}
	golden(t, "stop-start.golden", tr.String())
	m := r.registry().Machines[0]
	if m.State != "running" {
		t.Errorf("VirtualBox has the VM %s, want running", m.State)
	}
	// The same disk, seed ISO and MACs as Create gave it.
	if len(m.Controllers) != len(seedBefore) || m.NICs["macaddress2"] != "525400AA000A" {
		t.Errorf("after Start the VM has controllers %+v and NICs %v; want Create's", m.Controllers, m.NICs)
	}

	// A paused VM cannot take the ACPI button: Stop powers it off; Start
	// of a paused VM resumes it.
	if _, err := r.vbox("controlvm", inst.ID, "pause"); err != nil {
		t.Fatal(err)
	}
	if err := r.p.Start(c, inst.ID); err != nil || r.registry().Machines[0].State != "running" {
		t.Fatalf("Start of a paused VM: %v, VM %s", err, r.registry().Machines[0].State)
	}
	if _, err := r.vbox("controlvm", inst.ID, "pause"); err != nil {
		t.Fatal(err)
	}
	before := len(r.calls())
	if err := r.p.Stop(c, inst.ID); err != nil {
		t.Fatalf("Stop of a paused VM: %v", err)
	}
	if got := r.transcript(r.calls()[before:]); got != "VBoxManage showvminfo red.lab --machinereadable\nVBoxManage controlvm red.lab poweroff\n" {
		t.Errorf("Stop of a paused VM ran:\n%s", got)
	}

	if err := r.p.Delete(c, inst.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.p.Stop(c, inst.ID); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("Stop of a deleted node: %v, want ErrNotFound", err)
	}
	if err := r.p.Start(c, inst.ID); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("Start of a deleted node: %v, want ErrNotFound", err)
	}
}

// TestStopFallbackAndStartWaitsForTheSession: a guest that ignores the
// ACPI power button is powered off hard after powerdown_timeout; startvm
// right after, while the VM process still holds the session, is refused
// as locked and asked again until it works.
func TestStopFallbackAndStartWaitsForTheSession(t *testing.T) {
	r := newRig(t, "")
	c := ctx(t)
	inst, err := r.p.Create(c, r.spec("red", 0))
	if err != nil {
		t.Fatal(err)
	}
	r.setFaults(vboxtest.Faults{ACPIIgnored: true, SessionRelease: 400 * time.Millisecond})
	before := len(r.calls())
	if err := r.p.Stop(c, inst.ID); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	tr := r.transcript(r.calls()[before:])
	acpi := strings.Index(tr, "controlvm red.lab acpipowerbutton")
	hard := strings.Index(tr, "controlvm red.lab poweroff")
	if acpi < 0 || hard < acpi {
		t.Errorf("want the ACPI power button, then poweroff after powerdown_timeout; got:\n%s", tr)
	}
	before = len(r.calls())
	if err := r.p.Start(c, inst.ID); err != nil {
		t.Fatalf("Start right after a hard power-off: %v", err)
	}
	n := 0
	for _, call := range r.calls()[before:] {
		if call[0] == "startvm" {
			n++
		}
	}
	if n < 2 || r.registry().Machines[0].State != "running" {
		t.Errorf("startvm ran %d times, VM %s; want refusals while the session was held, then running", n, r.registry().Machines[0].State)
	}
	if err := r.p.Delete(c, inst.ID); err != nil {
		t.Fatal(err)
	}
}

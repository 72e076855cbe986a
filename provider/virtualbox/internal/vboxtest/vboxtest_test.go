package vboxtest

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = Main(args, &o, &e)
	return code, o.String(), e.String()
}

func TestRejectsWhatVBoxManageRejects(t *testing.T) {
	t.Setenv("VBOX_USER_HOME", t.TempDir())
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"frobnicate"}, 2, "VBoxManage: error: Invalid command 'frobnicate'"},
		{[]string{"createvm", "--name", "a", "--colour", "red"}, 2, "Unknown option: --colour"},
		{[]string{"modifyvm", "nope", "--memory", "512"}, 1, "Could not find a registered machine named 'nope'"},
		{[]string{"list", "everything"}, 2, "Unknown subcommand"},
		{[]string{"createmedium", "disk", "--filename", "/x.vdi"}, 2, "--size is required"},
	} {
		code, _, stderr := run(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, tc.code, tc.msg)
		}
	}
}

func TestStatePersistsAcrossCalls(t *testing.T) {
	home := t.TempDir()
	t.Setenv("VBOX_USER_HOME", home)
	base := filepath.Join(t.TempDir(), "base.vdi")
	if err := WriteVDI(base, "", 1<<30); err != nil {
		t.Fatal(err)
	}
	if code, out, e := run(t, "createvm", "--name", `we"ird`, "--basefolder", t.TempDir(), "--register"); code != 0 || !strings.Contains(out, `Virtual machine 'we"ird' is created and registered.`) {
		t.Fatalf("createvm: %d %q %q", code, out, e)
	}
	if code, _, e := run(t, "modifyvm", `we"ird`, "--memory", "999", "--macaddress2", "nothex"); code != 1 || !strings.Contains(e, "Invalid MAC address format") {
		t.Errorf("bad MAC: %d %q", code, e)
	}
	// A failed modifyvm saves nothing; a good one does.
	if code, _, e := run(t, "modifyvm", `we"ird`, "--memory", "768"); code != 0 {
		t.Fatal(e)
	}
	if code, _, e := run(t, "storagectl", `we"ird`, "--name", "SATA", "--add", "sata"); code != 0 {
		t.Fatal(e)
	}
	if code, _, e := run(t, "storageattach", `we"ird`, "--storagectl", "SATA", "--port", "0", "--device", "0", "--type", "hdd", "--medium", base); code != 0 {
		t.Fatal(e)
	}
	_, out, _ := run(t, "showvminfo", `we"ird`, "--machinereadable")
	for _, want := range []string{`name="we\"ird"`, "memory=768", `VMState="poweroff"`, `"SATA-0-0"="` + base + `"`} {
		if !strings.Contains(out, want) {
			t.Errorf("showvminfo lacks %s:\n%s", want, out)
		}
	}
	if code, _, e := run(t, "closemedium", "disk", base); code != 1 || !strings.Contains(e, "still attached to 1 virtual machines") {
		t.Errorf("closemedium of an attached disk: %d %q", code, e)
	}
	if code, _, e := run(t, "controlvm", `we"ird`, "poweroff"); code != 1 || !strings.Contains(e, "is not currently running") {
		t.Errorf("poweroff of a stopped VM: %d %q", code, e)
	}
}

// TestSessionHeldAfterPowerOff: for SessionRelease after a power-off,
// unregistervm fails as Machine::unregister (MachineImpl.cpp) does, with
// VBOX_E_INVALID_OBJECT_STATE, and showvminfo shows the session's name.
func TestSessionHeldAfterPowerOff(t *testing.T) {
	home := t.TempDir()
	t.Setenv("VBOX_USER_HOME", home)
	if err := SetFaults(home, Faults{SessionRelease: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"createvm", "--name", "vm", "--basefolder", t.TempDir(), "--register"},
		{"startvm", "vm", "--type", "headless"},
		{"controlvm", "vm", "poweroff"},
	} {
		if code, _, e := run(t, args...); code != 0 {
			t.Fatalf("%v: %s", args, e)
		}
	}
	code, _, e := run(t, "unregistervm", "vm", "--delete")
	if code != 1 || !strings.Contains(e, "VBoxManage: error: Cannot unregister the machine 'vm' while it is locked") ||
		!strings.Contains(e, "code VBOX_E_INVALID_OBJECT_STATE (0x80bb0007)") {
		t.Errorf("unregistervm right after poweroff: exit %d, %q", code, e)
	}
	if _, out, _ := run(t, "showvminfo", "vm", "--machinereadable"); !strings.Contains(out, `VMState="poweroff"`) || !strings.Contains(out, `SessionName="headless"`) {
		t.Errorf("showvminfo while the session is held:\n%s", out)
	}
	time.Sleep(300 * time.Millisecond)
	if code, _, e := run(t, "unregistervm", "vm", "--delete"); code != 0 {
		t.Errorf("unregistervm once the session is released: %s", e)
	}
}

// TestGroupFolder: createvm puts the VM in <basefolder><group>/<name>/, as
// VirtualBox::composeMachineFilename (VirtualBoxImpl.cpp) composes it from
// the primary group.
func TestGroupFolder(t *testing.T) {
	t.Setenv("VBOX_USER_HOME", t.TempDir())
	base := t.TempDir()
	_, out, e := run(t, "createvm", "--name", "a.lab", "--groups", "/clusterctl/lab,/other", "--basefolder", base, "--register")
	want := filepath.Join(base, "clusterctl", "lab", "a.lab", "a.lab.vbox")
	if !strings.Contains(out, "Settings file: '"+want+"'") {
		t.Errorf("createvm: %q %q; want the settings file %s", out, e, want)
	}
	if _, out, _ = run(t, "createvm", "--name", "b", "--basefolder", base); !strings.Contains(out, filepath.Join(base, "b", "b.vbox")) {
		t.Errorf("createvm without groups: %q", out)
	}
}

// TestPowerCycle: controlvm and startvm as VirtualBox has them. The ACPI
// power button leaves VMState "running" while the guest shuts down
// (Faults.ACPIShutdown showvminfo calls); controlvm of a VM that is not
// running is VBOX_E_INVALID_VM_STATE "is not currently running"; the
// power button of a paused VM is Console::PowerButton's "Invalid machine
// state: Paused"; startvm of a running VM finds it locked.
func TestPowerCycle(t *testing.T) {
	home := t.TempDir()
	t.Setenv("VBOX_USER_HOME", home)
	if err := SetFaults(home, Faults{ACPIShutdown: 2}); err != nil {
		t.Fatal(err)
	}
	if code, _, e := run(t, "createvm", "--name", "vm", "--basefolder", t.TempDir(), "--register"); code != 0 {
		t.Fatal(e)
	}
	state := func() string {
		t.Helper()
		_, out, _ := run(t, "showvminfo", "vm", "--machinereadable")
		for _, l := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(l, "VMState="); ok {
				return strings.Trim(v, `"`)
			}
		}
		return "?"
	}
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"controlvm", "vm", "acpipowerbutton"}, 1, "Machine 'vm' is not currently running"},
		{[]string{"startvm", "vm", "--type", "headless"}, 0, `VM "vm" has been successfully started.`},
		{[]string{"startvm", "vm", "--type", "headless"}, 1, "is already locked by a session"},
		{[]string{"controlvm", "vm", "pause"}, 0, ""},
		{[]string{"controlvm", "vm", "acpipowerbutton"}, 1, "Invalid machine state: Paused"},
		{[]string{"controlvm", "vm", "resume"}, 0, ""},
		{[]string{"controlvm", "vm", "acpipowerbutton"}, 0, ""},
	} {
		code, out, e := run(t, c.args...)
		if code != c.code || !strings.Contains(out+e, c.msg) {
			t.Errorf("%v: exit %d, %q %q; want exit %d and %q", c.args, code, out, e, c.code, c.msg)
		}
	}
	if got := state(); got != "running" {
		t.Errorf("first showvminfo after the ACPI power button: %s, want running (the guest shuts down)", got)
	}
	if got := state(); got != "poweroff" {
		t.Errorf("second showvminfo: %s, want poweroff", got)
	}
	if code, _, e := run(t, "controlvm", "vm", "acpipowerbutton"); code != 1 || !strings.Contains(e, "VBOX_E_INVALID_VM_STATE") {
		t.Errorf("ACPI power button of a powered-off VM: %d %q", code, e)
	}
}

package virtualbox

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/providertest"
	"github.com/clusterctl/clusterctl/provider/virtualbox/internal/vboxtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (run go test -update if the change is intended)\n--- got:\n%s--- want:\n%s", name, got, want)
	}
}

func TestConformance(t *testing.T) {
	r := newRig(t, "")
	i := 0
	providertest.Run(t, providertest.Harness{
		Provider: r.p,
		Cluster:  "lab",
		Spec: func(t *testing.T, name string) provider.NodeSpec {
			i++
			s := r.spec(name, i)
			if err := os.MkdirAll(s.Dir, 0o700); err != nil {
				t.Fatal(err)
			}
			return s
		},
	})
}

// TestCreateDelete pins the VBoxManage sequences of create and delete for
// both clone modes, and checks what VirtualBox holds after each.
func TestCreateDelete(t *testing.T) {
	for _, clone := range []string{CloneLinked, CloneFull} {
		t.Run(clone, func(t *testing.T) {
			r := newRig(t, "clone: "+clone+"\n")
			c := ctx(t)
			spec := r.spec("red", 0)
			if err := preflight(c, r.p, []provider.NodeSpec{spec}); err != nil {
				t.Fatalf("Preflight: %v", err)
			}
			inst, err := r.p.Create(c, spec)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if inst.ID != "red.lab" || inst.Name != "red" || inst.State != provider.StateRunning || inst.Address != "192.168.56.11" {
				t.Errorf("Create returned %+v", inst)
			}
			golden(t, "create-"+clone+".golden", r.transcript(r.calls()))

			reg := r.registry()
			if len(reg.Machines) != 1 {
				t.Fatalf("VirtualBox has %d machines, want 1", len(reg.Machines))
			}
			m := reg.Machines[0]
			np := r.p.paths("red")
			// createvm --groups /clusterctl/lab --basefolder DIR puts the VM in
			// DIR/clusterctl/lab/red.lab/ (VirtualBox::composeMachineFilename,
			// VirtualBoxImpl.cpp); its VBox.log, named in hints, is there.
			if m.State != "running" || m.Memory != 512 || m.CPUs != 1 || m.CfgFile != filepath.Join(np.Dir, "clusterctl", "lab", "red.lab", "red.lab.vbox") {
				t.Errorf("machine %+v", m)
			}
			if want := filepath.Join(filepath.Dir(m.CfgFile), "Logs", "VBox.log"); np.VBoxLog() != want {
				t.Errorf("the provider names the VM's log %s, VirtualBox writes it to %s", np.VBoxLog(), want)
			}
			if m.NICs["nic1"] != "nat" || m.NICs["nic2"] != "hostonly" || m.NICs["hostonlyadapter2"] != "vboxnet0" || m.NICs["macaddress2"] != "525400AA000A" {
				t.Errorf("NICs %v: want NAT on 1, host-only vboxnet0 with the spec's MAC on 2", m.NICs)
			}
			if len(reg.HostOnlyIfs) != 1 || reg.HostOnlyIfs[0].IP != "192.168.56.1" {
				t.Errorf("host-only interfaces %+v, want vboxnet0 with 192.168.56.1", reg.HostOnlyIfs)
			}
			st, err := os.Stat(np.Seed)
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("seed ISO: %v, mode %v; want mode 0600 (it holds the gossip key)", err, st.Mode())
			}
			if _, err := os.Stat(np.Console); err != nil {
				t.Errorf("console log: %v (VirtualBox creates it at power-on)", err)
			}
			log, err := r.p.ConsoleLog(c, inst.ID)
			if err != nil || log == nil {
				t.Errorf("ConsoleLog: %q, %v", log, err)
			}

			before := len(r.calls())
			if err := r.p.Delete(c, inst.ID); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			golden(t, "delete-"+clone+".golden", r.transcript(r.calls()[before:]))
			reg = r.registry()
			if len(reg.Machines) != 0 {
				t.Errorf("machines left: %+v", reg.Machines)
			}
			for _, md := range reg.Media {
				if md.Location != r.image {
					t.Errorf("medium left registered: %+v", md)
				}
			}
			if _, err := os.Stat(np.Dir); !os.IsNotExist(err) {
				t.Errorf("node directory: %v, want it removed", err)
			}
			if _, err := os.Stat(r.image); err != nil {
				t.Errorf("base image: %v, want it untouched", err)
			}
			st2, err := r.p.Status(c, inst.ID)
			if err != nil || st2.State != provider.StateNotFound {
				t.Errorf("Status after Delete: %+v, %v", st2, err)
			}
		})
	}
}

// TestStatus maps what VirtualBox reports to the provider's states, and a
// VM that was paused or powered off by hand is seen so.
func TestStatus(t *testing.T) {
	for state, want := range map[string]provider.State{
		"running": provider.StateRunning, "starting": provider.StatePending, "restoring": provider.StatePending,
		"stopping": provider.StateStopping, "saving": provider.StateStopping,
		"poweroff": provider.StateStopped, "saved": provider.StateStopped, "paused": provider.StateStopped,
		"aborted": provider.StateError, "aborted-saved": provider.StateError, "gurumeditation": provider.StateError,
		"": provider.StateUnknown, "snapshotting": provider.StateUnknown,
	} {
		if got, detail := mapState(state, "/n/VBox.log"); got != want || detail == "" {
			t.Errorf("mapState(%q) = %q, %q; want %q with a detail", state, got, detail, want)
		}
	}

	r := newRig(t, "")
	c := ctx(t)
	inst, err := r.p.Create(c, r.spec("red", 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		cmd  string
		want provider.State
	}{{"pause", provider.StateStopped}, {"resume", provider.StateRunning}, {"poweroff", provider.StateStopped}} {
		if _, err := r.vbox("controlvm", "red.lab", step.cmd); err != nil {
			t.Fatal(err)
		}
		st, err := r.p.Status(c, inst.ID)
		if err != nil || st.State != step.want {
			t.Errorf("after controlvm %s: %+v, %v; want %q", step.cmd, st, err, step.want)
		}
	}
	if err := r.p.Delete(c, inst.ID); err != nil {
		t.Fatal(err)
	}
}

// TestPowerOffFallback: a guest that ignores the ACPI power button is
// powered off hard after powerdown_timeout.
func TestPowerOffFallback(t *testing.T) {
	r := newRig(t, "")
	r.setFaults(vboxtest.Faults{ACPIIgnored: true})
	c := ctx(t)
	inst, err := r.p.Create(c, r.spec("red", 0))
	if err != nil {
		t.Fatal(err)
	}
	before := len(r.calls())
	if err := r.p.Delete(c, inst.ID); err != nil {
		t.Fatal(err)
	}
	tr := r.transcript(r.calls()[before:])
	acpi := strings.Index(tr, "controlvm red.lab acpipowerbutton")
	hard := strings.Index(tr, "controlvm red.lab poweroff")
	unreg := strings.Index(tr, "unregistervm red.lab --delete")
	if acpi < 0 || hard < acpi || unreg < hard {
		t.Errorf("want ACPI power button, then poweroff, then unregistervm; got:\n%s", tr)
	}
	if len(r.registry().Machines) != 0 {
		t.Error("the VM is still registered")
	}
}

// TestDryRun shows the commands up would run, creates nothing and never
// shows the seed's contents.
func TestDryRun(t *testing.T) {
	r := newRig(t, "")
	lines, err := r.p.DryRun(ctx(t), r.spec("red", 0))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(strings.Join(lines, "\n")+"\n", r.root, "$TMP")
	golden(t, "dryrun.golden", text)
	if strings.Contains(text, secret) || strings.Contains(text, "cloud-config") {
		t.Errorf("the dry run shows the seed's contents:\n%s", text)
	}
	for _, c := range r.calls() {
		if c[0] != "--version" && c[0] != "list" {
			t.Errorf("the dry run ran VBoxManage %v", c)
		}
	}
	if _, err := os.Stat(filepath.Join(r.state, "nodes", "red")); !os.IsNotExist(err) {
		t.Errorf("the dry run made the node directory: %v", err)
	}
}

// TestDryRunWithoutVirtualBox: render works on a machine without VirtualBox.
func TestDryRunWithoutVirtualBox(t *testing.T) {
	r := newRig(t, "")
	t.Setenv("PATH", t.TempDir())
	p := r.provider("vboxmanage: ''\n")
	p.cfg.VBoxManage = ""
	if _, err := findVBoxManage(""); err == nil {
		t.Skip("a VirtualBox is installed on this machine")
	}
	lines, err := p.DryRun(ctx(t), r.spec("red", 0))
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(lines, "\n")
	if !strings.Contains(joined, "--hostonlyadapter2 '<new host-only interface 192.168.56.1>'") || !strings.Contains(joined, "VBoxManage startvm red.lab --type headless") {
		t.Errorf("dry run without VirtualBox:\n%s", joined)
	}
}

func TestTransientRetried(t *testing.T) {
	r := newRig(t, "")
	r.setFaults(vboxtest.Faults{Transient: map[string]int{"modifyvm": 2, "createvm": 1}})
	c := ctx(t)
	if _, err := r.p.Create(c, r.spec("red", 0)); err != nil {
		t.Fatalf("Create with transient failures: %v", err)
	}
	n := 0
	for _, call := range r.calls() {
		if call[0] == "modifyvm" {
			n++
		}
	}
	if n != 3 {
		t.Errorf("modifyvm ran %d times, want 3 (two transient failures, then success)", n)
	}

	r2 := newRig(t, "")
	r2.setFaults(vboxtest.Faults{Transient: map[string]int{"startvm": 10}})
	_, err := r2.p.Create(c, r2.spec("red", 0))
	if err == nil || !strings.Contains(err.Error(), "The object is not ready") {
		t.Fatalf("Create when startvm stays busy: %v; want the object-not-ready error", err)
	}
}

// TestErrorLineExitZero: an error: line fails the call even with exit 0.
func TestErrorLineExitZero(t *testing.T) {
	r := newRig(t, "")
	r.setFaults(vboxtest.Faults{ErrorExitZero: map[string]string{"storagectl": "Could not add the storage controller"}})
	_, err := r.p.Create(ctx(t), r.spec("red", 0))
	if err == nil || !strings.Contains(err.Error(), "Could not add the storage controller") {
		t.Fatalf("Create: %v; want the error line as the failure", err)
	}
	for _, c := range r.calls() {
		if c[0] == "storageattach" || c[0] == "startvm" {
			t.Errorf("Create went on after the failed storagectl: %v", c)
		}
	}
}

// TestCrashMidCreate: VBoxManage is killed in the middle of create. As
// after a crash of clusterctl itself, the caller may not have the instance
// id: `down` finds the node through List by name (as cluster does for a
// node recorded without an id) and Delete removes everything made so far.
func TestCrashMidCreate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		kill  map[string]int
		state provider.State
	}{
		{"after-disk-before-vm", map[string]int{"createvm": 0}, provider.StateError},
		{"after-vm-before-dvd", map[string]int{"storageattach": 1}, provider.StateStopped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, "")
			c := ctx(t)
			r.setFaults(vboxtest.Faults{Kill: tc.kill})
			if _, err := r.p.Create(c, r.spec("red", 0)); err == nil {
				t.Fatal("Create succeeded; the fault did not fire")
			}
			list, err := r.p.List(c, "lab")
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 1 || list[0].Name != "red" || list[0].State != tc.state {
				t.Fatalf("List after the crash: %+v; want red in state %q", list, tc.state)
			}
			if err := r.p.Delete(c, list[0].ID); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			reg := r.registry()
			if len(reg.Machines) != 0 {
				t.Errorf("machines left: %+v", reg.Machines)
			}
			for _, md := range reg.Media {
				if strings.HasPrefix(md.Location, r.state) {
					t.Errorf("medium left: %+v", md)
				}
			}
			if _, err := os.Stat(filepath.Join(r.state, "nodes", "red")); !os.IsNotExist(err) {
				t.Errorf("node directory left: %v", err)
			}
			if list, _ := r.p.List(c, "lab"); len(list) != 0 {
				t.Errorf("List after down: %+v", list)
			}
		})
	}
}

func TestEnvVBoxManageWins(t *testing.T) {
	r := newRig(t, "")
	t.Setenv(EnvVBoxManage, r.vbm)
	p := r.provider("vboxmanage: /nonexistent/VBoxManage\n")
	if _, err := p.Create(ctx(t), r.spec("red", 0)); err != nil {
		t.Fatalf("Create with %s set: %v", EnvVBoxManage, err)
	}
	t.Setenv(EnvVBoxManage, filepath.Join(r.root, "nope"))
	p = r.provider("")
	inputError(t, preflight(ctx(t), p, nil), EnvVBoxManage, EnvVBoxManage)
}

func TestExampleConfig(t *testing.T) {
	b, err := os.ReadFile("../../examples/virtualbox.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		VirtualBox yamlNode `yaml:"virtualbox"`
	}
	if err := unmarshalYAML(b, &doc); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(provider.Env{Config: doc.VirtualBox.Node, ConfigDir: "/home/me/cluster"})
	if err != nil {
		t.Fatalf("the example's virtualbox: section: %v", err)
	}
	if !strings.HasPrefix(cfg.Image, "/home/me/cluster/") || !strings.HasSuffix(cfg.Image, ".vdi") {
		t.Errorf("image %q: want a .vdi path relative to the config's directory", cfg.Image)
	}
	if cfg.Prefix().String() != "192.168.56.0/24" || cfg.Host().String() != "192.168.56.1" {
		t.Errorf("network %s host %s", cfg.Prefix(), cfg.Host())
	}
}

var _ = context.Background

package virtualbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/virtualbox/internal/vboxtest"
)

// nothingMade asserts that no VBoxManage call changed anything and no node
// directory was made: what bad input must guarantee.
func (r *rig) nothingMade(t *testing.T) {
	t.Helper()
	for _, c := range r.calls() {
		switch c[0] {
		case "--version", "list", "showvminfo":
		default:
			t.Errorf("VBoxManage %s ran; bad input must create nothing", strings.Join(c, " "))
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(r.state, "nodes")); len(entries) > 0 {
		t.Errorf("node directories were made: %v", entries)
	}
}

func TestNotInstalled(t *testing.T) {
	r := newRig(t, "")
	t.Setenv("PATH", t.TempDir())
	if _, err := findVBoxManage(""); err == nil {
		t.Skip("a VirtualBox is installed on this machine")
	}
	p := r.provider("vboxmanage: ''\n")
	p.cfg.VBoxManage = ""
	err := preflight(ctx(t), p, []provider.NodeSpec{r.spec("red", 0)})
	inputError(t, err, "VirtualBox is not installed: VBoxManage not found", "install VirtualBox")

	p = r.provider("vboxmanage: " + filepath.Join(r.root, "no", "VBoxManage") + "\n")
	_, err = p.Create(ctx(t), r.spec("red", 0))
	inputError(t, err, "is not an executable", "vboxmanage")
}

func TestKernelDriverMissing(t *testing.T) {
	r := newRig(t, "")
	r.setFaults(vboxtest.Faults{NoDriver: true})
	err := preflight(ctx(t), r.p, []provider.NodeSpec{r.spec("red", 0)})
	inputError(t, err, "kernel driver is not loaded (/dev/vboxdrv)", "sudo /sbin/vboxconfig")
	r.nothingMade(t)

	// Without preflight, startvm is where VirtualBox fails.
	_, err = r.p.Create(ctx(t), r.spec("red", 0))
	hintError(t, err, "kernel driver is not loaded (/dev/vboxdrv)", "sudo /sbin/vboxconfig")
}

func TestNoVTx(t *testing.T) {
	r := newRig(t, "")
	r.setFaults(vboxtest.Faults{NoVTx: true})
	c := ctx(t)
	inst, err := r.p.Create(c, r.spec("red", 0))
	hintError(t, err, "hardware virtualization (VT-x/AMD-V) is not available", "BIOS/UEFI")
	if !strings.Contains(err.Error(), "VERR_VMX_NO_VMX") {
		t.Errorf("the error hides VirtualBox's own words: %v", err)
	}
	if inst.ID != "red.lab" {
		t.Fatalf("Create failed without the instance id (%q): the caller could not clean up", inst.ID)
	}
	if err := r.p.Delete(c, inst.ID); err != nil {
		t.Fatal(err)
	}
	if reg := r.registry(); len(reg.Machines) != 0 {
		t.Errorf("machines left after Delete: %+v", reg.Machines)
	}
}

func TestHostOnlyDriverMissing(t *testing.T) {
	r := newRig(t, "")
	r.setFaults(vboxtest.Faults{NoNetCtl: true})
	err := preflight(ctx(t), r.p, []provider.NodeSpec{r.spec("red", 0)})
	inputError(t, err, "host-only network driver is not loaded (/dev/vboxnetctl)", "hostonlynet")
}

func TestHostOnlyRange(t *testing.T) {
	t.Run("refused-before-asking", func(t *testing.T) {
		r := newRig(t, "cidr: 10.10.0.0/24\n")
		err := preflight(ctx(t), r.p, []provider.NodeSpec{})
		inputError(t, err, "cidr 10.10.0.0/24 is outside the ranges VirtualBox allows", "/etc/vbox/networks.conf")
		r.nothingMade(t)
	})
	t.Run("allowed-by-networks.conf", func(t *testing.T) {
		r := newRig(t, "cidr: 10.10.0.0/24\n")
		if err := os.WriteFile(r.conf, []byte("* 10.0.0.0/8 192.168.0.0/16\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := preflight(ctx(t), r.p, nil); err != nil {
			t.Fatalf("Preflight: %v", err)
		}
		if reg := r.registry(); len(reg.HostOnlyIfs) != 1 || reg.HostOnlyIfs[0].IP != "10.10.0.1" {
			t.Errorf("host-only interfaces %+v, want one with 10.10.0.1", reg.HostOnlyIfs)
		}
	})
	t.Run("refused-by-virtualbox", func(t *testing.T) {
		// clusterctl reads a networks.conf that allows the range, but
		// VirtualBox (another file, an older version...) refuses it.
		r := newRig(t, "cidr: 10.10.0.0/24\n")
		other := filepath.Join(r.root, "lenient.conf")
		if err := os.WriteFile(other, []byte("* 10.0.0.0/8\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r.p.networksConf = other
		err := preflight(ctx(t), r.p, nil)
		ie := inputError(t, err, "VirtualBox refused the host-only address", "/etc/vbox/networks.conf")
		if !strings.Contains(ie.Error(), "E_ACCESSDENIED") {
			t.Errorf("the error hides VirtualBox's own words: %v", ie)
		}
	})
}

func TestNameTakenByForeignVM(t *testing.T) {
	r := newRig(t, "")
	if _, err := r.vbox("createvm", "--name", "red.lab", "--ostype", "Ubuntu_64", "--register"); err != nil {
		t.Fatal(err)
	}
	c := ctx(t)
	err := preflight(c, r.p, []provider.NodeSpec{r.spec("red", 0)})
	inputError(t, err, `a VirtualBox VM named "red.lab" already exists and was not made by clusterctl`, "choose another node name")
	_, err = r.p.Create(c, r.spec("red", 0))
	inputError(t, err, "was not made by clusterctl", "choose another node name")
	// Neither Status, List nor Delete take the foreign VM for a node.
	if st, err := r.p.Status(c, "red.lab"); err != nil || st.State != provider.StateNotFound {
		t.Errorf("Status of the foreign VM: %+v, %v; want not-found", st, err)
	}
	if list, err := r.p.List(c, "lab"); err != nil || len(list) != 0 {
		t.Errorf("List: %+v, %v; want nothing", list, err)
	}
	if err := r.p.Delete(c, "red.lab"); err != nil {
		t.Fatal(err)
	}
	if reg := r.registry(); len(reg.Machines) != 1 {
		t.Errorf("Delete touched a VM clusterctl did not make: %+v", reg.Machines)
	}
}

func TestBaseImage(t *testing.T) {
	r := newRig(t, "")
	c := ctx(t)
	write := func(name string, data []byte) string {
		p := filepath.Join(r.root, "images", name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, path, msg, fix string
	}{
		{"missing", filepath.Join(r.root, "images", "nope.vdi"), "cannot be read", `set "image:"`},
		{"qcow2", write("debian.qcow2", append([]byte("QFI\xfb\x00\x00\x00\x03"), make([]byte, 600)...)), "is qcow2",
			"qemu-img convert -f qcow2 -O vdi " + filepath.Join(r.root, "images", "debian.qcow2") + " " + filepath.Join(r.root, "images", "debian.vdi")},
		{"raw", write("debian.raw", make([]byte, 4096)), "has no VDI, VMDK or VHD header", "qemu-img convert -f raw -O vdi"},
		{"directory", filepath.Join(r.root, "images"), "is not a regular file", `set "image:"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := r.provider("image: " + tc.path + "\n")
			inputError(t, preflight(c, p, []provider.NodeSpec{r.spec("red", 0)}), tc.msg, tc.fix)
		})
	}
	// When the image goes bad after preflight, VirtualBox's own refusal
	// gets the same advice.
	p := r.provider("image: " + filepath.Join(r.root, "images", "debian.raw") + "\n")
	_, err := p.Create(c, r.spec("red", 0))
	inputError(t, err, "VirtualBox cannot read the base image", "qemu-img convert")
	r.nothingMadeExceptSeed(t, p)
}

// nothingMadeExceptSeed: a create that VirtualBox refused leaves only the
// node's own files, which Delete removes.
func (r *rig) nothingMadeExceptSeed(t *testing.T, p *Provider) {
	t.Helper()
	if err := p.Delete(ctx(t), "red.lab"); err != nil {
		t.Fatal(err)
	}
	if reg := r.registry(); len(reg.Machines) != 0 {
		t.Errorf("machines: %+v", reg.Machines)
	}
}

func TestBadInput(t *testing.T) {
	r := newRig(t, "")
	c := ctx(t)
	big := r.spec("big", 1)
	big.MemoryMiB, big.CPUs = 100, 99
	clash := r.spec("clash", 2)
	clash.Address = r.p.cfg.Host()
	outside := r.spec("outside", 3)
	outside.Address = mustAddr("192.168.99.5")
	r.p.routes = func() ([]hostRoute, error) {
		return []hostRoute{{Dev: "wlan0", Prefix: mustPrefix("192.168.0.0/16")}, {Dev: "eth0", Prefix: mustPrefix("0.0.0.0/0")}}, nil
	}
	err := preflight(c, r.p, []provider.NodeSpec{big, clash, outside})
	inputError(t, err, `node "big": memory 100 MiB is out of range`, "between 256")
	inputError(t, err, `node "big": cpus 99 is out of range`, "64")
	inputError(t, err, `node "clash": address 192.168.56.1 is the host's own address`, "choose another address")
	inputError(t, err, `node "outside": address 192.168.99.5 is outside the host-only network`, "192.168.56.0/24")
	inputError(t, err, "cidr 192.168.56.0/24 collides with the host's network 192.168.0.0/16 on wlan0", "choose another cidr")
	r.nothingMade(t)

	// Once the host-only interface exists, its own route is no collision.
	r.p.routes = func() ([]hostRoute, error) { return nil, nil }
	if err := preflight(c, r.p, []provider.NodeSpec{r.spec("red", 0)}); err != nil {
		t.Fatalf("Preflight: %v", err)
	}
	r.p.routes = func() ([]hostRoute, error) {
		return []hostRoute{{Dev: "vboxnet0", Prefix: mustPrefix("192.168.56.0/24")}}, nil
	}
	if err := preflight(c, r.p, []provider.NodeSpec{r.spec("red", 0)}); err != nil {
		t.Fatalf("second Preflight (vboxnet0 exists and has the route): %v", err)
	}
	// A route of the same network through another interface is.
	r.p.routes = func() ([]hostRoute, error) {
		return []hostRoute{{Dev: "vboxnet0", Prefix: mustPrefix("192.168.56.0/24")}, {Dev: "tun0", Prefix: mustPrefix("192.168.56.128/25")}}, nil
	}
	inputError(t, preflight(c, r.p, nil), "collides with the host's network 192.168.56.128/25 on tun0", "choose another cidr")
}

func TestParseProcRoute(t *testing.T) {
	text := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n" +
		"eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n" +
		"vboxnet0\t0038A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
	got := parseProcRoute(text)
	want := []hostRoute{{"eth0", mustPrefix("192.168.0.0/24")}, {"vboxnet0", mustPrefix("192.168.56.0/24")}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %v, want %v (default route left out)", got, want)
	}
}

package virtualbox

import (
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/virtualbox/internal/vboxtest"
)

// TestMacOSHostOnlyNetwork: VirtualBox 7 on macOS has host-only networks
// instead of interfaces; the host takes the lowest address of the range.
func TestMacOSHostOnlyNetwork(t *testing.T) {
	r := newRig(t, "")
	r.p.goos = "darwin"
	c := ctx(t)
	if err := preflight(c, r.p, []provider.NodeSpec{r.spec("red", 0)}); err != nil {
		t.Fatal(err)
	}
	reg := r.registry()
	if len(reg.HostOnlyIfs) != 0 || len(reg.HostOnlyNets) != 1 {
		t.Fatalf("interfaces %+v, networks %+v; want one host-only network", reg.HostOnlyIfs, reg.HostOnlyNets)
	}
	if n := reg.HostOnlyNets[0]; n.Name != "clusterctl" || n.LowerIP != "192.168.56.1" || n.Netmask != "255.255.255.0" || !n.Enabled {
		t.Errorf("host-only network %+v", n)
	}
	if _, err := r.p.Create(c, r.spec("red", 0)); err != nil {
		t.Fatal(err)
	}
	m := r.registry().Machines[0]
	if m.NICs["nic2"] != "hostonlynet" || m.NICs["hostonly-network2"] != "clusterctl" {
		t.Errorf("NIC 2: %v", m.NICs)
	}

	// VirtualBox 6 on macOS still has host-only interfaces.
	r6 := newRig(t, "")
	r6.p.goos = "darwin"
	r6.setFaults(vboxtest.Faults{Version: "6.1.50r161033"})
	if err := preflight(c, r6.p, nil); err != nil {
		t.Fatal(err)
	}
	if reg := r6.registry(); len(reg.HostOnlyIfs) != 1 {
		t.Errorf("VirtualBox 6: interfaces %+v, want one", reg.HostOnlyIfs)
	}
}

// TestExistingInterfaceElsewhere: a configured interface whose address is
// not the config's is reported with both ways to fix it.
func TestExistingInterfaceElsewhere(t *testing.T) {
	r := newRig(t, "hostonly_name: vboxnet0\n")
	if _, err := r.vbox("hostonlyif", "create"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.vbox("hostonlyif", "ipconfig", "vboxnet0", "--ip", "192.168.57.1", "--netmask", "255.255.255.0"); err != nil {
		t.Fatal(err)
	}
	err := preflight(ctx(t), r.p, nil)
	ie := inputError(t, err, `host-only interface "vboxnet0" has address 192.168.57.1`, "hostonlyif ipconfig vboxnet0 --ip 192.168.56.1")
	if !strings.Contains(ie.Fix, "set cidr:") {
		t.Errorf("fix %q does not offer changing the config", ie.Fix)
	}
}

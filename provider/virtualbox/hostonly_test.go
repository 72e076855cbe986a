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

// TestTwoUpsOnOneHostOnlyNetwork: on macOS with VirtualBox 7 the first up
// makes the host-only network and every later up must find it in `list
// hostonlynets`, whose records have a blank line inside (after GUID). Each
// up is a new process, so each runs with a new provider.
func TestTwoUpsOnOneHostOnlyNetwork(t *testing.T) {
	r := newRig(t, "")
	c := ctx(t)
	for i, node := range []string{"red", "blue"} {
		p := r.provider("")
		p.goos = "darwin"
		spec := r.spec(node, i)
		if err := preflight(c, p, []provider.NodeSpec{spec}); err != nil {
			t.Fatalf("up %d (%s): %v", i+1, node, err)
		}
		if _, err := p.Create(c, spec); err != nil {
			t.Fatalf("up %d (%s): Create: %v", i+1, node, err)
		}
	}
	reg := r.registry()
	if len(reg.HostOnlyNets) != 1 {
		t.Errorf("host-only networks %+v, want the one the first up made", reg.HostOnlyNets)
	}
	for _, m := range reg.Machines {
		if m.NICs["hostonly-network2"] != "clusterctl" {
			t.Errorf("%s: NIC 2 on %q, want clusterctl", m.Name, m.NICs["hostonly-network2"])
		}
	}
}

// TestParseRecordsAsVirtualBoxPrints parses list output in the layout of
// VirtualBox's own sources (VBoxManageList.cpp): listHostOnlyNetworks
// prints "GUID: ...\n\n" inside each record and "VBoxNetworkName: ...\n\n"
// at its end; listMedia prints a blank line after each medium and lists
// children after their parent with the parent's UUID.
func TestParseRecordsAsVirtualBoxPrints(t *testing.T) {
	nets := "Name:            clusterctl\n" +
		"GUID:            6b2e3f0a-8d4c-4c1e-9a57-3f1b2c4d5e6f\n\n" +
		"State:           Enabled\n" +
		"NetworkMask:     255.255.255.0\n" +
		"LowerIP:         192.168.56.1\n" +
		"UpperIP:         192.168.56.9\n" +
		"VBoxNetworkName: hostonly-clusterctl\n\n" +
		"Name:            other\n" +
		"GUID:            0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0\n\n" +
		"State:           Disabled\n" +
		"NetworkMask:     255.255.255.0\n" +
		"LowerIP:         192.168.57.1\n" +
		"UpperIP:         192.168.57.9\n" +
		"VBoxNetworkName: hostonly-other\n\n"
	recs := parseRecords(nets, "Name")
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2: %v", len(recs), recs)
	}
	if r := recs[0]; r["Name"] != "clusterctl" || r["LowerIP"] != "192.168.56.1" || r["NetworkMask"] != "255.255.255.0" || r["State"] != "Enabled" {
		t.Errorf("first network %v", r)
	}
	if r := recs[1]; r["Name"] != "other" || r["UpperIP"] != "192.168.57.9" {
		t.Errorf("second network %v", r)
	}

	hdds := "UUID:           1111\nParent UUID:    base\nState:          created\nType:           normal (base)\nLocation:       /i/base.vdi\nStorage format: VDI\nCapacity:       2048 MBytes\nEncryption:     disabled\n\n" +
		"UUID:           2222\nParent UUID:    1111\nState:          created\nType:           normal (differencing)\nLocation:       /n/red/disk.vdi\nStorage format: VDI\nCapacity:       2048 MBytes\nEncryption:     disabled\nIn use by VMs:  red.lab (UUID: 3333)\n\n"
	recs = parseRecords(hdds, "UUID")
	if len(recs) != 2 || recs[1]["Parent UUID"] != "1111" || recs[1]["In use by VMs"] != "red.lab (UUID: 3333)" || recs[0]["Location"] != "/i/base.vdi" {
		t.Errorf("media %v", recs)
	}
}

// FuzzParseRecords: whatever VBoxManage prints, there is one record per
// line that starts with the first key, and each record has that key.
func FuzzParseRecords(f *testing.F) {
	f.Add("Name:            a\nGUID:            g\n\nState:           Enabled\nLowerIP:         192.168.56.1\n\n")
	f.Add("UUID: 1\nParent UUID: base\n\nUUID: 2\n  continued\nLocation: /x\n")
	f.Add("junk\nName:\n:\n\r\n")
	f.Fuzz(func(t *testing.T, out string) {
		want := 0
		for _, line := range strings.Split(out, "\n") {
			if k, _, ok := strings.Cut(strings.TrimRight(line, "\r"), ":"); ok && strings.TrimSpace(k) == "Name" &&
				!strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") {
				want++
			}
		}
		recs := parseRecords(out, "Name")
		if len(recs) != want {
			t.Fatalf("%d records, want %d", len(recs), want)
		}
		for _, r := range recs {
			if _, ok := r["Name"]; !ok {
				t.Fatalf("record without Name: %v", r)
			}
		}
	})
}

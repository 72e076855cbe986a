package qemu

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/localvm"
)

func TestPreflightReportsEverything(t *testing.T) {
	dir := t.TempDir()
	p := newTestProvider(t, "image: "+filepath.Join(dir, "missing.raw")+"\n"+
		"kernel: "+dir+"\n"+ // a directory, not a kernel
		"binary: /nonexistent/qemu-system-x86_64\nqemu_img: /nonexistent/qemu-img\n"+
		"accel: kvm\nbridge: cctlnobr7\n")
	specs := []provider.NodeSpec{
		{Name: "out", Address: netip.MustParseAddr("10.0.0.5")},
		{Name: "net", Address: netip.MustParseAddr("192.168.56.0")},
		{Name: "bcast", Address: netip.MustParseAddr("192.168.56.255")},
		{Name: "dup1", Address: netip.MustParseAddr("192.168.56.20"), MAC: "52:54:00:00:00:01"},
		{Name: "dup2", Address: netip.MustParseAddr("192.168.56.20"), MAC: "52:54:00:00:00:01"},
		{Name: "badmac", MAC: "nonsense"},
	}
	err := p.Preflight(context.Background(), specs)
	ies := inputErrors(t, err)
	msg := err.Error()
	wants := map[string]string{
		`QEMU binary "/nonexistent/qemu-system-x86_64" not found`: "apt-get install qemu-system-x86 qemu-utils",
		`"/nonexistent/qemu-img" not found`:                       "apt-get install qemu-system-x86 qemu-utils",
		"missing.raw\" cannot be read":                            `set "image:"`,
		"is not a regular file":                                   `set "kernel:"`,
		"accel is kvm but /dev/kvm cannot be opened":              "accel: tcg",
		`bridge "cctlnobr7" does not exist`:                       "ip link add cctlnobr7 type bridge && ip addr add 192.168.56.1/24 dev cctlnobr7 && ip link set cctlnobr7 up",
		"address 10.0.0.5 is outside the cluster network":         "choose an address in 192.168.56.0/24",
		"address 192.168.56.0 cannot be a host's":                 "not its network or broadcast",
		"address 192.168.56.255 cannot be a host's":               "not its network or broadcast",
		`nodes "dup1" and "dup2" both ask for address`:            "its own address",
		`nodes "dup1" and "dup2" both ask for MAC`:                "its own MAC",
		`node "badmac": bad MAC "nonsense"`:                       "unicast MAC",
	}
	for want, fix := range wants {
		found := false
		for _, ie := range ies {
			if strings.Contains(ie.Error(), want) {
				found = true
				if !strings.Contains(ie.Fix, fix) {
					t.Errorf("error %q: fix %q does not contain %q", ie, ie.Fix, fix)
				}
			}
		}
		if !found {
			t.Errorf("preflight did not report %q; got:\n%s", want, msg)
		}
	}
}

func TestCheckSpecsBridgeAddress(t *testing.T) {
	p := newTestProvider(t, "image: /i.raw\n")
	host := netip.MustParseAddr("192.168.56.1")
	err := errors.Join(checkSpecs(p, []provider.NodeSpec{
		{Name: "ok", Address: netip.MustParseAddr("192.168.56.10")},
		{Name: "clash", Address: host},
		{Name: "auto"}, // no address: the provider's caller chooses later
	}, host)...)
	ies := inputErrors(t, err)
	if len(ies) != 1 || !strings.Contains(ies[0].Error(), `node "clash": address 192.168.56.1 is the bridge's own address`) {
		t.Errorf("got %v, want one error about the bridge's address", err)
	}
	if errs := checkSpecs(p, []provider.NodeSpec{{Name: "ok", Address: netip.MustParseAddr("192.168.56.254")}}, host); errs != nil {
		t.Errorf("a good spec: %v", errs)
	}
}

func TestPreflightGoodHostFile(t *testing.T) {
	// Only the file checks: a readable image and kernel produce no error
	// about them, whatever else this host lacks.
	dir := t.TempDir()
	img := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(img, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := newTestProvider(t, "image: "+img+"\nkernel: "+img+"\naccel: tcg\nbridge: cctlnobr8\n")
	err := p.Preflight(context.Background(), nil)
	if err != nil && (strings.Contains(err.Error(), "cannot be read") || strings.Contains(err.Error(), "regular file") || strings.Contains(err.Error(), "kvm")) {
		t.Errorf("preflight complains about good files or kvm: %v", err)
	}
}

func TestLastAddr(t *testing.T) {
	for p, want := range map[string]string{
		"192.168.56.0/24": "192.168.56.255",
		"10.0.0.0/8":      "10.255.255.255",
		"192.168.56.0/21": "192.168.63.255",
		"172.16.0.0/30":   "172.16.0.3",
	} {
		if got := localvm.Broadcast(netip.MustParsePrefix(p)).String(); got != want {
			t.Errorf("localvm.Broadcast(%s) = %s, want %s", p, got, want)
		}
	}
}

func TestAccel(t *testing.T) {
	for _, tt := range []struct {
		accel string
		kvm   bool
		want  string
		err   bool
	}{
		{"auto", true, "kvm", false},
		{"auto", false, "tcg", false},
		{"tcg", true, "tcg", false},
		{"kvm", true, "kvm", false},
		{"kvm", false, "", true},
	} {
		p := newTestProvider(t, "image: /i\naccel: "+tt.accel+"\n")
		p.kvmUsable = func() bool { return tt.kvm }
		got, err := p.accel()
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("accel %s with kvm=%v: %q, %v", tt.accel, tt.kvm, got, err)
		}
	}
}

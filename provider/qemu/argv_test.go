package qemu

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provider/localvm"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func base() launch {
	d := "/var/lib/clusterctl/clusters/red/nodes/n1"
	return launch{
		Binary: "qemu-system-x86_64", Name: "n1.red", Machine: "q35", Accel: "tcg",
		Memory: 1024, CPUs: 1,
		Overlay: d + "/overlay.qcow2", Seed: d + "/seed.iso",
		Tap: "cctl0123456789a", MAC: "52:54:00:aa:00:0a",
		PIDFile: d + "/qemu.pid", QMP: d + "/qmp.sock", Console: d + "/console.log",
	}
}

func TestQemuArgsGolden(t *testing.T) {
	kernel := base()
	kernel.Accel, kernel.Memory, kernel.CPUs = "kvm", 2048, 2
	kernel.Kernel, kernel.Initrd, kernel.Append = "/img/vmlinuz", "/img/initrd.img", DefaultAppend
	comma := base()
	comma.Overlay, comma.Seed, comma.Name = "/odd,dir/overlay.qcow2", "/odd,dir/seed.iso", "a,b"
	noInitrd := base()
	noInitrd.Kernel = "/img/vmlinuz"

	for name, l := range map[string]launch{
		"disk-boot":      base(),
		"kernel-boot":    kernel,
		"comma-escaping": comma,
		"kernel-only":    noInitrd,
	} {
		t.Run(name, func(t *testing.T) {
			got := strings.Join(qemuArgs(l), "\n") + "\n"
			golden := filepath.Join("testdata", "argv-"+name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("argv differs from %s (run go test -update if intended):\n got:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestTapName(t *testing.T) {
	a, b := tapName("red", "n1"), tapName("red", "n2")
	if len(a) > 15 || !strings.HasPrefix(a, "cctl") {
		t.Errorf("tap name %q: want at most 15 characters starting cctl", a)
	}
	if a == b || a == tapName("blue", "n1") {
		t.Errorf("tap names collide: %q %q %q", a, b, tapName("blue", "n1"))
	}
	if a != tapName("red", "n1") {
		t.Error("tap name is not stable")
	}
	// Cluster "a" + node "bc" must differ from cluster "ab" + node "c".
	if tapName("a", "bc") == tapName("ab", "c") {
		t.Error("tap name ignores where the cluster name ends")
	}
}

func TestDefaultMAC(t *testing.T) {
	m := localvm.DefaultMAC("red", "n1")
	if err := checkMAC(m); err != nil || !strings.HasPrefix(m, "52:54:00:") {
		t.Errorf("default MAC %q: %v", m, err)
	}
	if m == localvm.DefaultMAC("red", "n2") {
		t.Error("default MACs collide")
	}
}

func TestCheckMAC(t *testing.T) {
	for mac, ok := range map[string]bool{
		"52:54:00:aa:00:0a":       true,
		"52-54-00-aa-00-0a":       false,
		"01:00:5e:00:00:01":       false, // multicast
		"52:54:00:aa:00":          false,
		"00:00:00:00:fe:80:00:00": false,
		"zz:54:00:aa:00:0a":       false,
	} {
		if err := checkMAC(mac); (err == nil) != ok {
			t.Errorf("checkMAC(%q) = %v, want ok=%v", mac, err, ok)
		}
	}
}

//go:build linux

package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/internal/testkit"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/localvm"
	"github.com/clusterctl/clusterctl/provider/providertest"
)

// The integration test runs the real QEMU. It needs root and makes its own
// network namespace with a bridge; the test binary then runs itself again
// under `ip netns exec` (netnsEnv set), so that every thread, every child
// process (ip, qemu) and /sys see only the test's namespace. Nothing is
// created in the host's network namespace.
const (
	netnsEnv      = "CLUSTERCTL_QEMU_TEST_NETNS"
	outerNetnsEnv = "CLUSTERCTL_QEMU_TEST_OUTER_NETNS" // the namespace the test started in
	testBridge    = "clusterbr0"
	testHostCIDR  = "192.168.56.1/24"
)

func TestIntegration(t *testing.T) {
	if os.Getenv(netnsEnv) != "" {
		integration(t)
		return
	}
	requireTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	ns := fmt.Sprintf("cctl-qemu-test-%d", os.Getpid())
	ipNetns(t, ctx, "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", ns).Run() })
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", testBridge, "type", "bridge"},
		{"addr", "add", testHostCIDR, "dev", testBridge},
		{"link", "set", testBridge, "up"},
	} {
		if out, err := exec.CommandContext(ctx, "ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
		}
	}

	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, os.Args[0],
		"-test.run=^TestIntegration$", "-test.v", "-test.count=1")
	outer, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), netnsEnv+"="+ns, outerNetnsEnv+"="+outer)
	out, err := cmd.CombinedOutput()
	t.Logf("test run inside network namespace %s:\n%s", ns, out)
	if err != nil {
		t.Fatalf("integration test inside the namespace failed: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestIntegration") || strings.Contains(string(out), "--- SKIP") {
		t.Fatal("integration test inside the namespace did not run to a pass")
	}
}

func requireTools(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, b := range []string{DefaultBinary, DefaultQemuImg, "ip"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if testing.Short() && !testkit.ToolsRequired() {
		t.Skip("integration test skipped in -short mode")
	}
	if len(missing) > 0 {
		testkit.Missing(t, "needs %s (set %s=1 to fail instead)", strings.Join(missing, ", "), testkit.RequireToolsEnv)
	}
}

func ipNetns(t *testing.T, ctx context.Context, args ...string) {
	t.Helper()
	if out, err := exec.CommandContext(ctx, "ip", append([]string{"netns"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip netns %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// integration is the test body; it runs inside the test's namespace.
func integration(t *testing.T) {
	self, err := os.Readlink("/proc/self/ns/net")
	if outer := os.Getenv(outerNetnsEnv); err != nil || outer == "" || self == outer {
		t.Fatalf("refusing to run in the namespace the test started in (%s, %v; outer %q)", self, err, outer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	dir := t.TempDir()
	img := filepath.Join(dir, "blank.raw")
	if out, err := exec.CommandContext(ctx, DefaultQemuImg, "create", "-q", "-f", "raw", img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	newP := func(extra string) *Provider {
		var doc yaml.Node
		text := fmt.Sprintf("image: %s\naccel: tcg\nmemory: 128\nbridge: %s\npowerdown_timeout: 2s\n%s", img, testBridge, extra)
		if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
			t.Fatal(err)
		}
		p, err := New(provider.Env{Cluster: "itest", Dir: filepath.Join(dir, "c"), Config: &doc})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := newP("")
	n := 10
	spec := func(t *testing.T, name string) provider.NodeSpec {
		n++
		s := provider.NodeSpec{
			Cluster: "itest", Name: name, Nonce: "nonce-" + name,
			Address: netip.AddrFrom4([4]byte{192, 168, 56, byte(n)}),
			MAC:     localvm.DefaultMAC("itest", name),
			Seed: provider.Seed{
				UserData: []byte("#cloud-config\nhostname: " + name + "\n"),
				MetaData: []byte("instance-id: " + name + "\n"),
			},
			Dir: p.nodeDir(name),
		}
		if err := os.MkdirAll(s.Dir, 0o700); err != nil {
			t.Fatal(err)
		}
		return s
	}

	t.Run("ClusterNetwork", func(t *testing.T) {
		prefix, host, err := p.ClusterNetwork(ctx)
		if err != nil || prefix.String() != "192.168.56.0/24" || host.String() != "192.168.56.1" {
			t.Errorf("ClusterNetwork = %s, %s, %v; want 192.168.56.0/24, 192.168.56.1", prefix, host, err)
		}
		_, _, err = newP("cidr: 10.1.0.0/16\n").ClusterNetwork(ctx)
		var ie *usererr.InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), "no IPv4 address in 10.1.0.0/16") {
			t.Errorf("ClusterNetwork with a cidr the bridge lacks: %v", err)
		}
	})

	t.Run("Preflight", func(t *testing.T) {
		if err := p.Preflight(ctx, []provider.NodeSpec{spec(t, "pf")}); err != nil {
			t.Errorf("Preflight on a good host: %v", err)
		}
		err := p.Preflight(ctx, []provider.NodeSpec{{Name: "pf2", Address: netip.MustParseAddr("192.168.56.1")}})
		if err == nil || !strings.Contains(err.Error(), "bridge's own address") {
			t.Errorf("Preflight with the bridge's address: %v", err)
		}
		_ = os.RemoveAll(p.nodeDir("pf"))
	})

	t.Run("Lifecycle", func(t *testing.T) {
		s := spec(t, "life")
		inst, err := p.Create(ctx, s)
		t.Cleanup(func() { _ = p.Delete(context.Background(), "life") })
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		if inst.ID != "life" || inst.State != provider.StateRunning || inst.Address != s.Address.String() {
			t.Errorf("Create = %+v", inst)
		}
		np := pathsIn(s.Dir)
		pid, alive, err := qemuProcess(np.PID)
		if err != nil || !alive {
			t.Fatalf("no live QEMU after Create: pid %d, %v", pid, err)
		}
		tap := tapName("itest", "life")
		if out, err := exec.CommandContext(ctx, "ip", "-o", "link", "show", "dev", tap).CombinedOutput(); err != nil ||
			!strings.Contains(string(out), "master "+testBridge) || !strings.Contains(string(out), ",UP") {
			t.Errorf("tap %s not up on %s: %v: %s", tap, testBridge, err, out)
		}
		info, err := exec.CommandContext(ctx, DefaultQemuImg, "info", "--output=json", "-U", np.Overlay).Output()
		var ov struct {
			Format  string `json:"format"`
			Backing string `json:"backing-filename"`
			BFormat string `json:"backing-filename-format"`
		}
		if err != nil || json.Unmarshal(info, &ov) != nil || ov.Format != "qcow2" || ov.Backing != img || ov.BFormat != "raw" {
			t.Errorf("overlay: %+v (%v), want qcow2 backed by raw %s", ov, err, img)
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if !strings.Contains(string(cmdline), "mac="+s.MAC) || !strings.Contains(string(cmdline), "ifname="+tap) {
			t.Errorf("QEMU command line lacks the MAC or tap: %q", cmdline)
		}
		if _, err := os.Stat(np.Seed); err != nil {
			t.Errorf("seed ISO: %v", err)
		}
		if b, err := p.ConsoleLog(ctx, "life"); err != nil || b == nil {
			t.Errorf("ConsoleLog = %q, %v", b, err)
		}
		if _, err := os.Stat(np.Console); err != nil {
			t.Errorf("console log file: %v", err)
		}
		if st, err := p.Status(ctx, "life"); err != nil || st.State != provider.StateRunning {
			t.Errorf("Status = %+v, %v", st, err)
		}
		if _, err := p.Create(ctx, s); err == nil || !strings.Contains(err.Error(), "already runs") {
			t.Errorf("second Create of a running node: %v, want an error", err)
		}

		if err := p.Delete(ctx, "life"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if !processGone(pid) {
			t.Errorf("QEMU pid %d still runs after Delete", pid)
		}
		if out, err := exec.CommandContext(ctx, "ip", "link", "show", "dev", tap).CombinedOutput(); err == nil {
			t.Errorf("tap %s still exists after Delete: %s", tap, out)
		}
		if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("node directory still exists after Delete: %v", err)
		}
		if st, err := p.Status(ctx, "life"); err != nil || st.State != provider.StateNotFound {
			t.Errorf("Status after Delete = %+v, %v", st, err)
		}
		if err := p.Delete(ctx, "life"); err != nil {
			t.Errorf("second Delete: %v", err)
		}
	})

	t.Run("HalfMadeNode", func(t *testing.T) {
		broken := newP("binary: false\n") // QEMU "fails" after disk, seed and tap are made
		s := spec(t, "half")
		inst, err := broken.Create(ctx, s)
		t.Cleanup(func() { _ = broken.Delete(context.Background(), "half") })
		if err == nil || inst.ID != "half" {
			t.Fatalf("Create with a failing QEMU = %+v, %v; want the id and an error", inst, err)
		}
		tap := tapName("itest", "half")
		if err := exec.CommandContext(ctx, "ip", "link", "show", "dev", tap).Run(); err != nil {
			t.Errorf("tap %s was not made before QEMU failed: %v", tap, err)
		}
		if st, err := broken.Status(ctx, "half"); err != nil || st.State != provider.StateStopped {
			t.Errorf("Status of the half-made node = %+v, %v; want stopped", st, err)
		}
		if err := broken.Delete(ctx, "half"); err != nil {
			t.Fatalf("Delete of the half-made node: %v", err)
		}
		if err := exec.CommandContext(ctx, "ip", "link", "show", "dev", tap).Run(); err == nil {
			t.Errorf("tap %s survived Delete", tap)
		}
		if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("node directory survived Delete: %v", err)
		}
	})

	t.Run("Conformance", func(t *testing.T) {
		providertest.Run(t, providertest.Harness{Provider: p, Cluster: "itest", Spec: spec, Timeout: 3 * time.Minute})
	})

	if list, err := p.List(ctx, "itest"); err != nil || len(list) != 0 {
		t.Errorf("nodes left behind: %v, %v", list, err)
	}
}

// processGone reports whether pid has exited (a zombie counts: it has
// exited and only waits for its parent to reap it).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

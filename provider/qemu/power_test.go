//go:build linux

package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/localvm"
)

// The test binary plays QEMU when this variable is set (see fakeQEMU).
const (
	envFakeQEMU   = "CLUSTERCTL_TEST_FAKE_QEMU"      // "1": be QEMU
	envFakeChild  = "CLUSTERCTL_TEST_FAKE_QEMU_VM"   // "1": the daemonized VM process
	envFakeIgnore = "CLUSTERCTL_TEST_FAKE_QEMU_ACPI" // "ignore": the guest ignores the ACPI power button
	envFakeLog    = "CLUSTERCTL_TEST_FAKE_QEMU_LOG"  // file each launch and QMP command is appended to
)

func TestMain(m *testing.M) {
	if os.Getenv(envFakeQEMU) == "1" {
		os.Exit(fakeQEMU(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeQEMU is what Stop and Start need of qemu-system-x86_64, as QEMU's
// documentation describes it: with -daemonize the command returns once
// the VM process runs and has written -pidfile; the VM process serves QMP
// on the -qmp unix socket (greeting, qmp_capabilities, then commands);
// system_powerdown presses the ACPI power button, and the guest then
// powers off, which ends the process (unless the guest ignores the
// button); quit ends it at once. QEMU removes its pid file when it exits.
func fakeQEMU(args []string) int {
	opt := func(name string) string {
		for i := 0; i+1 < len(args); i++ {
			if args[i] == name {
				return args[i+1]
			}
		}
		return ""
	}
	pidFile := opt("-pidfile")
	qmp, _, _ := strings.Cut(strings.TrimPrefix(opt("-qmp"), "unix:"), ",")
	note := func(s string) {
		if f, err := os.OpenFile(os.Getenv(envFakeLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
			fmt.Fprintln(f, s)
			f.Close()
		}
	}
	if os.Getenv(envFakeChild) != "1" {
		note("launch " + strings.Join(args, " "))
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), envFakeChild+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "qemu-system-x86_64:", err)
			return 1
		}
		for i := 0; i < 500; i++ {
			if _, err := os.Stat(pidFile); err == nil {
				return 0
			}
			time.Sleep(10 * time.Millisecond)
		}
		fmt.Fprintln(os.Stderr, "qemu-system-x86_64: the VM did not start")
		return 1
	}
	l, err := net.Listen("unix", qmp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "qemu-system-x86_64: -qmp:", err)
		return 1
	}
	exit := func() int { l.Close(); os.Remove(pidFile); return 0 }
	if err := os.WriteFile(pidFile, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o600); err != nil {
		return 1
	}
	for {
		conn, err := l.Accept()
		if err != nil {
			return exit()
		}
		enc, in := json.NewEncoder(conn), bufio.NewScanner(conn)
		_ = enc.Encode(map[string]any{"QMP": map[string]any{"version": map[string]any{}, "capabilities": []string{"oob"}}})
		negotiated := false
		for in.Scan() {
			var cmd struct{ Execute string }
			_ = json.Unmarshal(in.Bytes(), &cmd)
			note("qmp " + cmd.Execute)
			switch {
			case cmd.Execute == "qmp_capabilities":
				negotiated = true
				_ = enc.Encode(map[string]any{"return": map[string]any{}})
			case !negotiated:
				_ = enc.Encode(map[string]any{"error": map[string]any{"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}})
			case cmd.Execute == "system_powerdown":
				_ = enc.Encode(map[string]any{"return": map[string]any{}})
				if os.Getenv(envFakeIgnore) != "ignore" {
					_ = enc.Encode(map[string]any{"event": "POWERDOWN"})
					conn.Close()
					time.Sleep(50 * time.Millisecond) // the guest shuts down
					return exit()
				}
			case cmd.Execute == "quit":
				_ = enc.Encode(map[string]any{"return": map[string]any{}})
				conn.Close()
				return exit()
			default:
				_ = enc.Encode(map[string]any{"error": map[string]any{"class": "CommandNotFound", "desc": "The command " + cmd.Execute + " has not been found"}})
			}
		}
		conn.Close()
	}
}

// powerRig is a provider whose QEMU is the test binary playing QEMU, with
// one node whose files Create would have made (node.json, overlay, seed).
type powerRig struct {
	p    *Provider
	id   string
	np   nodePaths
	log  string
	taps []string
}

func newPowerRig(t *testing.T, extra string) *powerRig {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "base.qcow2")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A short state directory: the QMP socket path must fit sun_path.
	dir, err := os.MkdirTemp("", "cq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg, err := parse(t, fmt.Sprintf("image: %s\nbinary: %s\naccel: tcg\npowerdown_timeout: 300ms\n%s", img, self, extra))
	if err != nil {
		t.Fatal(err)
	}
	r := &powerRig{id: "blue", log: filepath.Join(t.TempDir(), "qemu.log")}
	r.p = &Provider{cfg: cfg, env: provider.Env{Cluster: "red", Dir: dir}, kvmUsable: func() bool { return false },
		makeTap: func(_ context.Context, tap, bridge string) error {
			r.taps = append(r.taps, tap+" on "+bridge)
			return nil
		}}
	t.Setenv(envFakeQEMU, "1")
	t.Setenv(envFakeLog, r.log)
	r.np = pathsIn(r.p.nodeDir(r.id))
	meta := localvm.Meta{Cluster: "red", Name: r.id, MAC: "52:54:00:aa:00:0b", Tap: tapName("red", r.id), CPUs: 2, MemoryMiB: 768}
	if err := localvm.WriteMeta(r.np.Dir, meta); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{r.np.Overlay, r.np.Seed} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = r.p.Delete(context.Background(), r.id) })
	return r
}

// events returns the fake QEMU's log lines, launches shortened to "launch".
func (r *powerRig) events(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(r.log)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "launch ") {
			l = "launch"
		}
		out = append(out, l)
	}
	return out
}

func (r *powerRig) state(t *testing.T) provider.State {
	t.Helper()
	st, err := r.p.Status(context.Background(), r.id)
	if err != nil {
		t.Fatal(err)
	}
	return st.State
}

// TestStopStart: Start launches QEMU from the node's own files (the same
// overlay, seed, tap and MAC, the size node.json recorded), Stop powers it
// down over QMP and returns once the process is gone; Status follows; both
// are idempotent; Delete removes a stopped node.
func TestStopStart(t *testing.T) {
	r := newPowerRig(t, "")
	ctx := context.Background()
	if got := r.state(t); got != provider.StateStopped {
		t.Fatalf("a node directory without a QEMU process: %s, want stopped", got)
	}
	for i := 0; i < 2; i++ {
		if err := r.p.Start(ctx, r.id); err != nil {
			t.Fatalf("Start %d: %v", i+1, err)
		}
		if got := r.state(t); got != provider.StateRunning {
			t.Fatalf("after Start %d: %s, want running", i+1, got)
		}
	}
	b, _ := os.ReadFile(r.log)
	launch := strings.SplitN(string(b), "\n", 2)[0]
	for _, want := range []string{"-m 768", "-smp 2", "file=" + r.np.Overlay + ",format=qcow2", "file=" + r.np.Seed + ",format=raw",
		"ifname=" + tapName("red", r.id) + ",", "mac=52:54:00:aa:00:0b", "-pidfile " + r.np.PID, "guest=blue.red"} {
		if !strings.Contains(launch, want) {
			t.Errorf("QEMU launched without %q:\n%s", want, launch)
		}
	}
	if strings.Join(r.taps, ",") != tapName("red", r.id)+" on "+DefaultBridge {
		t.Errorf("taps made %q, want the node's tap once on the bridge", r.taps)
	}

	for i := 0; i < 2; i++ {
		if err := r.p.Stop(ctx, r.id); err != nil {
			t.Fatalf("Stop %d: %v", i+1, err)
		}
		if got := r.state(t); got != provider.StateStopped {
			t.Fatalf("after Stop %d: %s, want stopped", i+1, got)
		}
	}
	if err := r.p.Start(ctx, r.id); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	if err := r.p.Stop(ctx, r.id); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	want := "launch,qmp qmp_capabilities,qmp system_powerdown,launch,qmp qmp_capabilities,qmp system_powerdown"
	if got := strings.Join(r.events(t), ","); got != want {
		t.Errorf("QEMU saw\n  %s\nwant\n  %s", got, want)
	}
	if _, err := os.Stat(r.np.Overlay); err != nil {
		t.Errorf("the disk overlay after Stop: %v, want it kept", err)
	}
	if err := r.p.Delete(ctx, r.id); err != nil {
		t.Fatalf("Delete of a stopped node: %v", err)
	}
	if got := r.state(t); got != provider.StateNotFound {
		t.Errorf("after Delete: %s", got)
	}
	if err := r.p.Start(ctx, r.id); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("Start of a deleted node: %v, want ErrNotFound", err)
	}
	if err := r.p.Stop(ctx, r.id); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("Stop of a deleted node: %v, want ErrNotFound", err)
	}
}

// TestStopQuitsAGuestThatIgnoresACPI: after powerdown_timeout Stop asks
// QEMU to quit over QMP, before any signal.
func TestStopQuitsAGuestThatIgnoresACPI(t *testing.T) {
	r := newPowerRig(t, "")
	t.Setenv(envFakeIgnore, "ignore")
	ctx := context.Background()
	if err := r.p.Start(ctx, r.id); err != nil {
		t.Fatal(err)
	}
	if err := r.p.Stop(ctx, r.id); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	want := "launch,qmp qmp_capabilities,qmp system_powerdown,qmp qmp_capabilities,qmp quit"
	if got := strings.Join(r.events(t), ","); got != want {
		t.Errorf("QEMU saw\n  %s\nwant\n  %s", got, want)
	}
	if got := r.state(t); got != provider.StateStopped {
		t.Errorf("after Stop: %s, want stopped", got)
	}
}

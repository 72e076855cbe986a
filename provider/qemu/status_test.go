package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

// newTestProvider makes a provider on a temporary cluster directory.
func newTestProvider(t *testing.T, cfgYAML string) *Provider {
	t.Helper()
	cfg, err := parse(t, cfgYAML)
	if err != nil {
		t.Fatal(err)
	}
	return &Provider{cfg: cfg, env: provider.Env{Cluster: "red", Dir: t.TempDir()}, kvmUsable: func() bool { return false }}
}

// fakeProc points procRoot at a temporary tree for the test.
func fakeProc(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	old := procRoot
	procRoot = root
	t.Cleanup(func() { procRoot = old })
	return root
}

func writeCmdline(t *testing.T, root string, pid int, args ...string) {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprint(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := ""
	if len(args) > 0 {
		data = strings.Join(args, "\x00") + "\x00"
	}
	if err := os.WriteFile(filepath.Join(dir, "cmdline"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestStatusStates(t *testing.T) {
	p := newTestProvider(t, "image: /i.raw\n")
	proc := fakeProc(t)
	ctx := context.Background()

	mk := func(name, pid string) nodePaths {
		np := pathsIn(p.nodeDir(name))
		if err := os.MkdirAll(np.Dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if pid != "" {
			if err := os.WriteFile(np.PID, []byte(pid), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return np
	}
	running := mk("running", "101\n")
	writeCmdline(t, proc, 101, "qemu-system-x86_64", "-name", "guest=running.red", "-pidfile", running.PID, "-daemonize")
	mk("nopid", "")
	mk("dead", "102\n") // no /proc/102
	mk("recycled", "103\n")
	writeCmdline(t, proc, 103, "/usr/bin/sleep", "100")
	other := mk("othervm", "104\n")
	writeCmdline(t, proc, 104, "qemu-system-x86_64", "-pidfile", other.PID+".not")
	mk("zombie", "105\n")
	writeCmdline(t, proc, 105) // a zombie's cmdline is empty
	mk("garbage", "not a pid")
	mk("trailing", "-pidfile\n")

	tests := map[string]provider.State{
		"running":  provider.StateRunning,
		"nopid":    provider.StateStopped,
		"dead":     provider.StateStopped,
		"recycled": provider.StateStopped,
		"othervm":  provider.StateStopped,
		"zombie":   provider.StateStopped,
		"garbage":  provider.StateStopped,
		"trailing": provider.StateStopped,
		"absent":   provider.StateNotFound,
		"../evil":  provider.StateNotFound,
		"":         provider.StateNotFound,
	}
	for id, want := range tests {
		inst, err := p.Status(ctx, id)
		if err != nil {
			t.Errorf("Status(%q): %v", id, err)
		}
		if inst.State != want || inst.ID != id {
			t.Errorf("Status(%q) = %+v, want state %q", id, inst, want)
		}
	}
	if inst, _ := p.Status(ctx, "running"); inst.Detail != "pid 101" {
		t.Errorf("running detail %q, want pid 101", inst.Detail)
	}

	list, err := p.List(ctx, "red")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, in := range list {
		got = append(got, in.ID+"="+string(in.State))
	}
	want := "dead=stopped garbage=stopped nopid=stopped othervm=stopped recycled=stopped running=running trailing=stopped zombie=stopped"
	if strings.Join(got, " ") != want {
		t.Errorf("List:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if list, err := p.List(ctx, "blue"); err != nil || len(list) != 0 {
		t.Errorf("List of another cluster: %v %v, want none", list, err)
	}
}

func TestStatusAddressFromMeta(t *testing.T) {
	p := newTestProvider(t, "image: /i.raw\n")
	np := pathsIn(p.nodeDir("n1"))
	if err := os.MkdirAll(np.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(np.Meta, []byte(`{"cluster":"red","name":"n1","address":"192.168.56.10"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	inst, err := p.Status(context.Background(), "n1")
	if err != nil || inst.Address != "192.168.56.10" || inst.State != provider.StateStopped {
		t.Errorf("Status = %+v, %v", inst, err)
	}
}

func TestListWithoutNodes(t *testing.T) {
	p := newTestProvider(t, "image: /i.raw\n")
	list, err := p.List(context.Background(), "red")
	if err != nil || len(list) != 0 {
		t.Errorf("List = %v, %v; want empty", list, err)
	}
}

func TestConsoleLog(t *testing.T) {
	p := newTestProvider(t, "image: /i.raw\n")
	ctx := context.Background()
	if _, err := p.ConsoleLog(ctx, "absent"); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("ConsoleLog of an unknown node: %v, want ErrNotFound", err)
	}
	np := pathsIn(p.nodeDir("n1"))
	if err := os.MkdirAll(np.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := p.ConsoleLog(ctx, "n1")
	if err != nil || len(b) != 0 {
		t.Errorf("ConsoleLog before start = %q, %v; want empty, nil", b, err)
	}
	if err := os.WriteFile(np.Console, []byte("login: "), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := p.ConsoleLog(ctx, "n1"); err != nil || string(b) != "login: " {
		t.Errorf("ConsoleLog = %q, %v", b, err)
	}
}

func TestDeleteWithoutProcess(t *testing.T) {
	p := newTestProvider(t, "image: /i.raw\n")
	fakeProc(t)
	ctx := context.Background()
	np := pathsIn(p.nodeDir("half"))
	if err := os.MkdirAll(np.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{np.Meta, np.Overlay, np.PID} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Delete(ctx, "half"); err != nil {
		t.Fatalf("Delete of a half-made node: %v", err)
	}
	if _, err := os.Stat(np.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("node dir still there: %v", err)
	}
	if err := p.Delete(ctx, "half"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if err := p.Delete(ctx, "../x"); err != nil {
		t.Errorf("Delete of an invalid id: %v", err)
	}
}

func TestCreateRejectsBadSpecs(t *testing.T) {
	p := newTestProvider(t, "image: /i.raw\n")
	ctx := context.Background()
	if _, err := p.Create(ctx, provider.NodeSpec{Name: "a/b"}); err == nil {
		t.Error("Create accepted a name with a slash")
	}
	_, err := p.Create(ctx, provider.NodeSpec{Name: "n1", Dir: "/elsewhere/n1"})
	if err == nil || !strings.Contains(err.Error(), "spec.Dir") {
		t.Errorf("Create with a foreign Dir: %v", err)
	}
}

func TestCheckPaths(t *testing.T) {
	if err := checkPaths(pathsIn("/short/nodes/n1")); err != nil {
		t.Errorf("short path: %v", err)
	}
	long := "/" + strings.Repeat("d", 100) + "/nodes/n1"
	var ie *usererr.InputError
	if err := checkPaths(pathsIn(long)); !errors.As(err, &ie) || !strings.Contains(err.Error(), "unix socket") {
		t.Errorf("long path: %v, want an InputError about the socket path", err)
	}
	if err := checkPaths(pathsIn("/a,b/nodes/n1")); !errors.As(err, &ie) {
		t.Errorf("comma path: %v, want an InputError", err)
	}
}

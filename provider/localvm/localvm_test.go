package localvm

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

func TestDefaultMAC(t *testing.T) {
	m := DefaultMAC("red", "n1")
	hw, err := net.ParseMAC(m)
	if err != nil || len(hw) != 6 || hw[0]&1 != 0 || !strings.HasPrefix(m, "52:54:00:") {
		t.Errorf("default MAC %q (%v): want a unicast 52:54:00 address", m, err)
	}
	if m != DefaultMAC("red", "n1") {
		t.Error("default MAC is not stable")
	}
	if m == DefaultMAC("red", "n2") || m == DefaultMAC("blue", "n1") || DefaultMAC("a", "bc") == DefaultMAC("ab", "c") {
		t.Error("default MACs collide")
	}
}

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{
		"n1": true, "a": true, strings.Repeat("a", 63): true,
		"": false, strings.Repeat("a", 64): false, "A1": false, "a/b": false, "..": false, "-a": false, "a,b": false, "a.b": false,
	} {
		if ValidName(name) != ok {
			t.Errorf("ValidName(%q) = %v, want %v", name, !ok, ok)
		}
		var ie *usererr.InputError
		if err := CheckName("qemu", name); (err == nil) != ok || (err != nil && (!errors.As(err, &ie) || !strings.Contains(err.Error(), "qemu: bad node name"))) {
			t.Errorf("CheckName(%q) = %v", name, err)
		}
	}
}

func TestMeta(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nodes", "n1")
	m := Meta{Cluster: "lab", Name: "n1", Address: "192.168.56.10", MAC: "52:54:00:aa:00:0a", Tap: "cctl0123", Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	if err := WriteMeta(dir, m); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, FileMeta))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("node.json: %v, mode %v; want 0600", err, st.Mode())
	}
	b, _ := os.ReadFile(filepath.Join(dir, FileMeta))
	if strings.Contains(string(b), `"vm"`) || strings.Contains(string(b), `"clone"`) || !strings.Contains(string(b), `"tap": "cctl0123"`) {
		t.Errorf("node.json of a qemu node:\n%s", b)
	}
	got, err := ReadMeta(dir)
	if err != nil || got != m {
		t.Errorf("ReadMeta = %+v, %v; want %+v", got, err, m)
	}
	if _, err := ReadMeta(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadMeta without node.json: %v", err)
	}
}

func TestCreate(t *testing.T) {
	ctx := context.Background()
	dir := NodeDir("/state", "n1")
	running := func(s provider.State) bool { return s == provider.StateRunning }
	status := func(state provider.State) func(context.Context, string) (provider.Instance, error) {
		return func(_ context.Context, id string) (provider.Instance, error) {
			return provider.Instance{ID: id, Name: "n1", State: state, Detail: "detail"}, nil
		}
	}
	made := false
	d := Driver{Provider: "qemu", Dir: dir, ID: "n1.lab", Make: func(context.Context) error { made = true; return nil },
		Status: status(provider.StateRunning), Started: running, Log: "/state/nodes/n1/console.log"}
	spec := provider.NodeSpec{Name: "n1", Address: netip.MustParseAddr("192.168.56.10"), Dir: dir}

	inst, err := Create(ctx, d, spec)
	if err != nil || !made || inst.ID != "n1.lab" || inst.State != provider.StateRunning {
		t.Errorf("Create = %+v, %v (made %v)", inst, err, made)
	}

	made = false
	if _, err := Create(ctx, d, provider.NodeSpec{Name: "N/1"}); err == nil || made {
		t.Errorf("a bad name: %v, made %v", err, made)
	}
	if _, err := Create(ctx, d, provider.NodeSpec{Name: "n1", Dir: "/elsewhere/n1"}); err == nil || !strings.Contains(err.Error(), "spec.Dir") || made {
		t.Errorf("a foreign spec.Dir: %v, made %v", err, made)
	}

	boom := errors.New("boom")
	failing := d
	failing.Make = func(context.Context) error { return boom }
	inst, err = Create(ctx, failing, spec)
	if !errors.Is(err, boom) || inst.ID != "n1.lab" || inst.State != provider.StateError || inst.Address != "192.168.56.10" {
		t.Errorf("a failed Make: %+v, %v; want the instance id with the error", inst, err)
	}

	stopped := d
	stopped.Status = status(provider.StateStopped)
	inst, err = Create(ctx, stopped, spec)
	if err == nil || inst.ID != "n1.lab" || !strings.Contains(err.Error(), "see /state/nodes/n1/console.log") {
		t.Errorf("a VM that does not run: %+v, %v", inst, err)
	}
}

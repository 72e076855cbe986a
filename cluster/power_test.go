package cluster_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/internal/testkit"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/fake"
)

// poweredFake is the booting fake whose machines can also be stopped (the
// agent ends without leaving, as on an ACPI power-off) and started again
// (a real agent boots from the same user-data).
func poweredFake(t *testing.T) (*fake.Provider, *booter) {
	p, b := bootingFake(t)
	p.OnStop = b.powerOff
	p.OnStart = b.boot
	return p, b
}

// powerOff ends the agent of machine id at once, without a leave.
func (b *booter) powerOff(_ context.Context, id string) error {
	if n := b.take(id); n != nil {
		n.Stop()
	}
	return nil
}

// hostsOf returns node name's current hosts file.
func (b *booter) hostsOf(name string) string {
	b.mu.Lock()
	path := b.hosts[name]
	b.mu.Unlock()
	data, _ := os.ReadFile(path)
	return string(data)
}

// notes is a reporter that keeps the notes.
type notes struct {
	mu   sync.Mutex
	list []string
}

func (n *notes) Phase(string, cluster.Phase, time.Duration) {}
func (n *notes) Note(node, msg string) {
	n.mu.Lock()
	n.list = append(n.list, msg)
	n.mu.Unlock()
}
func (n *notes) has(s string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, x := range n.list {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

func row(t *testing.T, m *cluster.Manager, name string) cluster.NodeStatus {
	t.Helper()
	rep, err := m.Status(context.Background(), "")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, n := range rep.Nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no status row for %s: %+v", name, rep.Nodes)
	return cluster.NodeStatus{}
}

func upOrFail(t *testing.T, ctx context.Context, m *cluster.Manager, names ...string) {
	t.Helper()
	if _, err := m.Up(ctx, cluster.UpRequest{Names: names}); err != nil {
		t.Fatalf("up %v: %v", names, err)
	}
}

// TestStopStart: stopping blue is not leaving — status shows it stopped,
// gossip holds it failed and red keeps its hosts line; starting it brings
// back the same node (same nonce, same machine), seen alive again.
func TestStopStart(t *testing.T) {
	p, b := poweredFake(t)
	m, rec := newManager(t, p, "")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	upOrFail(t, ctx, m, "red", "blue")
	testkit.WaitFor(t, "red's hosts file lists blue", waitLimit, func() bool { return strings.Contains(b.hostsOf("red"), " blue.test.internal blue") })
	st, _ := m.Store.Load()
	before := *st.Node("blue")

	res, err := m.Stop(ctx, cluster.PowerRequest{Names: []string{"blue"}})
	if err != nil || len(res) != 1 || res[0].Phase != cluster.PhaseStopped {
		t.Fatalf("stop blue: %+v, %v", res, err)
	}
	if b.exited(before.InstanceID) {
		t.Error("blue's agent left: stop asked it to leave")
	}
	testkit.WaitFor(t, "gossip holds blue failed", waitLimit, func() bool { return row(t, m, "blue").Gossip == cluster.GossipFailed })
	r := row(t, m, "blue")
	if r.ProviderState != string(provider.StateStopped) || r.Phase != cluster.PhaseStopped {
		t.Errorf("status of stopped blue: %+v", r)
	}
	if !strings.Contains(b.hostsOf("red"), " blue.test.internal blue") {
		t.Errorf("red dropped blue's hosts line although blue only stopped:\n%s", b.hostsOf("red"))
	}

	res, err = m.Start(ctx, cluster.PowerRequest{Names: []string{"blue"}})
	if err != nil || len(res) != 1 || res[0].Phase != cluster.PhaseJoined {
		t.Fatalf("start blue: %+v, %v", res, err)
	}
	if !contains(rec.phases, "blue starting") || !contains(rec.phases, "blue booting") {
		t.Errorf("start's progress: %v", rec.phases)
	}
	st, _ = m.Store.Load()
	after := st.Node("blue")
	if after.Nonce != before.Nonce || after.InstanceID != before.InstanceID || after.Phase != cluster.PhaseJoined {
		t.Errorf("blue after start %+v; before stop %+v: want the same nonce and machine, joined", after, before)
	}
	if r := row(t, m, "blue"); r.Gossip != cluster.GossipAlive || r.ProviderState != string(provider.StateRunning) {
		t.Errorf("status of started blue: %+v", r)
	}

	// restart: stopped, then back with the same nonce once gossip had
	// noticed it go (its old liveness never counts as its return).
	res, err = m.Restart(ctx, []string{"blue"})
	if err != nil || len(res) != 1 || res[0].Phase != cluster.PhaseJoined {
		t.Fatalf("restart blue: %+v, %v", res, err)
	}
	if st, _ := m.Store.Load(); st.Node("blue").Nonce != before.Nonce {
		t.Error("restart changed blue's nonce")
	}
	if calls := strings.Join(p.CallLog(), ","); strings.Count(calls, "Start "+before.InstanceID) != 2 {
		t.Errorf("calls %s: want two starts of blue", calls)
	}

	// down of a stopped node: no leave is asked, the machine goes.
	if _, err := m.Stop(ctx, cluster.PowerRequest{Names: []string{"blue"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Down(ctx, cluster.DownRequest{Names: []string{"blue"}}); err != nil {
		t.Fatalf("down of a stopped node: %v", err)
	}
	if st, _ := p.Status(ctx, before.InstanceID); st.State != provider.StateNotFound {
		t.Errorf("blue's machine is %s after down", st.State)
	}
}

// TestStopStartAll: the whole cluster stopped and started re-forms: every
// node is seen alive again and every hosts file lists every other node.
func TestStopStartAll(t *testing.T) {
	p, b := poweredFake(t)
	m, _ := newManager(t, p, "")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	upOrFail(t, ctx, m, "red", "blue", "green")
	if res, err := m.Stop(ctx, cluster.PowerRequest{All: true}); err != nil || len(res) != 3 {
		t.Fatalf("stop --all: %+v, %v", res, err)
	}
	rep, _ := m.Status(ctx, "")
	for _, n := range rep.Nodes {
		if n.ProviderState != "stopped" {
			t.Errorf("after stop --all: %+v", n)
		}
	}
	res, err := m.Start(ctx, cluster.PowerRequest{All: true})
	if err != nil {
		t.Fatalf("start --all: %v", err)
	}
	for _, r := range res {
		if r.Phase != cluster.PhaseJoined {
			t.Errorf("start --all: %+v", r)
		}
	}
	testkit.WaitFor(t, "every hosts file lists every other node", waitLimit, func() bool {
		for _, self := range []string{"red", "blue", "green"} {
			h := b.hostsOf(self)
			for _, other := range []string{"red", "blue", "green"} {
				if other != self && !strings.Contains(h, " "+other+".test.internal "+other) {
					return false
				}
			}
		}
		return true
	})
	rep, _ = m.Status(ctx, "")
	for _, n := range rep.Nodes {
		if n.Gossip != cluster.GossipAlive {
			t.Errorf("after start --all: %+v", n)
		}
	}
}

// noPower is a provider without provider.PowerManager.
type noPower struct{ provider.Provider }

func TestStopWithoutPowerManagerIsBadInput(t *testing.T) {
	p, _ := bootingFake(t)
	m, _ := newManager(t, p, "")
	ctx := context.Background()
	upOrFail(t, ctx, m, "red")
	m.NewProvider = func(string, provider.Env) (provider.Provider, error) { return noPower{p}, nil }
	for _, op := range []func() error{
		func() error { _, err := m.Stop(ctx, cluster.PowerRequest{Names: []string{"red"}}); return err },
		func() error { _, err := m.Start(ctx, cluster.PowerRequest{All: true}); return err },
		func() error { _, err := m.Restart(ctx, []string{"red"}); return err },
	} {
		var in *usererr.InputError
		if err := op(); !errors.As(err, &in) || !strings.Contains(err.Error(), "cannot stop and start") || !strings.Contains(in.Fix, "clusterctl down") {
			t.Errorf("error %v: want bad input with a fix", err)
		}
	}
	for _, c := range p.CallLog() {
		if strings.HasPrefix(c, "Stop") || strings.HasPrefix(c, "Start") {
			t.Errorf("the provider was asked: %v", p.CallLog())
		}
	}
}

// TestRepairVanished: a machine lost outside clusterctl is re-created under
// its name with a new nonce, and red's hosts file follows; a dry run only
// says so; a healthy node is never replaced.
func TestRepairVanished(t *testing.T) {
	p, b := poweredFake(t)
	m, _ := newManager(t, p, "")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	upOrFail(t, ctx, m, "red", "blue")
	st, _ := m.Store.Load()
	old := *st.Node("blue")

	// Healthy: nothing to do.
	rep, err := m.Repair(ctx, cluster.RepairRequest{FailedFor: 0})
	if err != nil || len(rep.Nodes) != 0 {
		t.Fatalf("repair of a healthy cluster: %+v, %v", rep, err)
	}
	for _, a := range rep.Actions {
		if a.Replace {
			t.Errorf("healthy node to be replaced: %+v", a)
		}
	}

	p.Vanish(old.InstanceID)
	testkit.WaitFor(t, "red notices blue gone", waitLimit, func() bool {
		return !strings.Contains(b.hostsOf("red"), " blue.test.internal blue") || row(t, m, "blue").Gossip == cluster.GossipFailed
	})
	rep, err = m.Repair(ctx, cluster.RepairRequest{DryRun: true, FailedFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"red": false, "blue": true}
	for _, a := range rep.Actions {
		if a.Replace != want[a.Name] || a.Reason == "" {
			t.Errorf("dry run: %+v", a)
		}
		if a.Name == "blue" && !strings.Contains(a.Reason, "not-found") {
			t.Errorf("dry run does not say why: %+v", a)
		}
	}
	if st, _ := m.Store.Load(); st.Node("blue").Nonce != old.Nonce {
		t.Error("the dry run changed blue")
	}

	rep, err = m.Repair(ctx, cluster.RepairRequest{FailedFor: time.Hour})
	if err != nil || len(rep.Nodes) != 1 || rep.Nodes[0].Phase != cluster.PhaseJoined {
		t.Fatalf("repair: %+v, %v", rep, err)
	}
	st, _ = m.Store.Load()
	now := st.Node("blue")
	if now.Nonce == old.Nonce || now.InstanceID == old.InstanceID {
		t.Errorf("blue after repair %+v: want a new nonce and machine (old %s, %s)", now, old.Nonce, old.InstanceID)
	}
	if r := row(t, m, "blue"); r.Gossip != cluster.GossipAlive {
		t.Errorf("repaired blue: %+v", r)
	}
	testkit.WaitFor(t, "red's hosts file lists the new blue", waitLimit, func() bool { return strings.Contains(b.hostsOf("red"), now.Address+" blue.test.internal blue") })
}

// TestRepairFailedFor: a machine that runs while its agent is dead is
// replaced only once gossip has held it failed for --failed-for, counted
// from when status or repair first saw it failed.
func TestRepairFailedFor(t *testing.T) {
	p, b := poweredFake(t)
	m, _ := newManager(t, p, "")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	upOrFail(t, ctx, m, "red", "blue")
	st, _ := m.Store.Load()
	old := *st.Node("blue")
	_ = b.powerOff(context.Background(), old.InstanceID) // the agent dies; the provider still says running
	testkit.WaitFor(t, "gossip holds blue failed", waitLimit, func() bool { return row(t, m, "blue").Gossip == cluster.GossipFailed })
	st, _ = m.Store.Load()
	seen := st.Node("blue").FailedSince
	if seen.IsZero() {
		t.Fatal("status did not record when it first saw blue failed")
	}
	rep, err := m.Repair(ctx, cluster.RepairRequest{Names: []string{"blue"}, FailedFor: time.Hour})
	if err != nil || len(rep.Actions) != 1 || rep.Actions[0].Replace || len(rep.Nodes) != 0 {
		t.Fatalf("repair within --failed-for: %+v, %v", rep, err)
	}
	if st, _ := m.Store.Load(); !st.Node("blue").FailedSince.Equal(seen) {
		t.Error("repair moved the time blue was first seen failed")
	}
	rep, err = m.Repair(ctx, cluster.RepairRequest{Names: []string{"blue"}, FailedFor: time.Nanosecond})
	if err != nil || len(rep.Nodes) != 1 || rep.Nodes[0].Phase != cluster.PhaseJoined {
		t.Fatalf("repair past --failed-for: %+v, %v", rep, err)
	}
	st, _ = m.Store.Load()
	if n := st.Node("blue"); n.Nonce == old.Nonce || !n.FailedSince.IsZero() {
		t.Errorf("blue after repair: %+v", n)
	}
	if calls := strings.Join(p.CallLog(), ","); !strings.Contains(calls, "Delete "+old.InstanceID) {
		t.Errorf("the old machine was not deleted: %s", calls)
	}
}

// TestScale: scale creates the missing nodes with picked names, does
// nothing the second time, refuses to shrink without --shrink, and removes
// the newest with it.
func TestScale(t *testing.T) {
	p, _ := poweredFake(t)
	m, _ := newManager(t, p, "")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	upOrFail(t, ctx, m, "red")
	res, err := m.Scale(ctx, cluster.ScaleRequest{Size: 3})
	if err != nil || len(res) != 2 {
		t.Fatalf("scale 3: %+v, %v", res, err)
	}
	calls := len(p.CallLog())
	res, err = m.Scale(ctx, cluster.ScaleRequest{Size: 3})
	if err != nil || len(res) != 0 {
		t.Fatalf("scale 3 again: %+v, %v", res, err)
	}
	for _, c := range p.CallLog()[calls:] {
		if strings.HasPrefix(c, "Create") || strings.HasPrefix(c, "Delete") {
			t.Errorf("the second scale 3 changed something: %s", c)
		}
	}
	st, _ := m.Store.Load()
	newest := st.Nodes[0]
	for _, n := range st.Nodes {
		if n.CreatedAt.After(newest.CreatedAt) {
			newest = n
		}
	}
	_, err = m.Scale(ctx, cluster.ScaleRequest{Size: 2})
	var in *usererr.InputError
	if !errors.As(err, &in) || !strings.Contains(in.Fix, "--shrink") || !strings.Contains(in.Fix, newest.Name) {
		t.Fatalf("scale 2 without --shrink: %v; want bad input naming %s", err, newest.Name)
	}
	res, err = m.Scale(ctx, cluster.ScaleRequest{Size: 2, Shrink: true})
	if err != nil || len(res) != 1 || res[0].Name != newest.Name || res[0].Phase != cluster.PhaseDeleted {
		t.Fatalf("scale 2 --shrink: %+v, %v; want %s deleted", res, err, newest.Name)
	}
	st, _ = m.Store.Load()
	if len(st.Nodes) != 2 || st.Node("red") == nil {
		t.Errorf("nodes after scale 2: %+v", st.Nodes)
	}
	if _, err := m.Scale(ctx, cluster.ScaleRequest{Size: -1}); !errors.As(err, &in) {
		t.Errorf("scale -1: %v", err)
	}
}

// TestCommandLock: a down started while an up holds the cluster's lock
// waits for it, naming the holder, and then finds the node up made; with
// no lock timeout it fails at once, naming the holder's pid and command.
func TestCommandLock(t *testing.T) {
	p, b := bootingFake(t)
	release := make(chan struct{})
	creating := make(chan struct{}, 1)
	p.OnCreate = func(ctx context.Context, id string, spec provider.NodeSpec) error {
		creating <- struct{}{}
		<-release
		return b.boot(ctx, id, spec)
	}
	dir := t.TempDir()
	up, _ := newManagerIn(t, dir, p, "")
	down, _ := newManagerIn(t, dir, p, "")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	upDone := make(chan error, 1)
	go func() {
		_, err := up.Up(ctx, cluster.UpRequest{Names: []string{"red"}})
		upDone <- err
	}()
	<-creating

	down.LockTimeout = 0
	_, err := down.Down(ctx, cluster.DownRequest{Names: []string{"red"}})
	if !errors.Is(err, cluster.ErrLocked) || !strings.Contains(err.Error(), "clusterctl up") || !strings.Contains(err.Error(), "pid ") {
		t.Fatalf("down with --lock-timeout 0 while up runs: %v; want it locked, naming the holder", err)
	}
	h, ok := down.Store.LockHolder()
	if !ok || h.PID != os.Getpid() || h.Command != "clusterctl up" {
		t.Errorf("lock holder %+v, %v", h, ok)
	}

	down.LockTimeout = time.Minute
	seen := &notes{}
	down.Report = seen
	downDone := make(chan error, 1)
	go func() {
		_, err := down.Down(ctx, cluster.DownRequest{Names: []string{"red"}})
		downDone <- err
	}()
	testkit.WaitFor(t, "down says whom it waits for", waitLimit, func() bool { return seen.has("waiting for the lock held by pid") && seen.has("(clusterctl up)") })
	select {
	case err := <-downDone:
		t.Fatalf("down ended while up held the lock: %v", err)
	default:
	}
	close(release)
	if err := <-upDone; err != nil {
		t.Fatalf("up: %v", err)
	}
	if err := <-downDone; err != nil {
		t.Fatalf("down after up: %v", err)
	}
	if st, _ := up.Store.Load(); len(st.Nodes) != 0 {
		t.Errorf("nodes left: %+v", st.Nodes)
	}
	if _, ok := down.Store.LockHolder(); ok {
		t.Error("the lock's holder file names a command that ended")
	}
}

// newIP is the powered fake in the shape of EC2 for addresses: each start
// gives the machine a new public address.
type newIP struct {
	*fake.Provider
	mu     sync.Mutex
	starts int
}

func (p *newIP) Start(ctx context.Context, id string) error {
	p.mu.Lock()
	p.starts++
	p.mu.Unlock()
	return p.Provider.Start(ctx, id)
}

func (p *newIP) Status(ctx context.Context, id string) (provider.Instance, error) {
	inst, err := p.Provider.Status(ctx, id)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil && inst.State == provider.StateRunning && p.starts > 0 {
		inst.PublicAddress = "127.78.0." + strings.Repeat("1", p.starts)
	}
	return inst, err
}

// TestStartRecordsNewPublicAddress: the address the provider reports after
// a start replaces the one recorded before, so the API endpoints follow.
func TestStartRecordsNewPublicAddress(t *testing.T) {
	f, _ := poweredFake(t)
	p := &newIP{Provider: f}
	m, _ := newManager(t, f, "")
	m.NewProvider = func(string, provider.Env) (provider.Provider, error) { return p, nil }
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	upOrFail(t, ctx, m, "red", "blue")
	for _, want := range []string{"127.78.0.1", "127.78.0.11"} {
		if _, err := m.Restart(ctx, []string{"blue"}); err != nil {
			t.Fatalf("restart: %v", err)
		}
		st, _ := m.Store.Load()
		if got := st.Node("blue").PublicAddress; got != want {
			t.Errorf("public address after start %q, want %q", got, want)
		}
	}
}

// TestRepairMachineStoppedOutside: a machine that stopped without
// `clusterctl stop` (its QEMU process killed, powered off outside
// clusterctl) is broken, not stopped on purpose: gossip decides, and repair
// replaces it; one that `clusterctl stop` stopped is left for start.
func TestRepairMachineStoppedOutside(t *testing.T) {
	p, _ := poweredFake(t)
	m, _ := newManager(t, p, "")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	upOrFail(t, ctx, m, "red", "blue", "green")
	st, _ := m.Store.Load()
	old := *st.Node("blue")
	if err := p.Stop(ctx, old.InstanceID); err != nil { // not through clusterctl
		t.Fatal(err)
	}
	if _, err := m.Stop(ctx, cluster.PowerRequest{Names: []string{"green"}}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "gossip holds blue failed", waitLimit, func() bool { return row(t, m, "blue").Gossip == cluster.GossipFailed })
	rep, err := m.Repair(ctx, cluster.RepairRequest{FailedFor: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range rep.Actions {
		if want := a.Name == "blue"; a.Replace != want {
			t.Errorf("repair of %s: replace %v (%s), want %v", a.Name, a.Replace, a.Reason, want)
		}
	}
	st, _ = m.Store.Load()
	if n := st.Node("blue"); n.Nonce == old.Nonce || n.Phase != cluster.PhaseJoined {
		t.Errorf("blue after repair: %+v", n)
	}
}

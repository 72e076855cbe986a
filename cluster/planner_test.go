package cluster_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/fake"
)

// bigExtra is a cloudinit.extra that makes user-data larger than the
// cloud fake's limit below.
const bigExtra = "cloudinit:\n  extra: |\n    write_files:\n      - path: /etc/motd\n        content: \"" + "0123456789abcdef" + "\"\n"

func newCloud(t *testing.T) (*fake.Cloud, *booter) {
	c := fake.NewCloud()
	b := newBooter(t)
	b.addrOf = func(id string) string {
		inst, _ := c.Status(context.Background(), id)
		return inst.Address
	}
	c.Fake().OnCreate = b.boot
	c.Fake().OnDelete = b.stop
	t.Cleanup(b.stopAll)
	return c, b
}

func agentSum(t *testing.T, m *cluster.Manager) string {
	data, err := os.ReadFile(m.Cfg.Agent.Binary)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

func index(calls []string, call string) int {
	return slices.IndexFunc(calls, func(c string) bool { return c == call || strings.HasPrefix(c, call+" ") })
}

// On a cloud, up runs the provider's checks before its lookups, hands the
// nodes a URL before anything is made, records everything (the cleanup it
// will owe included) and only then uploads the agent and creates nodes.
func TestCloudUpRecordsBeforeItMakesAnything(t *testing.T) {
	c, _ := newCloud(t)
	m, _ := newManagerIn(t, t.TempDir(), c, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var atUpload *cluster.State
	c.OnUpload = func(string) error {
		atUpload, _ = m.Store.Load()
		return nil
	}
	res, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red", "blue"}})
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	for _, r := range res {
		if r.Phase != cluster.PhaseJoined || r.Address == "" {
			t.Errorf("result %+v: want joined with the provider's address", r)
		}
	}
	calls := c.Fake().CallLog()
	order := []string{"Preflight", "NodeCIDR", "AgentURL", "UploadAgent", "Create"}
	for i := 1; i < len(order); i++ {
		if a, b := index(calls, order[i-1]), index(calls, order[i]); a < 0 || b < 0 || a > b {
			t.Fatalf("calls %v: want %s before %s", calls, order[i-1], order[i])
		}
	}
	if atUpload == nil || len(atUpload.Nodes) != 2 || !slices.Contains(atUpload.Cleanup, "fake") {
		t.Fatalf("state at upload %+v: want both nodes and the provider's cleanup recorded", atUpload)
	}
	for _, n := range atUpload.Nodes {
		if n.Phase != cluster.PhaseRecorded {
			t.Errorf("node %s at upload: phase %s, want recorded", n.Name, n.Phase)
		}
	}
	if got := c.Uploaded("test"); got != agentSum(t, m) {
		t.Errorf("uploaded agent %q, want the binary's SHA-256", got)
	}

	if _, err := m.Down(ctx, cluster.DownRequest{All: true}); err != nil {
		t.Fatalf("down --all: %v", err)
	}
	if c.Uploaded("test") != "" {
		t.Error("the agent object is left after down --all")
	}
}

// An oversized user-data is bad input: exit 2, before anything is made,
// with nothing uploaded and nothing in the state directory.
func TestOversizedSeedUploadsNothing(t *testing.T) {
	c, _ := newCloud(t)
	c.UserDataLimit = 1500
	m, _ := newManagerIn(t, t.TempDir(), c, bigExtra)
	_, err := m.Up(context.Background(), cluster.UpRequest{Names: []string{"red"}})
	var in *usererr.InputError
	if !errors.As(err, &in) || !strings.Contains(err.Error(), `node "red": fake: user-data of`) {
		t.Fatalf("error %v: want an input error naming the node and the size", err)
	}
	calls := c.Fake().CallLog()
	if index(calls, "UploadAgent") >= 0 || index(calls, "Create") >= 0 {
		t.Errorf("calls %v: nothing may be uploaded or created", calls)
	}
	if c.Uploaded("test") != "" {
		t.Error("the agent was uploaded")
	}
	if _, err := os.Stat(m.Store.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Error("the cluster directory was created")
	}
}

// A problem Preflight finds (credentials, region) comes before any cloud
// lookup: NodeCIDR and AgentURL are not called.
func TestPreflightBeforeCloudLookups(t *testing.T) {
	c, _ := newCloud(t)
	c.PreflightErr = usererr.BadInput("set credentials", "fake: no credentials")
	m, _ := newManagerIn(t, t.TempDir(), c, "")
	_, err := m.Up(context.Background(), cluster.UpRequest{Names: []string{"red"}})
	if !errors.Is(err, c.PreflightErr) {
		t.Fatalf("up: %v, want the preflight error", err)
	}
	if calls := c.Fake().CallLog(); !slices.Equal(calls, []string{"Preflight"}) {
		t.Errorf("calls %v: want Preflight only", calls)
	}
}

// killEnv makes TestKilledAfterRecordHelper run: it is the up that gets
// killed (SIGKILL) right after its write-ahead record, in a process of its
// own.
const killEnv = "CLUSTERCTL_TEST_KILL_DIR"

func TestKilledAfterRecordHelper(t *testing.T) {
	dir := os.Getenv(killEnv)
	if dir == "" {
		t.Skip("run by TestKillAfterRecordLeavesWhatDownCleans")
	}
	c := fake.NewCloud()
	m, _ := newManagerIn(t, dir, c, "")
	c.OnUpload = func(string) error {
		return syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
	_, err := m.Up(context.Background(), cluster.UpRequest{Names: []string{"red"}})
	t.Fatalf("up returned (%v) instead of being killed at the upload", err)
}

// A kill -9 right after the record leaves a record from which down --all
// cleans everything: the nodes, the cluster-wide resources (although no
// node was created), the state.
func TestKillAfterRecordLeavesWhatDownCleans(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledAfterRecordHelper$")
	cmd.Env = append(os.Environ(), killEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper: %v, want killed by SIGKILL\n%s", err, out)
	}

	c := fake.NewCloud()
	m, _ := newManagerIn(t, dir, c, "")
	st, err := m.Store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if n := st.Node("red"); n == nil || n.Phase != cluster.PhaseRecorded || !slices.Contains(st.Cleanup, "fake") {
		t.Fatalf("state after the kill: %+v; want red recorded and the cleanup owed", st)
	}
	// The bucket may exist: the kill may have come in the middle of the upload.
	c.Upload("test", agentSum(t, m))
	if _, err := m.Down(context.Background(), cluster.DownRequest{All: true}); err != nil {
		t.Fatalf("down --all: %v", err)
	}
	if index(c.Fake().CallLog(), "CleanupCluster") < 0 || c.Uploaded("test") != "" {
		t.Errorf("calls %v: down --all did not clean the cluster-wide resources", c.Fake().CallLog())
	}
	if _, err := os.Stat(m.Store.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cluster directory left: %v", err)
	}
}

// Without a state file, status lists the machines the provider has for the
// cluster, and down --all names and deletes them and cleans up.
func TestStatusAndDownAllWithoutState(t *testing.T) {
	c := fake.NewCloud()
	ctx := context.Background()
	for _, name := range []string{"red", "blue"} {
		if _, err := c.Create(ctx, provider.NodeSpec{Cluster: "test", Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Create(ctx, provider.NodeSpec{Cluster: "other", Name: "green"}); err != nil {
		t.Fatal(err)
	}
	c.Upload("test", strings.Repeat("a", 64))
	m, rec := newManagerIn(t, t.TempDir(), c, "")
	notes := &noteRecorder{recorder: rec}
	m.Report = notes

	rep, err := m.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Nodes) != 2 || rep.Provider != "fake" {
		t.Fatalf("status without state: %+v; want red and blue as strays", rep)
	}
	for _, n := range rep.Nodes {
		if !n.Stray || n.Phase != cluster.PhaseStray || n.ProviderState != "running" {
			t.Errorf("row %+v: want a running stray", n)
		}
	}

	res, err := m.Down(ctx, cluster.DownRequest{All: true})
	if err != nil {
		t.Fatalf("down --all: %v", err)
	}
	if len(res) != 2 || res[0].Phase != cluster.PhaseDeleted || res[1].Phase != cluster.PhaseDeleted {
		t.Errorf("down results %+v: want both strays deleted", res)
	}
	if !notes.has("", "removing agent object aaaaaaaaaaaa of cluster test") {
		t.Errorf("down --all did not name the cluster's agent object before removing it: %v", notes.notes)
	}
	for _, name := range []string{"red", "blue"} {
		if !notes.has(name, "stray machine") {
			t.Errorf("down did not name stray %s before deleting it: %v", name, notes.notes)
		}
	}
	if list, _ := c.List(ctx, "test"); len(list) != 0 {
		t.Errorf("machines left: %v", list)
	}
	if list, _ := c.List(ctx, "other"); len(list) != 1 {
		t.Errorf("another cluster's machine was touched: %v", list)
	}
	if c.Uploaded("test") != "" {
		t.Error("down --all without state did not clean the cluster-wide resources")
	}
}

// down --all also deletes a machine of the cluster that the state does not
// know next to the recorded ones.
func TestDownAllDeletesStrays(t *testing.T) {
	p := fake.New()
	m, _ := newManager(t, p, "")
	ctx := context.Background()
	if _, err := p.Create(ctx, provider.NodeSpec{Cluster: "test", Name: "ghost"}); err != nil {
		t.Fatal(err)
	}
	inst, err := p.Create(ctx, provider.NodeSpec{Cluster: "test", Name: "red"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Store.Update(func(st *cluster.State) error {
		st.Provider = "fake"
		st.Nodes = append(st.Nodes, cluster.Node{Name: "red", Provider: "fake", InstanceID: inst.ID, Phase: cluster.PhaseFailed})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rep, _ := m.Status(ctx, "")
	if len(rep.Nodes) != 2 {
		t.Fatalf("status: %+v; want red and the stray ghost", rep.Nodes)
	}
	if _, err := m.Down(ctx, cluster.DownRequest{All: true}); err != nil {
		t.Fatal(err)
	}
	if list, _ := p.List(ctx, "test"); len(list) != 0 {
		t.Errorf("machines left: %v", list)
	}
}

// down deletes a few nodes at once, never more than up creates at once.
func TestDownDeletesInParallel(t *testing.T) {
	p := fake.New()
	var inFlight, most atomic.Int32
	p.OnDelete = func(string) {
		n := inFlight.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(300 * time.Millisecond)
		inFlight.Add(-1)
	}
	m, _ := newManager(t, p, "")
	ctx := context.Background()
	var nodes []cluster.Node
	for _, name := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		inst, err := p.Create(ctx, provider.NodeSpec{Cluster: "test", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, cluster.Node{Name: name, Provider: "fake", InstanceID: inst.ID, Phase: cluster.PhaseFailed})
	}
	if err := m.Store.Update(func(st *cluster.State) error { st.Provider, st.Nodes = "fake", nodes; return nil }); err != nil {
		t.Fatal(err)
	}
	res, err := m.Down(ctx, cluster.DownRequest{All: true})
	if err != nil || len(res) != 8 {
		t.Fatalf("down --all: %d results, %v", len(res), err)
	}
	if got := most.Load(); got < 2 || got > 4 {
		t.Errorf("at most %d deletes ran at once; want 2 to 4", got)
	}
}

// The first up of a cluster may run twice at once: both succeed, with one
// key and distinct addresses.
func TestConcurrentFirstUps(t *testing.T) {
	p, b := bootingFake(t)
	dir := t.TempDir()
	m1, _ := newManagerIn(t, dir, p, "")
	m2, _ := newManagerIn(t, dir, p, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, m := range []*cluster.Manager{m1, m2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = m.Up(ctx, cluster.UpRequest{Names: []string{[]string{"red", "blue"}[i]}})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("up %d: %v", i, err)
		}
	}
	// One CA, made with the key: both nodes' API sections carry it.
	caPEM, err := os.ReadFile(filepath.Join(m1.Store.Dir, "ca.crt"))
	if err != nil {
		t.Fatalf("no CA after two first ups: %v", err)
	}
	for _, name := range []string{"red", "blue"} {
		if got := b.configs[name].API.CA; got != string(caPEM) {
			t.Errorf("node %s got another CA than the cluster's", name)
		}
	}
	st, _ := m1.Store.Load()
	if len(st.Nodes) != 2 || st.Nodes[0].Address == st.Nodes[1].Address {
		t.Errorf("state %+v: want red and blue with distinct addresses", st.Nodes)
	}
	for _, n := range st.Nodes {
		if n.Phase != cluster.PhaseJoined {
			t.Errorf("node %s: phase %s, want joined", n.Name, n.Phase)
		}
	}
}

type noteRecorder struct {
	*recorder
	mu    sync.Mutex
	notes []string
}

func (r *noteRecorder) Note(node, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, node+": "+msg)
}

func (r *noteRecorder) has(node, part string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.notes, func(n string) bool { return strings.HasPrefix(n, node+": ") && strings.Contains(n, part) })
}

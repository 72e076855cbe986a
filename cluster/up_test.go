package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/guesttest"
	"github.com/clusterctl/clusterctl/internal/sshkeys"
	"github.com/clusterctl/clusterctl/internal/usererr"

	"github.com/clusterctl/clusterctl/agent"
	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/internal/testkit"
	"github.com/clusterctl/clusterctl/nodeapi"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/fake"
)

// booter plays the guest for the fake provider: each machine boots a real
// agent from its rendered user-data (guesttest.Boot) on the node's
// loopback address.
type booter struct {
	t     *testing.T
	mu    sync.Mutex
	nodes map[string]*guesttest.Node // running, by instance id
	hosts map[string]string
	// selfExit records agents whose Run returned nil before the machine was
	// deleted: they left because they were asked to.
	selfExit map[string]bool
	// skip names nodes that never boot (their agent never starts).
	skip map[string]bool
	// configs are the agent configs the nodes booted with, by name.
	configs map[string]agentconfig.Config
	// disks are the machines' state directories, by instance id: a
	// machine that boots again (start) finds what its agent kept.
	disks map[string]string
	// hostKeys are the SSH host keys the nodes made at boot (as sshd does
	// at first boot), by name; their agents sent the public halves.
	hostKeys map[string]sshkeys.Pair
	// addrOf gives the address of a machine whose address the provider
	// chose (a cloud); nil when clusterctl chose it (spec.Address).
	addrOf func(id string) string
	// lagging: a node's API hides these members from its view, as a
	// node's serf that has not heard of them yet (set with lag).
	lagging map[string][]string
	// answerDelay: a node keeps its enrolment grant at once (and so
	// joins) but answers the CLI's enrolment only after this long, as
	// over a slow way back.
	answerDelay time.Duration
}

// lag makes node's API view leave out the members hidden.
func (b *booter) lag(node string, hidden ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lagging == nil {
		b.lagging = map[string][]string{}
	}
	b.lagging[node] = hidden
}

// lagged is an agent's API view without the members its booter hides.
type lagged struct {
	*agent.Agent
	b    *booter
	node string
}

func (l lagged) visible(mem nodeapi.Member) bool {
	l.b.mu.Lock()
	defer l.b.mu.Unlock()
	return !slices.Contains(l.b.lagging[l.node], mem.Name)
}

// Enrol keeps the grant, then answers after the booter's answerDelay.
func (l lagged) Enrol(ctx context.Context, g nodeapi.EnrolGrant) error {
	err := l.Agent.Enrol(ctx, g)
	time.Sleep(l.b.answerDelay)
	return err
}

func (l lagged) Members() []nodeapi.Member {
	return slices.DeleteFunc(l.Agent.Members(), func(m nodeapi.Member) bool { return !l.visible(m) })
}

func (l lagged) Subscribe(ctx context.Context) ([]nodeapi.Member, <-chan nodeapi.Event) {
	snap, events := l.Agent.Subscribe(ctx)
	out := make(chan nodeapi.Event)
	go func() {
		defer close(out)
		for e := range events {
			if !l.visible(e.Member) {
				continue
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	return slices.DeleteFunc(snap, func(m nodeapi.Member) bool { return !l.visible(m) }), out
}

// bootingFake is the fake provider whose machines boot a real agent (with
// its API) from the rendered user-data and stop it on delete.
func bootingFake(t *testing.T) (*fake.Provider, *booter) {
	p := fake.New()
	b := newBooter(t)
	p.OnCreate = b.boot
	p.OnDelete = b.stop
	t.Cleanup(b.stopAll)
	return p, b
}

func newBooter(t *testing.T) *booter {
	return &booter{t: t, nodes: map[string]*guesttest.Node{}, hosts: map[string]string{}, configs: map[string]agentconfig.Config{}, disks: map[string]string{}, hostKeys: map[string]sshkeys.Pair{}, selfExit: map[string]bool{}, skip: map[string]bool{}}
}

// agentConfigFrom is the agent config the rendered user-data writes.
func agentConfigFrom(userData []byte) (agentconfig.Config, error) {
	u, err := guesttest.Parse(userData)
	if err != nil {
		return agentconfig.Config{}, err
	}
	return u.AgentConfig()
}

func (b *booter) boot(_ context.Context, id string, spec provider.NodeSpec) error {
	if b.skip[spec.Name] {
		return nil
	}
	addr := spec.Address.String()
	if !spec.Address.IsValid() && b.addrOf != nil {
		addr = b.addrOf(id)
	}
	b.mu.Lock()
	if b.disks[id] == "" {
		b.disks[id] = filepath.Join(b.t.TempDir(), "state")
	}
	disk := b.disks[id]
	b.mu.Unlock()
	n, err := guesttest.Boot(spec.Seed.UserData, guesttest.Machine{
		ID: id, Name: spec.Name, Addr: addr, Dir: b.t.TempDir(), StateDir: disk,
		API:  func(a *agent.Agent) nodeapi.Membership { return lagged{a, b, spec.Name} },
		Logf: b.t.Logf,
	})
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.nodes[id], b.hosts[spec.Name], b.configs[spec.Name], b.hostKeys[spec.Name] = n, n.Hosts, n.Config, n.HostKey
	b.mu.Unlock()
	return nil
}

// take removes machine id's running node from the booter, if it has one.
func (b *booter) take(id string) *guesttest.Node {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.nodes[id]
	delete(b.nodes, id)
	return n
}

// stop makes the "machine" go away (as a provider's delete would).
func (b *booter) stop(id string) {
	n := b.take(id)
	if n == nil {
		return
	}
	// Like a guest's shutdown, give an agent that is leaving a moment to
	// finish before the machine goes.
	select {
	case <-n.Exited():
		b.mu.Lock()
		b.selfExit[id] = n.Err() == nil
		b.mu.Unlock()
	case <-time.After(5 * time.Second):
		n.Stop()
	}
}

func (b *booter) stopAll() {
	b.mu.Lock()
	var ids []string
	for id := range b.nodes {
		ids = append(ids, id)
	}
	b.mu.Unlock()
	for _, id := range ids {
		if n := b.take(id); n != nil {
			n.Stop()
		}
	}
}

// exited reports whether the agent of id ended by itself (a leave request).
func (b *booter) exited(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.selfExit[id]
}

type recorder struct {
	mu     sync.Mutex
	phases []string
	notes  []string
}

func (r *recorder) Phase(node string, phase cluster.Phase, d time.Duration) {
	r.mu.Lock()
	if testing.Verbose() {
		println(time.Now().Format("15:04:05.000"), node, phase.String(), d.String())
	}
	r.phases = append(r.phases, node+" "+phase.String())
	r.mu.Unlock()
}
func (r *recorder) Note(node, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, node+": "+msg)
}

// noted returns the notes so far.
func (r *recorder) noted() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.notes)
}

// upFake makes the named nodes with up on the booting fake, with the
// default test config, failing t if up fails. The context ends with the
// test, after 60 s at most.
func upFake(t *testing.T, names ...string) (context.Context, *cluster.Manager, *booter) {
	t.Helper()
	p, b := bootingFake(t)
	m, _ := newManager(t, p, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if _, err := m.Up(ctx, cluster.UpRequest{Names: names}); err != nil {
		t.Fatal(err)
	}
	return ctx, m, b
}

func newManager(t *testing.T, p *fake.Provider, cfgText string) (*cluster.Manager, *recorder) {
	t.Helper()
	return newManagerIn(t, t.TempDir(), p, cfgText)
}

// newManagerIn makes a manager whose config, agent binary and home are in
// dir, on provider p (any shape of the fake); two managers made for one dir
// are two clusterctl commands on one cluster.
func newManagerIn(t *testing.T, dir string, p provider.Provider, cfgText string) (*cluster.Manager, *recorder) {
	t.Helper()
	agentBin := filepath.Join(dir, "clusterctl-agent")
	if err := os.WriteFile(agentBin, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "cluster.yaml")
	// A gossip port of its own per test, so no agent or socket of another
	// test (or package running in parallel) can answer.
	port := testkit.FreePort(t, "127.77.0.1")
	if data, err := os.ReadFile(filepath.Join(dir, "port")); err == nil {
		fmt.Sscan(string(data), &port) // a manager made before for this dir
	} else if err := os.WriteFile(filepath.Join(dir, "port"), []byte(fmt.Sprint(port)), 0o644); err != nil {
		t.Fatal(err)
	}
	apiPort := testkit.FreePort(t, "127.77.0.1")
	if data, err := os.ReadFile(filepath.Join(dir, "api-port")); err == nil {
		fmt.Sscan(string(data), &apiPort)
	} else if err := os.WriteFile(filepath.Join(dir, "api-port"), []byte(fmt.Sprint(apiPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("cluster: test\nprovider: fake\ngossip: {port: %d}\napi: {port: %d}\nagent: {binary: %s}\n", port, apiPort, agentBin)
	if !strings.Contains(cfgText, "timeouts:") {
		cfgText += "timeouts: {join: 60s, leave: 10s}\n"
	}
	if err := os.WriteFile(cfgPath, []byte(base+cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := cluster.LoadConfig(cfgPath, true)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	var log *slog.Logger
	if os.Getenv("CLUSTERCTL_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m, err := cluster.NewManager(cfg, filepath.Join(dir, "home"), "", rec, log)
	if err != nil {
		t.Fatal(err)
	}
	m.NewProvider = func(name string, env provider.Env) (provider.Provider, error) {
		if name != "fake" {
			return nil, usererr.BadInput("use fake", "unknown provider %q", name)
		}
		return p, nil
	}
	return m, rec
}

func TestMain(m *testing.M) {
	provider.Register("fake", func(provider.Env) (provider.Provider, error) { return fake.New(), nil })
	os.Exit(m.Run())
}

func TestUpStatusDown(t *testing.T) {
	p, b := bootingFake(t)
	m, rec := newManager(t, p, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	res, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red", "blue"}})
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	for _, r := range res {
		if r.Phase != cluster.PhaseJoined || r.Address == "" || r.InstanceID == "" {
			t.Errorf("up result %+v: want joined with address and instance id", r)
		}
	}
	if !contains(rec.phases, "red creating") || !contains(rec.phases, "red booting") || !contains(rec.phases, "red joined") {
		t.Errorf("phases reported: %v", rec.phases)
	}

	// A third node, named by up, joins the existing two.
	res, err = m.Up(ctx, cluster.UpRequest{})
	if err != nil {
		t.Fatalf("up with picked name: %v", err)
	}
	if res[0].Name != "green" {
		t.Errorf("picked name %q, want green (red and blue are taken)", res[0].Name)
	}

	rep, err := m.Status(ctx, "")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if len(rep.Nodes) != 3 {
		t.Fatalf("status rows: %+v", rep.Nodes)
	}
	addrs := map[string]bool{}
	for _, n := range rep.Nodes {
		if n.Gossip != "alive" || n.ProviderState != "running" || n.Phase != cluster.PhaseJoined {
			t.Errorf("status %+v: want joined, running, alive", n)
		}
		if addrs[n.Address] {
			t.Errorf("address %s given twice", n.Address)
		}
		addrs[n.Address] = true
	}

	// The agents keep /etc/hosts: red's file lists all three nodes.
	testkit.WaitFor(t, "red's hosts file lists blue and green", waitLimit, func() bool {
		data, _ := os.ReadFile(b.hosts["red"])
		return strings.Contains(string(data), " blue.test.internal blue") && strings.Contains(string(data), " green.test.internal green")
	})

	st, _ := m.Store.Load()
	blueID := st.Node("blue").InstanceID
	if _, err := m.Down(ctx, cluster.DownRequest{Names: []string{"blue"}}); err != nil {
		t.Fatalf("down blue: %v", err)
	}
	if !b.exited(blueID) {
		t.Error("blue's agent did not end by itself: down did not ask it to leave")
	}
	if !contains(rec.phases, "blue left") {
		t.Errorf("phases %v: blue's graceful leave was not seen", rec.phases)
	}
	rep, err = m.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range rep.Nodes {
		if n.Name == "blue" {
			t.Errorf("blue still in status after down: %+v", n)
		}
	}
	if len(rep.Nodes) != 2 {
		t.Errorf("status after down blue: %+v", rep.Nodes)
	}

	if _, err := m.Down(ctx, cluster.DownRequest{All: true}); err != nil {
		t.Fatalf("down --all: %v", err)
	}
	if _, err := os.Stat(m.Store.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cluster directory left behind after down --all: %v", err)
	}
	if list, _ := p.List(ctx, "test"); len(list) != 0 {
		t.Errorf("machines left at the provider: %v", list)
	}
}

func TestUpJoinTimeoutKeepsNode(t *testing.T) {
	p := fake.New()
	b := newBooter(t)
	b.skip["red"] = true // the machine comes up but its agent never starts
	p.OnCreate = b.boot
	t.Cleanup(b.stopAll)
	m, _ := newManager(t, p, "timeouts: {join: 3s}\n")
	ctx := context.Background()

	res, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red"}})
	if err == nil {
		t.Fatal("up succeeded although the agent never joined")
	}
	if !strings.Contains(err.Error(), "join") {
		t.Errorf("error %q does not name the join phase", err)
	}
	if len(res) != 1 || res[0].Phase != cluster.PhaseFailed || !strings.Contains(res[0].ConsoleTail, "fake console of red") {
		t.Errorf("result %+v: want failed with the console tail", res)
	}
	st, _ := m.Store.Load()
	if n := st.Node("red"); n == nil || n.InstanceID == "" || n.Phase != cluster.PhaseFailed {
		t.Fatalf("state after a failed join: %+v, want red kept with its instance id", st.Nodes)
	}
	for _, f := range []string{"state.json", "gossip.key"} {
		fi, err := os.Stat(filepath.Join(m.Store.Dir, f))
		if err != nil {
			t.Errorf("%s after up: %v", f, err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	if key, err := m.Store.ReadKey(); err != nil || len(key) != 32 {
		t.Errorf("gossip key after up: %d bytes, %v; want 32 bytes", len(key), err)
	}
	rep, _ := m.Status(ctx, "")
	if len(rep.Nodes) != 1 || rep.Nodes[0].Gossip == "alive" {
		t.Errorf("status: %+v", rep.Nodes)
	}
	if _, err := m.Down(ctx, cluster.DownRequest{Names: []string{"red"}}); err != nil {
		t.Fatalf("down of a node that never joined: %v", err)
	}
	if list, _ := p.List(ctx, "test"); len(list) != 0 {
		t.Errorf("machine left at the provider: %v", list)
	}
}

func TestCreateFailureKeepsNodeForDown(t *testing.T) {
	p := fake.New()
	p.OnCreate = func(context.Context, string, provider.NodeSpec) error { return errors.New("disk full") }
	m, _ := newManager(t, p, "")
	ctx := context.Background()
	_, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red"}})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("up error %v, want the provider's cause", err)
	}
	st, _ := m.Store.Load()
	if n := st.Node("red"); n == nil || n.InstanceID == "" {
		t.Fatalf("state %+v: the half-made node must stay with its id", st.Nodes)
	}
	if _, err := m.Down(ctx, cluster.DownRequest{Names: []string{"red"}}); err != nil {
		t.Fatal(err)
	}
	if list, _ := p.List(ctx, "test"); len(list) != 0 {
		t.Errorf("orphaned machine: %v", list)
	}
}

func TestBadInputCreatesNothing(t *testing.T) {
	cases := []struct {
		name, cfg string
		req       cluster.UpRequest
		want      string
	}{
		{"invalid name", "", cluster.UpRequest{Names: []string{"Red_1"}}, `invalid node name "Red_1"`},
		{"duplicate", "", cluster.UpRequest{Names: []string{"red", "red"}}, `"red" is given twice`},
		{"unknown provider", "", cluster.UpRequest{Provider: "nope", Names: []string{"red"}}, `unknown provider "nope"`},
		{"extra not yaml", "cloudinit:\n  extra: \"runcmd: [unclosed\"\n", cluster.UpRequest{Names: []string{"red"}}, "cloudinit.extra"},
		{"count mismatch", "", cluster.UpRequest{Names: []string{"red"}, Count: 2}, "--count 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := fake.New()
			m, _ := newManager(t, p, tc.cfg)
			_, err := m.Up(context.Background(), tc.req)
			var in *usererr.InputError
			if !errors.As(err, &in) {
				t.Fatalf("error %v: want an input error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if len(p.Calls) > 0 && strings.HasPrefix(p.Calls[0], "Create") {
				t.Errorf("provider was asked to create: %v", p.Calls)
			}
			if _, err := os.Stat(m.Store.Dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("bad input created the cluster directory")
			}
		})
	}
}

func TestNameInUseAndProviderBinding(t *testing.T) {
	p, _ := bootingFake(t)
	m, _ := newManager(t, p, "")
	ctx := context.Background()
	if _, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red"}}); err != nil {
		t.Fatal(err)
	}
	_, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red"}})
	if err == nil || !strings.Contains(err.Error(), `node "red" already exists`) {
		t.Errorf("second up red: %v", err)
	}
	_, err = m.Up(ctx, cluster.UpRequest{Provider: "qemu-elsewhere", Names: []string{"blue"}})
	if err == nil || !strings.Contains(err.Error(), `bound to provider "fake"`) {
		t.Errorf("up on another provider: %v", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// waitLimit bounds each wait for the agents in these tests.
const waitLimit = 60 * time.Second

// limited is a provider that bounds the user-data size, like EC2.
type limited struct{ *fake.Provider }

func (l limited) CheckSeed(spec provider.NodeSpec) error {
	if len(spec.Seed.UserData) > 1000 {
		return usererr.BadInput("make cloudinit.extra smaller", "user-data of %d bytes is over the limit", len(spec.Seed.UserData))
	}
	return nil
}

func TestSeedLimitIsBadInput(t *testing.T) {
	p := fake.New()
	m, _ := newManager(t, p, "")
	m.NewProvider = func(string, provider.Env) (provider.Provider, error) { return limited{p}, nil }
	_, err := m.Up(context.Background(), cluster.UpRequest{Names: []string{"red"}})
	var in *usererr.InputError
	if !errors.As(err, &in) || !strings.Contains(err.Error(), `node "red": user-data of`) {
		t.Fatalf("error %v: want an input error naming the node and the size", err)
	}
	for _, c := range p.Calls {
		if strings.HasPrefix(c, "Create") {
			t.Fatalf("the provider was asked to create: %v", p.Calls)
		}
	}
	if _, err := os.Stat(m.Store.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Error("the cluster directory was created")
	}
}

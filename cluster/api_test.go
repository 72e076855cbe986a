package cluster_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/agent"
	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/pki"
	"github.com/clusterctl/clusterctl/internal/testkit"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider/fake"
)

// On a cloud (the provider picks addresses), a batch's first node is made
// first with no seed, and the rest get its private address as their seed:
// they find each other with no help from the CLI, which only dials.
func TestCloudBatchSeedsFromTheFirstNode(t *testing.T) {
	c, b := newCloud(t)
	m, _ := newManagerIn(t, t.TempDir(), c, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red", "blue", "green"}})
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	for _, r := range res {
		if r.Phase != cluster.PhaseJoined {
			t.Errorf("result %+v: want joined", r)
		}
	}
	calls := c.Fake().CallLog()
	if i := index(calls, "Create"); i < 0 || calls[i] != "Create red" {
		t.Errorf("calls %v: want red created first", calls)
	}
	st, _ := m.Store.Load()
	first := b.configs["red"]
	if len(first.Seeds) != 0 {
		t.Errorf("the first node of a new cluster has seeds %v, want none", first.Seeds)
	}
	for _, name := range []string{"blue", "green"} {
		want := st.Node("red").Address
		seeds := b.configs[name].Seeds
		if len(seeds) != 1 || !strings.HasPrefix(seeds[0], want+":") {
			t.Errorf("%s's seeds %v, want only red's private address %s", name, seeds, want)
		}
	}
	rep, err := m.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range rep.Nodes {
		if n.Gossip != cluster.GossipAlive || n.Hostname == "" {
			t.Errorf("status %+v: want alive with its hostname from the member's tags", n)
		}
	}
	// Every agent sees all three: their /etc/hosts lists the others.
	for _, name := range []string{"red", "blue", "green"} {
		testkit.WaitFor(t, name+"'s hosts file lists the others", waitLimit, func() bool {
			data, _ := os.ReadFile(b.hosts[name])
			n := 0
			for _, o := range []string{"red", "blue", "green"} {
				if strings.Contains(string(data), " "+o+".test.internal "+o) {
					n++
				}
			}
			return n >= 2
		})
	}
}

// With no agent answering, status shows every node unreachable after one
// connect timeout, not after waiting for a view that never comes.
func TestStatusUnreachableIsQuick(t *testing.T) {
	ctx, m, b := upFake(t, "red", "blue")
	b.stopAll()
	start := time.Now()
	rep, err := m.Status(ctx, "")
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range rep.Nodes {
		if n.Gossip != cluster.GossipUnreachable || n.ProviderState != "running" {
			t.Errorf("status %+v: want running and unreachable", n)
		}
	}
	// A bound far above one connect timeout (2 s) and far below the old
	// observer's 10 s join wait: it fails only if status waits for views.
	if took > 6*time.Second {
		t.Errorf("status took %s with no agent answering", took)
	}
	t.Logf("status with no agent answering: %s", took)

	// down deletes them anyway, each with a note.
	if _, err := m.Down(ctx, cluster.DownRequest{All: true}); err != nil {
		t.Fatalf("down --all: %v", err)
	}
}

// A missing CA in an existing cluster is the clear exit-2 error naming the
// file; no new CA is made.
func TestMissingCAIsBadInputAndNotReplaced(t *testing.T) {
	ctx, m, _ := upFake(t, "red")
	if err := os.Remove(filepath.Join(m.Store.Dir, pki.CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	for what, run := range map[string]func() error{
		"status": func() error { _, err := m.Status(ctx, ""); return err },
		"up":     func() error { _, err := m.Up(ctx, cluster.UpRequest{Names: []string{"blue"}}); return err },
	} {
		err := run()
		var in *usererr.InputError
		if !errors.As(err, &in) || !strings.Contains(err.Error(), "CA key") || !strings.Contains(in.Fix, "restore") {
			t.Errorf("%s without ca.key: %v, want an input error naming it with a fix", what, err)
		}
	}
	if _, err := os.Stat(filepath.Join(m.Store.Dir, pki.CAKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("a new CA key was made for an existing cluster")
	}
}

// Render of a cluster without a CA uses a throw-away one and makes none.
func TestRenderMakesNoCA(t *testing.T) {
	p := fake.New()
	m, _ := newManager(t, p, "")
	out := t.TempDir()
	r, err := m.Render(context.Background(), "", "red", out)
	if err != nil {
		t.Fatal(err)
	}
	if !r.NewKey {
		t.Error("render did not say that the key and CA are throw-away")
	}
	data, err := os.ReadFile(filepath.Join(out, "user-data"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := agentConfigFrom(data)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.API.Enabled() || cfg.API.Port != m.Cfg.API.Port {
		t.Errorf("rendered api section %+v, want one on port %d", cfg.API.Port, m.Cfg.API.Port)
	}
	if _, err := os.Stat(m.Store.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Error("render made the cluster's state directory")
	}
}

// key rotate: every member takes the new key, none drops out, the state
// holds only the new key (which new nodes get), and an agent holding only
// the old key cannot join.
func TestKeyRotate(t *testing.T) {
	p, b := bootingFake(t)
	m, _ := newManager(t, p, "")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red", "blue"}}); err != nil {
		t.Fatal(err)
	}
	old, _ := m.Store.ReadKey()
	r, err := m.RotateKey(ctx, false)
	if err != nil {
		t.Fatalf("key rotate: %v", err)
	}
	if !r.Removed || r.Members != 2 || len(r.Unreached) != 0 {
		t.Errorf("rotation %+v: want 2 members, old key removed, nobody unreached", r)
	}
	keys, err := m.Store.ReadKeys()
	if err != nil || len(keys) != 1 || slices.Equal(keys[0], old) {
		t.Fatalf("state keys after rotation: %d keys (err %v), want only a new one", len(keys), err)
	}
	rep, err := m.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range rep.Nodes {
		if n.Gossip != cluster.GossipAlive {
			t.Errorf("after rotation %s is %s, want alive", n.Name, n.Gossip)
		}
	}

	// A new node gets the new key and joins.
	if _, err := m.Up(ctx, cluster.UpRequest{Names: []string{"green"}}); err != nil {
		t.Fatalf("up after rotation: %v", err)
	}

	// An agent with only the old key, seeded with red, stays alone.
	stale := runStranger(t, ctx, m, b, "stale", "127.77.0.99", old)
	time.Sleep(3 * time.Second)
	if got := stale.Members(); len(got) != 1 {
		t.Errorf("the agent with the old key sees %d members, want itself only", len(got))
	}
	data, _ := os.ReadFile(b.hosts["red"])
	if strings.Contains(string(data), "stale") {
		t.Error("red lists the agent that holds only the old key")
	}

	// A member with the current key and an identity, that the state does
	// not know, stops the rotation before anything changes; --evict cuts
	// it off.
	current, _ := m.Store.ReadKeys()
	extra := runStranger(t, ctx, m, b, "extra", "127.77.0.98", current[0])
	testkit.WaitFor(t, "extra sees red", waitLimit, func() bool {
		for _, mem := range extra.Members() {
			if mem.Name == "red" && mem.Status == "alive" {
				return true
			}
		}
		return false
	})
	r, err = m.RotateKey(ctx, false)
	if err == nil || len(r.Unknown) != 1 || r.Unknown[0].Name != "extra" || !strings.Contains(err.Error(), "extra at 127.77.0.98") {
		t.Fatalf("rotation with an unknown member: %+v, %v; want it refused, naming extra and its address", r, err)
	}
	if keys, _ := m.Store.ReadKeys(); len(keys) != 1 || !slices.Equal(keys[0], current[0]) {
		t.Fatal("a refused rotation changed the state's keys")
	}
	r, err = m.RotateKey(ctx, true)
	if err != nil || len(r.Unknown) != 1 || !r.Removed {
		t.Fatalf("rotation with --evict: %+v, %v", r, err)
	}
	testkit.WaitFor(t, "extra cut off", waitLimit, func() bool {
		for _, mem := range extra.Members() {
			if mem.Name == "red" && mem.Status == "alive" {
				return false
			}
		}
		return true
	})
}

// runStranger runs an agent with a valid identity from the cluster's CA
// that the state does not know, holding the gossip key key, seeded with
// red, at addr.
func runStranger(t *testing.T, ctx context.Context, m *cluster.Manager, b *booter, name, addr string, key []byte) *agent.Agent {
	t.Helper()
	ca, err := pki.Load(m.Store.Dir, m.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := m.Store.Load()
	cfg := b.configs["red"]
	cfg.Name, cfg.Nonce, cfg.Key = name, "00000000000000000000000000000000", key
	cfg.AdvertiseAddr, cfg.AdvertiseCIDR, cfg.BindAddr = addr, "", addr
	cfg.Seeds = []string{st.Node("red").Address + ":" + itoa(m.Cfg.Gossip.Port)}
	cfg.HostsFile, cfg.API, cfg.StateDir, cfg.Enrol = "", agentconfig.APIConfig{}, "", nil
	if cfg.Identity, err = agentconfig.NewIdentity(ca, name, cfg.Nonce); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	t.Cleanup(func() { stop(); <-done })
	return a
}

func itoa(n int) string { return strconv.Itoa(n) }

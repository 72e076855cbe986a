package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/clusterctl/clusterctl/provider/fake"
)

// The planner on its own: it renders every node with the agent's URL and
// SHA-256 and makes nothing, neither at the provider (AgentURL only, no
// upload, no create) nor on disk; re-rendering with another key (as record
// does when a concurrent up made the key) changes every seed.
func TestPlannerMakesNothing(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "clusterctl-agent")
	if err := os.WriteFile(bin, []byte("agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Cluster: "plan", Gossip: GossipConfig{Port: 7946}, API: APIConfig{Port: 7947}, Agent: AgentConfig{Binary: bin}}
	cfg.applyDefaults()
	m, err := NewManager(cfg, filepath.Join(dir, "home"), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := fake.NewCloud()
	st, _ := m.Store.Load()
	pl := newPlanner(m, c, false)
	if err := pl.plan(context.Background(), st, UpRequest{Count: 2}); err != nil {
		t.Fatal(err)
	}
	if calls := c.Fake().CallLog(); !slices.Equal(calls, []string{"Preflight", "NodeCIDR", "AgentURL plan"}) {
		t.Errorf("provider calls %v, want Preflight, NodeCIDR, AgentURL", calls)
	}
	if _, err := os.Stat(m.Store.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("planning created the cluster directory")
	}
	if !pl.agent.upload || c.Uploaded("plan") != "" {
		t.Errorf("upload planned %v, uploaded %q: want planned, not done", pl.agent.upload, c.Uploaded("plan"))
	}
	if want, _ := fileSHA256(bin); pl.agent.src.SHA256 != want {
		t.Errorf("agent SHA-256 %q, want %q", pl.agent.src.SHA256, want)
	}
	before := map[string][]byte{}
	for _, n := range pl.nodes {
		ud := n.spec.Seed.UserData
		if !bytes.Contains(ud, []byte(pl.agent.src.URL)) || !bytes.Contains(ud, []byte(pl.agent.src.SHA256)) {
			t.Errorf("user-data of %s lacks the agent's URL or SHA-256", n.node.Name)
		}
		before[n.node.Name] = ud
	}
	// The gossip key is not in user-data: the node gets it when it enrols.
	pl.key = bytes.Repeat([]byte{7}, 32)
	if err := pl.render(st); err != nil {
		t.Fatal(err)
	}
	for _, n := range pl.nodes {
		if !bytes.Equal(before[n.node.Name], n.spec.Seed.UserData) || bytes.Contains(n.spec.Seed.UserData, []byte(base64.StdEncoding.EncodeToString(pl.key))) {
			t.Errorf("user-data of %s changed with the gossip key, or holds it", n.node.Name)
		}
	}
}

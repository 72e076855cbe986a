package cluster_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/fake"
)

// inFlightFake is the fake provider with provider.InFlightFinder: it
// records whom down asked about and answers found (by node name) or fail.
type inFlightFake struct {
	*fake.Provider
	mu    sync.Mutex
	asked []string
	found map[string][]provider.Instance
	fail  map[string]error
}

func (p *inFlightFake) FindInFlight(_ context.Context, name, nonce string) ([]provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked = append(p.asked, name+"/"+nonce)
	return p.found[name], p.fail[name]
}

// TestDownAsksAboutSentCreates: down asks the provider what a create made
// for each node without an instance id whose create was sent (a create
// that failed without an id, a state left while creating), and not for a
// node the provider was never asked to make. A create it cannot settle
// fails down, naming the node, which stays in state.
func TestDownAsksAboutSentCreates(t *testing.T) {
	p := &inFlightFake{Provider: fake.New(), found: map[string][]provider.Instance{}, fail: map[string]error{}}
	p.FailCreate = errors.New("connection reset")
	m, _ := newManagerIn(t, t.TempDir(), p, "")
	ctx := context.Background()
	if _, err := m.Up(ctx, cluster.UpRequest{Names: []string{"sent"}}); err == nil {
		t.Fatal("up with a failing create succeeded")
	}
	// The machine the failed create made after all, which no listing shows.
	p.FailCreate = nil
	made, err := p.Provider.Create(ctx, provider.NodeSpec{Cluster: "other", Name: "sent"})
	if err != nil {
		t.Fatal(err)
	}
	p.found["sent"] = []provider.Instance{made}
	err = m.Store.Update(func(st *cluster.State) error {
		if n := st.Node("sent"); n == nil || n.InstanceID != "" || !n.CreateSent {
			t.Errorf("after a failed create the state has %+v, want no id and the create sent", n)
		}
		now := time.Now().UTC()
		st.Nodes = append(st.Nodes,
			cluster.Node{Name: "recorded", Nonce: "n1", Provider: "fake", Phase: cluster.PhaseRecorded, CreatedAt: now},
			cluster.Node{Name: "killed", Nonce: "n2", Provider: "fake", Phase: cluster.PhaseCreating, CreatedAt: now}, // written before create_sent existed
			cluster.Node{Name: "stuck", Nonce: "n3", Provider: "fake", Phase: cluster.PhaseFailed, CreateSent: true, CreatedAt: now})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p.fail["stuck"] = errors.New("ec2: look for node \"stuck\": throttled")

	_, err = m.Down(ctx, cluster.DownRequest{All: true})
	if err == nil || !strings.Contains(err.Error(), `node "stuck"`) || !strings.Contains(err.Error(), "cannot settle") {
		t.Fatalf("down --all: %v, want a failure naming node stuck", err)
	}
	var names []string
	for _, a := range p.asked {
		names = append(names, strings.SplitN(a, "/", 2)[0])
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"killed", "sent", "stuck"}) {
		t.Errorf("down asked about %v, want killed, sent and stuck (not recorded)", p.asked)
	}
	if st, _ := p.Provider.Status(ctx, made.ID); st.State != provider.StateNotFound {
		t.Errorf("the machine the failed create made is %s after down", st.State)
	}
	st, err := m.Store.Load()
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, n := range st.Nodes {
		left = append(left, n.Name)
	}
	if !slices.Equal(left, []string{"stuck"}) {
		t.Errorf("nodes in state after down: %v, want only stuck (not settled)", left)
	}
}

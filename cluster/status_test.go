package cluster_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/internal/testkit"
)

// A gossip member that the state does not know (here an agent started by
// hand with the cluster's key) is a row of phase unknown with its address;
// status never hides it. The recorded nodes stay alive, and the report
// names the node whose view it shows.
func TestStatusShowsUnknownMembers(t *testing.T) {
	ctx, m, b := upFake(t, "red", "blue")
	key, _ := m.Store.ReadKey()
	runStranger(t, ctx, m, b, "visitor", "127.77.0.98", key)

	var (
		rep cluster.StatusReport
		err error
	)
	testkit.WaitFor(t, "status to show the visitor", waitLimit, func() bool {
		rep, err = m.Status(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		return len(rep.Nodes) == 3
	})
	for _, n := range rep.Nodes {
		switch n.Name {
		case "visitor":
			if n.Phase != cluster.PhaseUnknown || n.Address != "127.77.0.98" || n.Gossip != cluster.GossipAlive || n.Stray {
				t.Errorf("visitor row %+v: want phase unknown, its address, alive", n)
			}
		case "red", "blue":
			if n.Phase != cluster.PhaseJoined || n.Gossip != cluster.GossipAlive {
				t.Errorf("row %+v: want joined and alive", n)
			}
		default:
			t.Errorf("unexpected row %+v", n)
		}
	}
	if len(rep.Views) == 0 || (rep.Views[0] != "red" && rep.Views[0] != "blue") {
		t.Errorf("views %v: want the node whose view is shown first", rep.Views)
	}
}

// Read-your-writes: red's view has not heard of green yet (its API hides
// green, as a serf that missed the join). Whenever status happens to show
// red's view first, it asks green itself and a second member, and shows
// green alive, as up did; never not-seen.
func TestStatusLaggingFollowedNode(t *testing.T) {
	p, b := bootingFake(t)
	m, _ := newManager(t, p, "")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red", "blue", "green"}}); err != nil {
		t.Fatal(err)
	}
	b.lag("red", "green")
	// The first node asked is random: ask until red's view came first
	// (the chance that 40 tries never start at red is (2/3)^40).
	sawRedFirst := false
	for i := 0; i < 40 && !sawRedFirst; i++ {
		rep, err := m.Status(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Views) == 0 {
			t.Fatal("status reached no node")
		}
		sawRedFirst = rep.Views[0] == "red"
		for _, n := range rep.Nodes {
			if n.Gossip != cluster.GossipAlive || n.Phase != cluster.PhaseJoined {
				t.Errorf("status with the views of %v: %+v, want joined and alive", rep.Views, n)
			}
		}
		if sawRedFirst && (len(rep.Views) < 2 || !slices.Contains(rep.Views, "green")) {
			t.Errorf("red's view first, views %v: want green's own view merged", rep.Views)
		}
	}
	if !sawRedFirst {
		t.Fatal("status never showed red's view first")
	}
}

// TestStatusLeavesTheStateAlone: status on a settled cluster reaches its
// nodes (each dial checks the node's certificate against the state) but
// writes nothing: the dials a status drops once it has its answer go on
// after it has returned, and must not be writing the state then.
func TestStatusLeavesTheStateAlone(t *testing.T) {
	ctx, m, _ := upFake(t, "red", "blue")
	path := filepath.Join(m.Store.Dir, "state.json")
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := m.Status(ctx, ""); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // the dropped dials' handshakes
	if after, err := os.Stat(path); err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("state.json written by status: modified %v, was %v (%v)", after.ModTime(), before.ModTime(), err)
	}
}

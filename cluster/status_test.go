package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/agent"
	"github.com/clusterctl/clusterctl/cluster"
)

// A gossip member that the state does not know (here an agent started by
// hand with the cluster's key) is a row of phase unknown with its address;
// status never hides it. The recorded nodes stay alive, and the report
// names the node whose view it shows.
func TestStatusShowsUnknownMembers(t *testing.T) {
	p, b := bootingFake(t)
	m, _ := newManager(t, p, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red", "blue"}}); err != nil {
		t.Fatal(err)
	}
	st, _ := m.Store.Load()
	cfg := b.configs["red"]
	cfg.Name, cfg.Nonce = "visitor", "11111111111111111111111111111111"
	cfg.AdvertiseAddr, cfg.BindAddr = "127.77.0.98", "127.77.0.98"
	cfg.Seeds = []string{st.Node("red").Address + ":" + itoa(m.Cfg.Gossip.Port)}
	cfg.HostsFile, cfg.API = "", agent.APIConfig{}
	a, err := agent.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	defer func() { stop(); <-done }()

	var rep cluster.StatusReport
	waitFor(t, ctx, func() bool {
		rep, err = m.Status(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		return len(rep.Nodes) == 3
	}, "status to show the visitor")
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

package cluster

import (
	"context"
	"encoding/base64"
	"sync"
	"time"

	"github.com/clusterctl/clusterctl/agent"
	"github.com/clusterctl/clusterctl/provider"
)

// errNoObserverAddr says that the nodes could not reach the CLI.
func errNoObserverAddr(prov string) error {
	return provider.BadInput("set gossip.observer in the config to an address of this machine that the nodes can reach on the gossip port (see README: networking)",
		"provider %q does not put this machine on the nodes' network, and gossip.observer is not set", prov)
}

func encodeKey(key []byte) string { return base64.StdEncoding.EncodeToString(key) + "\n" }

// joinInterval is how often the observer retries nodes it has not reached.
const joinInterval = 2 * time.Second

// observer starts the short-lived gossip member the CLI watches through. It
// listens on all of this machine's addresses and advertises the host's
// address on the cluster network (providers where clusterctl chose the
// network) or gossip.observer, which the nodes can reach. Binding to all
// addresses matters where the host's interface appears only once a VM uses
// it (VirtualBox 7 host-only networks on macOS).
func (m *Manager) observer(ctx context.Context, p provider.Provider, key []byte) (*agent.Observer, error) {
	cfg := agent.ObserverConfig{Cluster: m.Cluster, Key: key, BindAddr: "0.0.0.0", Logger: m.Log}
	if ac, ok := p.(provider.AddressChooser); ok {
		_, host, err := ac.ClusterNetwork(ctx)
		if err != nil {
			return nil, err
		}
		cfg.AdvertiseAddr = host.String()
	} else if a := m.Cfg.Gossip.Observer; a != "" {
		cfg.AdvertiseAddr = a
	} else {
		return nil, errNoObserverAddr(p.Name())
	}
	obs, err := agent.NewObserver(ctx, cfg)
	if err != nil {
		return nil, provider.WithHint(err, "the observer must listen on the host's cluster-network address; check that the bridge or host-only network is up")
	}
	return obs, nil
}

// keepJoining makes the observer join, every joinInterval, the recorded
// nodes it does not yet see alive, until the returned stop is called.
func (m *Manager) keepJoining(ctx context.Context, obs *agent.Observer, p provider.Provider) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(joinInterval)
		defer t.Stop()
		for {
			m.joinUnseen(ctx, obs)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// joinParallel bounds the observer's concurrent joins.
const joinParallel = 8

// joinUnseen makes the observer join, each on its own, the recorded nodes
// with an address that it does not see alive. The observer is the
// introducer: nodes created in one batch on a cloud have no seeds (their
// addresses were unknown when their user-data was rendered), so each starts
// alone, and the observer's join of each merges them into one membership
// (a join's state exchange gives the node every member the observer knows).
// Machines still booting refuse or time out; the next tick tries again.
func (m *Manager) joinUnseen(ctx context.Context, obs *agent.Observer) {
	st, err := m.Store.Load()
	if err != nil {
		return
	}
	alive := map[string]bool{}
	for _, mem := range obs.Members() {
		if mem.State == agent.StateAlive {
			alive[mem.Meta.Nonce] = true
		}
	}
	sem := make(chan struct{}, joinParallel)
	var wg sync.WaitGroup
	for _, n := range st.Nodes {
		if n.Address == "" || alive[n.Nonce] || n.Phase == PhaseRecorded || n.Phase == PhaseCreating {
			continue
		}
		addr := gossipAddr(n.Address, m.Cfg.Gossip.Port)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			jctx, cancel := context.WithTimeout(ctx, joinInterval)
			defer cancel()
			_, _ = obs.Join(jctx, []string{addr}) // failures are expected while nodes boot
		}()
	}
	wg.Wait()
}

// joinSome joins the observer through any of addrs (the observer tries
// them in small random batches; one answering member brings the whole
// membership). It returns whether the observer reached a member.
func joinSome(ctx context.Context, obs *agent.Observer, addrs []string) bool {
	n, err := obs.Join(ctx, addrs)
	return err == nil && n > 0
}

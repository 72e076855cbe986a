package cluster

import (
	"cmp"
	"context"
	"sort"
	"time"

	"github.com/clusterctl/clusterctl/agent"
	"github.com/clusterctl/clusterctl/provider"
)

// NodeStatus is one row of `clusterctl status`.
type NodeStatus struct {
	Name          string      `json:"name"`
	Provider      string      `json:"provider"`
	InstanceID    string      `json:"instance_id,omitempty"`
	Address       string      `json:"address,omitempty"`
	Phase         Phase       `json:"phase"`
	ProviderState string      `json:"provider_state"`
	Gossip        GossipState `json:"gossip"`
	Hostname      string      `json:"hostname,omitempty"`
	Error         string      `json:"error,omitempty"`
	// Detail is the provider's note on the machine (a fault message, a
	// floating IP).
	Detail string `json:"detail,omitempty"`
	// Stray is true for a machine the provider lists for this cluster that
	// clusterctl's state does not know.
	Stray bool `json:"stray,omitempty"`
}

// StatusReport is the whole of `clusterctl status`.
type StatusReport struct {
	Cluster  string       `json:"cluster"`
	Provider string       `json:"provider,omitempty"`
	Nodes    []NodeStatus `json:"nodes"`
}

// Status merges the state, each provider's view and the gossip view.
// provName is the provider to list the cluster's machines at when the
// state names none (no state file): "" = the config's. Machines a provider
// lists for the cluster that the state does not know are strays.
func (m *Manager) Status(ctx context.Context, provName string) (StatusReport, error) {
	st, err := m.Store.Load()
	if err != nil {
		return StatusReport{}, err
	}
	rep := StatusReport{Cluster: m.Cluster, Provider: st.Provider, Nodes: []NodeStatus{}}
	provs := map[string]provider.Provider{}
	getProv := func(name string) provider.Provider {
		if p, ok := provs[name]; ok {
			return p
		}
		p, err := m.provider(name)
		if err != nil {
			m.Report.Note("", "provider "+name+": "+err.Error())
		}
		provs[name] = p
		return p
	}
	if st.Provider == "" {
		name := cmp.Or(provName, m.Cfg.Provider)
		if name == "" {
			return rep, nil
		}
		if provName != "" {
			if _, err := m.provider(name); err != nil {
				return rep, err
			}
		}
		rep.Provider = name
		getProv(name)
	} else if provName != "" {
		getProv(provName)
	}
	for _, name := range st.Cleanup {
		getProv(name)
	}

	var gossip []agent.Member
	var reached bool
	if st.Provider != "" {
		gossip, reached = m.gossipView(ctx, getProv(st.Provider), st.Nodes)
	}
	known := map[string]bool{}
	for _, n := range st.Nodes {
		ns := NodeStatus{Name: n.Name, Provider: n.Provider, InstanceID: n.InstanceID, Address: n.Address, Phase: n.Phase, Error: n.Error, ProviderState: string(provider.StateUnknown)}
		if p := getProv(n.Provider); p != nil && n.InstanceID != "" {
			known[n.InstanceID] = true
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			inst, err := p.Status(sctx, n.InstanceID)
			cancel()
			if err != nil {
				ns.ProviderState = "error: " + err.Error()
			} else {
				ns.ProviderState = string(inst.State)
				ns.Detail = inst.Detail
			}
		} else if n.InstanceID == "" {
			ns.ProviderState = string(provider.StateNotFound)
		}
		ns.Gossip, ns.Hostname = gossipState(n, gossip, reached)
		rep.Nodes = append(rep.Nodes, ns)
	}
	for name, p := range provs {
		if p == nil {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		list, err := p.List(lctx, m.Cluster)
		cancel()
		if err != nil {
			m.Report.Note("", "list "+name+": "+err.Error())
			continue
		}
		for _, in := range list {
			if known[in.ID] || in.State == provider.StateTerminated {
				continue
			}
			if st.Node(in.Name) != nil && st.Node(in.Name).InstanceID == "" {
				continue // create was interrupted; the row above shows it
			}
			rep.Nodes = append(rep.Nodes, NodeStatus{Name: in.Name, Provider: name, InstanceID: in.ID, Address: in.Address, Phase: PhaseStray, ProviderState: string(in.State), Gossip: GossipUnknown, Detail: in.Detail, Stray: true})
		}
	}
	sort.SliceStable(rep.Nodes, func(i, j int) bool { return rep.Nodes[i].Name < rep.Nodes[j].Name })
	return rep, nil
}

// gossipView joins a short-lived observer to the recorded nodes and
// returns the members it sees, and whether any node could be reached.
func (m *Manager) gossipView(ctx context.Context, p provider.Provider, nodes []Node) ([]agent.Member, bool) {
	if p == nil {
		return nil, false
	}
	key, err := m.Store.ReadKey()
	if err != nil {
		return nil, false
	}
	var addrs []string
	for _, n := range nodes {
		if n.Address != "" {
			addrs = append(addrs, gossipAddr(n.Address, m.Cfg.Gossip.Port))
		}
	}
	if len(addrs) == 0 {
		return nil, false
	}
	obs, err := m.observer(ctx, p, key)
	if err != nil {
		m.Report.Note("", "gossip view unavailable: "+err.Error())
		return nil, false
	}
	defer obs.Close()
	jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if !joinSome(jctx, obs, addrs) {
		return nil, false
	}
	return obs.Members(), true
}

func gossipState(n Node, members []agent.Member, reached bool) (state GossipState, hostname string) {
	sameName := false
	for _, mem := range members {
		if mem.Meta.Nonce == n.Nonce {
			return GossipState(mem.State), mem.Meta.Hostname
		}
		if mem.Name == n.Name {
			sameName = true
		}
	}
	switch {
	case sameName:
		return GossipStale, ""
	case !reached:
		return GossipUnknown, ""
	case n.JoinedAt.IsZero():
		return GossipNeverJoined, ""
	default:
		return GossipGone, ""
	}
}

package cluster

import (
	"cmp"
	"context"
	"sort"
	"time"

	"github.com/clusterctl/clusterctl/agent"
	"github.com/clusterctl/clusterctl/internal/pki"
	"github.com/clusterctl/clusterctl/nodeapi"
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

	var gossip []nodeapi.Member
	var reached bool
	if len(m.endpoints(nil)()) > 0 {
		// An existing cluster's CA must be there: its error (exit 2,
		// naming the file) beats a view with every node unreachable.
		creds, err := m.credentials()
		if err != nil {
			return rep, err
		}
		gossip, reached = m.gossipView(ctx, creds)
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
	m.noteFailures(gossipOf(rep.Nodes)) // for repair's --failed-for
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

// statusConnectTimeout bounds status's wait for any node's API: when no
// node answers, status shows them unreachable after this long.
const statusConnectTimeout = 2 * time.Second

// gossipView asks the first node API that answers for its view of the
// members, and reports whether any node answered. It waits at most one
// connect timeout when none does.
func (m *Manager) gossipView(ctx context.Context, creds pki.Credentials) ([]nodeapi.Member, bool) {
	c, err := m.client(creds, nil)
	if err != nil {
		m.Report.Note("", "gossip view unavailable: "+err.Error())
		return nil, false
	}
	c.ConnectTimeout = statusConnectTimeout
	snap, err := c.Members(ctx)
	if err != nil {
		m.Log.Debug("gossip view", "err", err)
		return nil, false
	}
	return snap.Members, true
}

// gossipState is node n's state in the members' view: the library's own
// member state for its nonce, else what the view's silence means.
func gossipState(n Node, members []nodeapi.Member, reached bool) (state GossipState, hostname string) {
	sameName := false
	for _, mem := range members {
		if mem.Name == n.Name && mem.Tags[nodeapi.TagNonce] == n.Nonce {
			return GossipState(mem.Status), mem.Tags[agent.TagHostname]
		}
		if mem.Name == n.Name {
			sameName = true
		}
	}
	switch {
	case !reached:
		return GossipUnreachable, ""
	case sameName:
		return GossipStale, ""
	case n.JoinedAt.IsZero():
		return GossipNeverJoined, ""
	default:
		return GossipGone, ""
	}
}

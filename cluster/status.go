package cluster

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
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
	// Role and Tags are the node's application role and user tags (apps.go).
	Role  string            `json:"role,omitempty"`
	Tags  map[string]string `json:"tags,omitempty"`
	Error string            `json:"error,omitempty"`
	// Detail is the provider's note on the machine (a fault message, a
	// floating IP).
	Detail string `json:"detail,omitempty"`
	// Stray is true for a machine the provider lists for this cluster that
	// clusterctl's state does not know.
	Stray bool `json:"stray,omitempty"`
	// CertExpires is when the node's API certificate expires (it is
	// renewed by any command that reaches the node after two thirds of
	// its life).
	CertExpires time.Time `json:"cert_expires,omitzero"`
}

// certWarning is how long before its certificate expires status warns
// about a node.
const certWarning = 30 * 24 * time.Hour

// StatusReport is the whole of `clusterctl status`.
type StatusReport struct {
	Cluster  string `json:"cluster"`
	Provider string `json:"provider,omitempty"`
	// Views are the nodes whose gossip views the GOSSIP column shows: the
	// first node that answered, then those asked about the nodes it did
	// not report (merged; see mergeViews). Empty: no node answered.
	Views []string     `json:"views,omitempty"`
	Nodes []NodeStatus `json:"nodes"`
}

// Status merges the state, each provider's view and the gossip view.
// provName is the provider to list the cluster's machines at when the
// state names none (no state file): "" = the config's. Machines a provider
// lists for the cluster that the state does not know are strays; gossip
// members that neither the state nor a stray accounts for are rows of
// phase unknown, with their gossip address (not those that left).
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

	var views []nodeapi.Snapshot
	var reached bool
	if len(m.endpoints(nil)()) > 0 {
		// An existing cluster's CA must be there: its error (exit 2,
		// naming the file) beats a view with every node unreachable.
		creds, err := m.credentials()
		if err != nil {
			return rep, err
		}
		views, reached = m.gossipViews(ctx, creds, st.Nodes)
	}
	for _, v := range views {
		rep.Views = append(rep.Views, v.Node)
	}
	merged := mergeViews(views)
	claimed := map[string]bool{} // member keys a row shows
	known := map[string]bool{}
	for _, n := range st.Nodes {
		ns := NodeStatus{Name: n.Name, Provider: n.Provider, InstanceID: n.InstanceID, Address: n.Address, Phase: n.Phase, Error: n.Error, ProviderState: string(provider.StateUnknown), CertExpires: n.CertNotAfter}
		if left := n.CertNotAfter.Sub(m.now()); !n.CertNotAfter.IsZero() && left < certWarning {
			m.Report.Note(n.Name, fmt.Sprintf("its API certificate expires %s (in %d days): a clusterctl command that reaches the node renews it (clusterctl status, when the node answers); an expired one needs the node re-made (clusterctl down %s; clusterctl up %s)",
				n.CertNotAfter.UTC().Format(time.RFC3339), int(left.Hours()/24), n.Name, n.Name))
		}
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
		ns.Gossip, ns.Hostname = gossipState(n, merged, reached)
		ns.Role, ns.Tags = m.appInfo(n, merged)
		if mem, ok := merged.of(n.Name, n.Nonce); ok {
			claimed[memberKey(mem)] = true
		}
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
			ns := NodeStatus{Name: in.Name, Provider: name, InstanceID: in.ID, Address: in.Address, Phase: PhaseStray, ProviderState: string(in.State), Gossip: GossipUnknown, Detail: in.Detail, Stray: true}
			if mem, ok := merged.byInstance(in.ID); ok && !claimed[memberKey(mem)] {
				claimed[memberKey(mem)] = true
				ns.Gossip, ns.Hostname = GossipState(mem.Status), mem.Tags[agentconfig.TagHostname]
			}
			rep.Nodes = append(rep.Nodes, ns)
		}
	}
	// Members that no row shows: the state does not know them (another
	// incarnation of a name, an agent started by hand). Never hidden; only
	// a member that left gracefully is no member any more (serf keeps its
	// tombstone for timing.tombstone_timeout; down leaves one for each
	// node it removes).
	for _, mem := range merged {
		if claimed[memberKey(mem)] || mem.Status == nodeapi.StatusLeft {
			continue
		}
		rep.Nodes = append(rep.Nodes, NodeStatus{Name: mem.Name, Provider: mem.Tags[agentconfig.TagProvider], InstanceID: mem.Tags[agentconfig.TagInstanceID], Address: mem.Addr, Phase: PhaseUnknown, ProviderState: string(provider.StateUnknown), Gossip: GossipState(mem.Status), Hostname: mem.Tags[agentconfig.TagHostname]})
	}
	sort.SliceStable(rep.Nodes, func(i, j int) bool { return rep.Nodes[i].Name < rep.Nodes[j].Name })
	return rep, nil
}

// statusConnectTimeout bounds status's wait for any node's API: when no
// node answers, status shows them unreachable after this long.
const statusConnectTimeout = 2 * time.Second

// statusFanout is how many nodes status asks at once for their own view.
const statusFanout = 4

// gossipViews asks the first node API that answers for its view of the
// members, and reports whether any node answered. It waits at most one
// connect timeout when none does.
//
// Read-your-writes: one node's view may not have heard yet of a node that
// joined a moment ago (up saw it in another view). So for the
// nodes that the first view does not report (their nonce is missing), status
// also asks, statusFanout at a time and each within one connect timeout,
// the node itself at its own API address and one second member (a node
// that is neither the first nor missing). The views that answered follow
// the first one; mergeViews folds them.
func (m *Manager) gossipViews(ctx context.Context, creds pki.Credentials, nodes []Node) ([]nodeapi.Snapshot, bool) {
	ask := func(keep func(Node) bool) (nodeapi.Snapshot, error) {
		c, err := m.client(creds, keep)
		if err != nil {
			return nodeapi.Snapshot{}, err
		}
		c.ConnectTimeout = statusConnectTimeout
		return c.Members(ctx)
	}
	first, err := ask(nil)
	if err != nil {
		m.Log.Debug("gossip view", "err", err)
		return nil, false
	}
	views := []nodeapi.Snapshot{first}
	one := mergeViews(views)
	missing := map[string]bool{}
	for _, n := range nodes {
		if _, ok := one.of(n.Name, n.Nonce); !ok && len(m.apiAddrs(n)) > 0 {
			missing[n.Name] = true
		}
	}
	if len(missing) == 0 {
		return views, true
	}
	var asks []func(Node) bool
	for _, n := range nodes {
		if missing[n.Name] {
			asks = append(asks, func(o Node) bool { return o.Name == n.Name })
		}
	}
	if slices.ContainsFunc(nodes, func(n Node) bool { return n.Name != first.Node && !missing[n.Name] && len(m.apiAddrs(n)) > 0 }) {
		asks = append(asks, func(o Node) bool { return o.Name != first.Node && !missing[o.Name] })
	}
	more := make([]*nodeapi.Snapshot, len(asks))
	sem := make(chan struct{}, statusFanout)
	var wg sync.WaitGroup
	for i, keep := range asks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			snap, err := ask(keep)
			if err != nil {
				m.Log.Debug("gossip view of a node the first view does not report", "err", err)
				return
			}
			more[i] = &snap
		}()
	}
	wg.Wait()
	for _, s := range more {
		if s != nil {
			views = append(views, *s)
		}
	}
	return views, true
}

// memberView is the members of several views folded into one, in a fixed
// order.
type memberView []nodeapi.Member

// mergeViews folds views (the first node's first) into one entry per
// member (name and nonce), the read-your-writes rule: a member that some
// view counts as joined (nodeapi.View.Ready, up's rule: alive in another
// node's view, or in its own once that holds another alive member) is
// alive; any other member is as the first view that has it says. A node
// asked about itself that is alone in its own view reports nothing about
// itself (the first view's own node excepted: a cluster of one).
func mergeViews(views []nodeapi.Snapshot) memberView {
	byKey := map[string]int{}
	var out memberView
	for i, snap := range views {
		v := nodeapi.View{}
		v.Apply(nodeapi.Update{Kind: nodeapi.UpdateSnapshot, From: nodeapi.Endpoint{Name: snap.Node}, Snapshot: snap})
		ready := map[string]bool{}
		for _, mem := range v.Ready(func(string) bool { return false }) {
			ready[memberKey(mem)] = true
		}
		for _, mem := range snap.Members {
			k := memberKey(mem)
			if i > 0 && mem.Name == snap.Node && !ready[k] {
				continue // a node asked about itself, alone: no evidence
			}
			j, ok := byKey[k]
			switch {
			case !ok:
				byKey[k] = len(out)
				out = append(out, mem)
			case ready[k] && out[j].Status != nodeapi.StatusAlive:
				out[j] = mem
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return memberKey(out[i]) < memberKey(out[j]) })
	return out
}

// memberKey tells members apart: a name's incarnations differ in nonce.
func memberKey(mem nodeapi.Member) string { return mem.Name + "\x00" + mem.Tags[nodeapi.TagNonce] }

// of returns the member name with nonce: the incarnation the agents
// admitted (the cluster's CA granted that name and nonce together).
func (v memberView) of(name, nonce string) (nodeapi.Member, bool) {
	for _, mem := range v {
		if mem.Name == name && mem.Tags[nodeapi.TagNonce] == nonce {
			return mem, true
		}
	}
	return nodeapi.Member{}, false
}

// byInstance returns a member whose agent reports instance id id.
func (v memberView) byInstance(id string) (nodeapi.Member, bool) {
	for _, mem := range v {
		if id != "" && mem.Tags[agentconfig.TagInstanceID] == id {
			return mem, true
		}
	}
	return nodeapi.Member{}, false
}

// gossipState is node n's state in the members' view: the library's own
// member state for its nonce, else what the view's silence means.
func gossipState(n Node, members memberView, reached bool) (state GossipState, hostname string) {
	if mem, ok := members.of(n.Name, n.Nonce); ok {
		return GossipState(mem.Status), mem.Tags[agentconfig.TagHostname]
	}
	sameName := slices.ContainsFunc(members, func(mem nodeapi.Member) bool { return mem.Name == n.Name })
	switch {
	case !reached:
		return GossipUnreachable, ""
	case sameName:
		return GossipStale, ""
	case n.JoinedAt.IsZero():
		return GossipNeverJoined, ""
	default:
		return GossipNotSeen, ""
	}
}

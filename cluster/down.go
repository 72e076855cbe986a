package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/agent"
	"github.com/clusterctl/clusterctl/provider"
)

// Down makes each named node (every node with all) leave the gossip cluster
// gracefully, then deletes it at its provider and forgets it. A node whose
// agent cannot be reached is deleted anyway, with a note. With all, the
// cluster's directory (state, key, files) is removed once no node is left.
func (m *Manager) Down(ctx context.Context, names []string, all bool) ([]Result, error) {
	st, err := m.Store.Load()
	if err != nil {
		return nil, err
	}
	targets, err := pickTargets(st, names, all)
	if err != nil {
		return nil, err
	}
	if len(targets) == 0 {
		if all && m.Store.Exists() {
			return nil, m.destroyIfEmpty(ctx, nil)
		}
		return nil, nil
	}

	provs := map[string]provider.Provider{}
	for _, n := range targets {
		if _, ok := provs[n.Provider]; ok {
			continue
		}
		p, err := m.provider(n.Provider)
		if err != nil {
			return nil, err
		}
		provs[n.Provider] = p
	}
	for _, n := range targets {
		m.setNode(n.Name, func(x *Node) { x.Phase = PhaseLeaving })
	}

	// Only nodes that once joined can be asked to leave.
	var obs *agent.Observer
	for _, n := range targets {
		if !n.JoinedAt.IsZero() {
			obs = m.leaveObserver(ctx, provs[n.Provider], st.Nodes)
			break
		}
	}
	if obs != nil {
		defer obs.Close()
	}

	var results []Result
	var errs []error
	for _, n := range targets {
		r := m.downOne(ctx, provs[n.Provider], obs, n)
		if r.Error != "" {
			errs = append(errs, fmt.Errorf("node %q: %s", n.Name, r.Error))
		}
		results = append(results, r)
	}
	if err := errors.Join(errs...); err != nil {
		return results, provider.WithHint(err, "the node stays in state; run `clusterctl down` again once the cause is fixed")
	}
	if all {
		return results, m.destroyIfEmpty(ctx, provs)
	}
	return results, nil
}

func pickTargets(st *State, names []string, all bool) ([]Node, error) {
	if all {
		if len(names) > 0 {
			return nil, provider.BadInput("give node names or --all, not both", "--all was given with node names")
		}
		return append([]Node(nil), st.Nodes...), nil
	}
	if len(names) == 0 {
		return nil, provider.BadInput("name the nodes to remove, or pass --all", "no node named")
	}
	var out []Node
	var errs []error
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		n := st.Node(name)
		if n == nil {
			errs = append(errs, provider.BadInput("known nodes: "+knownNames(st), "no node %q in cluster %q", name, st.Cluster))
			continue
		}
		out = append(out, *n)
	}
	return out, errors.Join(errs...)
}

func knownNames(st *State) string {
	var ns []string
	for _, n := range st.Nodes {
		ns = append(ns, n.Name)
	}
	sort.Strings(ns)
	if len(ns) == 0 {
		return "(none)"
	}
	return strings.Join(ns, ", ")
}

// leaveObserver starts an observer and joins it to the cluster so it can
// ask nodes to leave. It returns nil (and notes why) if that is impossible;
// down then deletes without a graceful leave.
func (m *Manager) leaveObserver(ctx context.Context, p provider.Provider, nodes []Node) *agent.Observer {
	key, err := m.Store.ReadKey()
	if err != nil {
		m.Report.Note("", "no gossip key, nodes are deleted without a graceful leave")
		return nil
	}
	obs, err := m.observer(ctx, p, key)
	if err != nil {
		m.Report.Note("", fmt.Sprintf("cannot watch the cluster (%v); nodes are deleted without a graceful leave", err))
		return nil
	}
	var addrs []string
	for _, n := range nodes {
		if n.Address != "" {
			addrs = append(addrs, gossipAddr(n.Address, m.Cfg.Gossip.Port))
		}
	}
	jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if len(addrs) > 0 {
		if !joinSome(jctx, obs, addrs) {
			m.Report.Note("", "no node's agent answered; nodes are deleted without a graceful leave")
		}
	}
	return obs
}

func (m *Manager) downOne(ctx context.Context, p provider.Provider, obs *agent.Observer, n Node) Result {
	start := m.now()
	res := Result{Name: n.Name, Address: n.Address, InstanceID: n.InstanceID}
	finish := func(phase string, err error) Result {
		res.Phase = phase
		res.Elapsed = m.now().Sub(start)
		res.Seconds = res.Elapsed.Round(100 * time.Millisecond).Seconds()
		if err != nil {
			res.Error = err.Error()
		}
		m.Report.Phase(n.Name, phase, res.Elapsed)
		return res
	}
	m.Report.Phase(n.Name, PhaseLeaving, 0)
	if obs != nil && m.seen(obs, n.Nonce) {
		lctx, cancel := context.WithTimeout(ctx, m.Cfg.Timeouts.Leave)
		err := obs.RequestLeave(lctx, n.Name, n.Nonce)
		cancel()
		if err != nil {
			m.Report.Note(n.Name, fmt.Sprintf("did not leave gracefully within %s (%v); deleting anyway", m.Cfg.Timeouts.Leave, err))
		} else {
			m.Report.Phase(n.Name, "left", m.now().Sub(start))
		}
	} else if n.Phase == PhaseJoined || !n.JoinedAt.IsZero() {
		m.Report.Note(n.Name, "its agent is not reachable; deleting without a graceful leave")
	}

	m.Report.Phase(n.Name, "deleting", m.now().Sub(start))
	ids, err := m.instanceIDs(ctx, p, n)
	if err != nil {
		m.setNode(n.Name, func(x *Node) { x.Phase = PhaseFailed; x.Error = "delete: " + err.Error() })
		return finish(PhaseFailed, fmt.Errorf("delete: %w", err))
	}
	for _, id := range ids {
		if err := p.Delete(ctx, id); err != nil {
			m.setNode(n.Name, func(x *Node) { x.Phase = PhaseFailed; x.Error = "delete: " + err.Error() })
			return finish(PhaseFailed, fmt.Errorf("delete %q: %w", id, err))
		}
	}
	if err := os.RemoveAll(m.Store.NodeDir(n.Name)); err != nil {
		return finish(PhaseFailed, fmt.Errorf("remove node files: %w", err))
	}
	// Forgetting the node drops its pinned host key from state and from
	// the managed known_hosts file.
	if err := m.Store.Update(func(st *State) error { st.Remove(n.Name); return m.writeKnownHosts(st) }); err != nil {
		return finish(PhaseFailed, err)
	}
	return finish("deleted", nil)
}

// seen reports whether the observer sees the node with this nonce alive.
func (m *Manager) seen(obs *agent.Observer, nonce string) bool {
	for _, mem := range obs.Members() {
		if mem.Meta.Nonce == nonce && (mem.State == "alive" || mem.State == "suspect") {
			return true
		}
	}
	return false
}

// instanceIDs returns what to delete for n: its recorded instance id, or,
// when create was interrupted before the provider returned one, whatever
// the provider lists under the node's name (so nothing is orphaned).
func (m *Manager) instanceIDs(ctx context.Context, p provider.Provider, n Node) ([]string, error) {
	if n.InstanceID != "" {
		return []string{n.InstanceID}, nil
	}
	list, err := p.List(ctx, m.Cluster)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, in := range list {
		if in.Name == n.Name {
			ids = append(ids, in.ID)
		}
	}
	return ids, nil
}

// destroyIfEmpty removes the cluster-wide resources providers made (when
// they have any) and the cluster's directory, once no node is left.
func (m *Manager) destroyIfEmpty(ctx context.Context, provs map[string]provider.Provider) error {
	left, err := m.Store.Load()
	if err != nil || len(left.Nodes) > 0 {
		return err
	}
	if left.Provider != "" && provs[left.Provider] == nil {
		if p, err := m.provider(left.Provider); err == nil {
			provs = map[string]provider.Provider{left.Provider: p}
		}
	}
	var errs []error
	for name, p := range provs {
		if cc, ok := p.(provider.ClusterCleaner); ok {
			if err := cc.CleanupCluster(ctx, m.Cluster); err != nil {
				errs = append(errs, fmt.Errorf("clean up %s resources of cluster %q: %w", name, m.Cluster, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return provider.WithHint(err, "run `clusterctl down --all` again; the cluster's state is kept until this succeeds")
	}
	return m.Store.Destroy()
}

package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/clusterctl/clusterctl/agent"
	"github.com/clusterctl/clusterctl/provider"
)

// DownRequest is what `clusterctl down` asks for.
type DownRequest struct {
	Names []string
	// All removes every node, every machine the providers list for the
	// cluster (strays too), the cluster-wide resources and the state.
	All bool
	// Provider is the provider to look at when the state names none (no
	// state file): "" = the config's.
	Provider string
}

// deleteParallel bounds how many nodes are deleted at once.
const deleteParallel = createParallel

// Down makes each named node (every node with All) leave the gossip cluster
// gracefully, then deletes it at its provider and forgets it. A node whose
// agent cannot be reached is deleted anyway, with a note. Nodes are deleted
// a few at once (deleteParallel). With All, every machine the providers
// list for the cluster that the state does not know (strays) is named and
// deleted too, each provider's cluster-wide resources are cleaned (also
// when no node was ever created, or no state exists), and the cluster's
// directory (state, key, files) is removed.
func (m *Manager) Down(ctx context.Context, req DownRequest) ([]Result, error) {
	st, err := m.Store.Load()
	if err != nil {
		return nil, err
	}
	targets, err := pickTargets(st, req.Names, req.All)
	if err != nil {
		return nil, err
	}

	provs := map[string]provider.Provider{}
	for _, name := range m.providersOf(st, targets, req) {
		p, err := m.provider(name)
		if err != nil {
			if st.Provider == "" && req.Provider == "" {
				// Only the config names it, and there is no state: there
				// may well be nothing to clean.
				m.Report.Note("", fmt.Sprintf("cannot look for machines of provider %s: %v", name, err))
				continue
			}
			return nil, err
		}
		provs[name] = p
	}
	var strays []stray
	if req.All {
		if strays, err = m.strays(ctx, st, provs); err != nil {
			return nil, err
		}
		for _, s := range strays {
			m.Report.Note(s.inst.Name, fmt.Sprintf("stray machine %s of provider %s (not in clusterctl's state): deleting it", s.inst.ID, s.prov))
		}
	}
	if len(targets) == 0 && len(strays) == 0 {
		if req.All {
			return nil, m.destroyIfEmpty(ctx, provs)
		}
		return nil, nil
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

	results := make([]Result, len(targets)+len(strays))
	sem := make(chan struct{}, deleteParallel)
	var wg sync.WaitGroup
	run := func(i int, fn func() Result) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] = fn()
		}()
	}
	for i, n := range targets {
		run(i, func() Result { return m.downOne(ctx, provs[n.Provider], obs, n) })
	}
	for i, s := range strays {
		run(len(targets)+i, func() Result { return m.deleteStray(ctx, s) })
	}
	wg.Wait()

	var errs []error
	for _, r := range results {
		if r.Error != "" {
			errs = append(errs, fmt.Errorf("node %q: %s", r.Name, r.Error))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return results, provider.WithHint(err, "the node stays in state; run `clusterctl down` again once the cause is fixed")
	}
	if req.All {
		return results, m.destroyIfEmpty(ctx, provs)
	}
	return results, nil
}

// providersOf names the providers down must ask: those of the targets, and
// with All also the cluster's, those recorded for cleanup, and, when the
// state names no provider, the one asked for (else the config's).
func (m *Manager) providersOf(st *State, targets []Node, req DownRequest) []string {
	var names []string
	add := func(n string) {
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, n := range targets {
		add(n.Provider)
	}
	if req.All {
		add(st.Provider)
		for _, n := range st.Cleanup {
			add(n)
		}
		if st.Provider == "" {
			add(cmp.Or(req.Provider, m.Cfg.Provider))
		} else {
			add(req.Provider)
		}
	}
	return names
}

// stray is a machine a provider lists for the cluster that the state does
// not know.
type stray struct {
	prov string
	p    provider.Provider
	inst provider.Instance
}

// strays lists each provider's machines of the cluster and returns those
// the state does not know. A node recorded without an instance id (create
// was interrupted) is not a stray: down deletes it by name.
func (m *Manager) strays(ctx context.Context, st *State, provs map[string]provider.Provider) ([]stray, error) {
	known := map[string]bool{}
	for _, n := range st.Nodes {
		if n.InstanceID != "" {
			known[n.InstanceID] = true
		}
	}
	var out []stray
	for _, name := range slices.Sorted(maps.Keys(provs)) {
		p := provs[name]
		list, err := p.List(ctx, m.Cluster)
		if err != nil {
			return nil, fmt.Errorf("list the machines of cluster %q at %s: %w", m.Cluster, name, err)
		}
		for _, in := range list {
			if known[in.ID] || in.State == provider.StateTerminated {
				continue
			}
			if n := st.Node(in.Name); n != nil && n.InstanceID == "" && n.Provider == name {
				continue
			}
			out = append(out, stray{prov: name, p: p, inst: in})
		}
	}
	return out, nil
}

// deleteStray deletes a machine the state does not know.
func (m *Manager) deleteStray(ctx context.Context, s stray) Result {
	start := m.now()
	res := Result{Name: s.inst.Name, Address: s.inst.Address, InstanceID: s.inst.ID, Phase: PhaseDeleted}
	m.Report.Phase(s.inst.Name, PhaseDeleting, 0)
	if err := s.p.Delete(ctx, s.inst.ID); err != nil {
		res.Phase, res.Error = PhaseFailed, fmt.Sprintf("delete stray %q: %v", s.inst.ID, err)
	}
	res.Elapsed = m.now().Sub(start)
	res.Seconds = res.Elapsed.Round(100 * time.Millisecond).Seconds()
	m.Report.Phase(s.inst.Name, res.Phase, res.Elapsed)
	return res
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
	finish := func(phase Phase, err error) Result {
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
			m.Report.Phase(n.Name, PhaseLeft, m.now().Sub(start))
		}
	} else if n.Phase == PhaseJoined || !n.JoinedAt.IsZero() {
		m.Report.Note(n.Name, "its agent is not reachable; deleting without a graceful leave")
	}

	m.Report.Phase(n.Name, PhaseDeleting, m.now().Sub(start))
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
	return finish(PhaseDeleted, nil)
}

// seen reports whether the observer sees the node with this nonce alive.
func (m *Manager) seen(obs *agent.Observer, nonce string) bool {
	for _, mem := range obs.Members() {
		if mem.Meta.Nonce == nonce && GossipState(mem.State) == GossipAlive {
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

// destroyIfEmpty removes the cluster-wide resources providers made (each
// provider in provs, the cluster's, and those recorded for cleanup) and the
// cluster's directory, once no node is left.
func (m *Manager) destroyIfEmpty(ctx context.Context, provs map[string]provider.Provider) error {
	left, err := m.Store.Load()
	if err != nil || len(left.Nodes) > 0 {
		return err
	}
	all := maps.Clone(provs)
	if all == nil {
		all = map[string]provider.Provider{}
	}
	var errs []error
	for _, name := range append([]string{left.Provider}, left.Cleanup...) {
		if name == "" || all[name] != nil {
			continue
		}
		p, err := m.provider(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("clean up %s resources of cluster %q: %w", name, m.Cluster, err))
			continue
		}
		all[name] = p
	}
	for _, name := range slices.Sorted(maps.Keys(all)) {
		if cc, ok := all[name].(provider.ClusterCleaner); ok {
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

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

	"github.com/clusterctl/clusterctl/internal/pki"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/nodeapi"
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
	unlock, err := m.lockCommand(ctx, "down")
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := m.Store.Load()
	if err != nil {
		return nil, err
	}
	targets, err := pickTargets(st, req.Names, req.All, "remove")
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

	// Only nodes that once joined can be asked to leave, through the API
	// with credentials from the cluster's CA.
	var creds *pki.Credentials
	for _, n := range targets {
		if n.JoinedAt.IsZero() {
			continue
		}
		c, err := m.credentials()
		if err != nil {
			m.Report.Note("", fmt.Sprintf("cannot reach the nodes' API (%v); nodes are deleted without a graceful leave", err))
		} else {
			creds = &c
		}
		break
	}
	leaving := map[string]bool{}
	for _, n := range targets {
		leaving[n.Name] = true
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
		run(i, func() Result { return m.downOne(ctx, provs[n.Provider], creds, leaving, n) })
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
		return results, usererr.WithHint(err, "the node stays in state; run `clusterctl down` again once the cause is fixed")
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

// pickTargets returns the nodes named (each once), or every node with all;
// verb says what the command does to them, for the fix of a bad request.
func pickTargets(st *State, names []string, all bool, verb string) ([]Node, error) {
	if all {
		if len(names) > 0 {
			return nil, usererr.BadInput("give node names or --all, not both", "--all was given with node names")
		}
		return append([]Node(nil), st.Nodes...), nil
	}
	if len(names) == 0 {
		return nil, usererr.BadInput("name the nodes to "+verb+", or pass --all", "no node named")
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
			errs = append(errs, usererr.BadInput("known nodes: "+knownNames(st), "no node %q in cluster %q", name, st.Cluster))
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

// leave asks node n's agent, through its API, to leave the gossip cluster
// and waits until another member that is not leaving too sees it left (or
// only for its own acknowledgement when there is none).
func (m *Manager) leave(ctx context.Context, creds pki.Credentials, leaving map[string]bool, n Node) error {
	c, err := m.client(creds, func(x Node) bool { return x.Name == n.Name || !leaving[x.Name] })
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, m.Cfg.Timeouts.Leave)
	defer cancel()
	return c.RequestLeave(lctx, n.Name, n.Nonce)
}

func (m *Manager) downOne(ctx context.Context, p provider.Provider, creds *pki.Credentials, leaving map[string]bool, n Node) Result {
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
	switch {
	case n.JoinedAt.IsZero():
		// It never joined: there is nobody to ask.
	case n.Phase == PhaseStopped:
		m.Report.Note(n.Name, "it is stopped, so its agent cannot answer a leave; deleting without a graceful leave")
	case creds == nil || len(m.apiAddrs(n)) == 0:
		m.Report.Note(n.Name, "its agent is not reachable; deleting without a graceful leave")
	default:
		err := m.leave(ctx, *creds, leaving, n)
		switch {
		case err == nil:
			m.Report.Phase(n.Name, PhaseLeft, m.now().Sub(start))
		case errors.Is(err, nodeapi.ErrLeaveUnconfirmed):
			m.Report.Note(n.Name, "it acknowledged its leave; no other node could confirm it")
			m.Report.Phase(n.Name, PhaseLeft, m.now().Sub(start))
		case unreachable(err):
			m.Report.Note(n.Name, fmt.Sprintf("its agent is not reachable (%v); deleting without a graceful leave", err))
		default:
			m.Report.Note(n.Name, fmt.Sprintf("did not leave gracefully within %s (%v); deleting anyway", m.Cfg.Timeouts.Leave, err))
		}
	}

	m.Report.Phase(n.Name, PhaseDeleting, m.now().Sub(start))
	if err := m.forget(ctx, p, n); err != nil {
		m.setNode(n.Name, func(x *Node) { x.Phase = PhaseFailed; x.Error = err.Error() })
		return finish(PhaseFailed, err)
	}
	return finish(PhaseDeleted, nil)
}

// forget deletes node n's machine at its provider (by id, or by name and
// in-flight create: see instanceIDs), its files, and the node in state,
// which drops its pinned host key from state and from the managed
// known_hosts file. down removes nodes with it, and repair before it makes
// a node again under its name.
func (m *Manager) forget(ctx context.Context, p provider.Provider, n Node) error {
	ids, err := m.instanceIDs(ctx, p, n)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	for _, id := range ids {
		if err := p.Delete(ctx, id); err != nil {
			return fmt.Errorf("delete %q: %w", id, err)
		}
	}
	if err := os.RemoveAll(m.Store.NodeDir(n.Name)); err != nil {
		return fmt.Errorf("remove node files: %w", err)
	}
	return m.Store.Update(func(st *State) error { st.Remove(n.Name); return m.writeKnownHosts(st) })
}

// instanceIDs returns what to delete for n: its recorded instance id, or,
// when create was interrupted before the provider returned one, whatever
// the provider lists under the node's name (so nothing is orphaned) and,
// when up had sent the create, what the provider finds that create made
// (provider.InFlightFinder: a request still on its way when the listing
// was taken). An error there means the node is not settled: it stays in
// state and down fails, naming it.
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
	// PhaseCreating: a state written before CreateSent was recorded.
	if f, ok := p.(provider.InFlightFinder); ok && (n.CreateSent || n.Phase == PhaseCreating) {
		found, err := f.FindInFlight(ctx, n.Name, n.Nonce)
		if err != nil {
			return nil, fmt.Errorf("cannot settle its interrupted create: %w", err)
		}
		for _, in := range found {
			if !slices.Contains(ids, in.ID) {
				ids = append(ids, in.ID)
			}
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
		if rl, ok := all[name].(provider.ResourceLister); ok {
			if lines, err := rl.ClusterResources(ctx, m.Cluster); err == nil {
				for _, l := range lines {
					m.Report.Note("", "removing "+l)
				}
			}
		}
		if cc, ok := all[name].(provider.ClusterCleaner); ok {
			if err := cc.CleanupCluster(ctx, m.Cluster); err != nil {
				errs = append(errs, fmt.Errorf("clean up %s resources of cluster %q: %w", name, m.Cluster, err))
				continue
			}
		}
		if rm, ok := all[name].(provider.Remainer); ok {
			if lines, err := rm.Remains(ctx, m.Cluster); err == nil {
				for _, l := range lines {
					m.Report.Note("", "stays: "+l)
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return usererr.WithHint(err, "run `clusterctl down --all` again; the cluster's state is kept until this succeeds")
	}
	return m.Store.Destroy()
}

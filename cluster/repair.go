package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

// DefaultFailedFor is how long gossip must have held a running node failed
// before repair replaces it (--failed-for).
const DefaultFailedFor = 5 * time.Minute

// RepairRequest is what `clusterctl repair` asks for.
type RepairRequest struct {
	Names     []string // "" = every node
	DryRun    bool
	FailedFor time.Duration
}

// RepairAction is repair's decision on one node, and why.
type RepairAction struct {
	Name          string      `json:"name"`
	Replace       bool        `json:"replace"`
	Reason        string      `json:"reason"`
	ProviderState string      `json:"provider_state"`
	Gossip        GossipState `json:"gossip"`
}

// RepairReport is the outcome of `clusterctl repair`: a decision per node
// and, unless it was a dry run, up's result for each replacement.
type RepairReport struct {
	Actions []RepairAction `json:"actions"`
	Nodes   []Result       `json:"nodes,omitempty"`
}

// Repair re-creates the named nodes (every node when none is named) that
// are gone or broken: the provider reports the machine terminated, in
// error or not found; or it runs but gossip has held the node failed for
// at least FailedFor, counted from when status or repair first saw it
// failed (Node.FailedSince, recorded by both). A stopped node is left for
// `start`; nothing is replaced while the provider says running and gossip
// says alive. Each replacement keeps the node's name and gets a new
// nonce: the old machine, if any is left, is deleted and the node
// forgotten first, then up makes the nodes again (planning, write-ahead
// record, create, wait for the join). With DryRun it only decides and
// records what it saw, and does not wait for the command lock.
func (m *Manager) Repair(ctx context.Context, req RepairRequest) (RepairReport, error) {
	var rep RepairReport
	if req.FailedFor < 0 {
		return rep, usererr.BadInput("give --failed-for a duration of 0 or more, like 5m", "--failed-for %s is negative", req.FailedFor)
	}
	if !req.DryRun {
		unlock, err := m.lockCommand(ctx, "repair")
		if err != nil {
			return rep, err
		}
		defer unlock()
	}
	st, err := m.Store.Load()
	if err != nil {
		return rep, err
	}
	targets, err := pickTargets(st, req.Names, len(req.Names) == 0, "repair")
	if err != nil || len(targets) == 0 {
		return rep, err
	}
	provs := map[string]provider.Provider{}
	for _, n := range targets {
		if provs[n.Provider] == nil {
			if provs[n.Provider], err = m.provider(n.Provider); err != nil {
				return rep, err
			}
		}
	}
	creds, err := m.credentials()
	if err != nil {
		return rep, err
	}
	views, reached := m.gossipViews(ctx, creds, st.Nodes)
	members := mergeViews(views)
	seen := map[string]GossipState{}
	for _, n := range targets {
		seen[n.Name], _ = gossipState(n, members, reached)
	}
	failedSince := m.noteFailures(seen)

	var replace []Node
	for _, n := range targets {
		a := m.decide(ctx, provs[n.Provider], n, seen[n.Name], failedSince[n.Name], req.FailedFor)
		rep.Actions = append(rep.Actions, a)
		if a.Replace {
			replace = append(replace, n)
		}
	}
	if req.DryRun || len(replace) == 0 {
		return rep, nil
	}

	var names []string
	for _, n := range replace {
		m.Report.Note(n.Name, "replacing it: deleting what is left of its machine")
		if err := m.forget(ctx, provs[n.Provider], n); err != nil {
			return rep, usererr.WithHint(fmt.Errorf("node %q: %w", n.Name, err), "run `clusterctl repair` again once the cause is fixed")
		}
		names = append(names, n.Name)
	}
	rep.Nodes, err = m.Up(ctx, UpRequest{Provider: st.Provider, Names: names})
	return rep, err
}

// decide is repair's rule for node n, whose gossip state is g and which
// gossip has held failed since since (zero: not seen failed).
func (m *Manager) decide(ctx context.Context, p provider.Provider, n Node, g GossipState, since time.Time, failedFor time.Duration) RepairAction {
	a := RepairAction{Name: n.Name, Gossip: g, ProviderState: string(provider.StateNotFound)}
	if n.InstanceID != "" {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		inst, err := p.Status(sctx, n.InstanceID)
		cancel()
		if err != nil {
			a.ProviderState = string(provider.StateUnknown)
			a.Reason = fmt.Sprintf("left alone: the provider's status failed: %v", err)
			return a
		}
		a.ProviderState = string(inst.State)
	}
	switch provider.State(a.ProviderState) {
	case provider.StateTerminated, provider.StateNotFound, provider.StateError:
		a.Replace = true
		a.Reason = fmt.Sprintf("the provider reports its machine %s", a.ProviderState)
		if n.InstanceID == "" {
			a.Reason = "no machine is recorded for it (its create was interrupted)"
		}
		return a
	case provider.StateStopped, provider.StateStopping:
		if n.Phase == PhaseStopped || n.Phase == PhaseStopping {
			a.Reason = fmt.Sprintf("left alone: its machine is %s, as `clusterctl stop` left it (start it with `clusterctl start %s`)", a.ProviderState, n.Name)
			return a
		}
		// Nobody asked clusterctl to stop it: the machine died (a QEMU
		// process killed, a host powered off); gossip decides as below.
	}
	if g != GossipFailed && g != GossipNotSeen {
		a.Reason = fmt.Sprintf("left alone: the provider says %s, gossip says %s", a.ProviderState, g)
		return a
	}
	held := m.now().Sub(since)
	if held < failedFor {
		a.Reason = fmt.Sprintf("left alone: gossip has held it %s since %s, %s of --failed-for %s", g, since.Local().Format(time.DateTime), held.Round(time.Second), failedFor)
		return a
	}
	a.Replace = true
	a.Reason = fmt.Sprintf("the provider says %s, but gossip has held it %s since %s (%s, --failed-for %s)", a.ProviderState, g, since.Local().Format(time.DateTime), held.Round(time.Second), failedFor)
	return a
}

// gossipOf returns the gossip state of each row of status by name.
func gossipOf(rows []NodeStatus) map[string]GossipState {
	out := map[string]GossipState{}
	for _, r := range rows {
		if !r.Stray {
			out[r.Name] = r.Gossip
		}
	}
	return out
}

// noteFailures records, for the nodes in seen (by name: the gossip state
// just seen), when gossip was first seen holding each failed, and clears
// it for those seen alive; it returns every known node's FailedSince. A
// node of another incarnation, unreachable or never joined changes
// nothing. The state is written only when something changed, and never
// made when there is none.
func (m *Manager) noteFailures(seen map[string]GossipState) map[string]time.Time {
	st, err := m.Store.Load()
	if err != nil || !m.Store.Exists() {
		return nil
	}
	now := m.now().UTC()
	change := func(n *Node) bool {
		switch seen[n.Name] {
		case GossipFailed, GossipNotSeen:
			if n.FailedSince.IsZero() {
				n.FailedSince = now
				return true
			}
		case GossipAlive:
			if !n.FailedSince.IsZero() {
				n.FailedSince = time.Time{}
				return true
			}
		}
		return false
	}
	dirty := false
	for i := range st.Nodes {
		n := st.Nodes[i]
		dirty = change(&n) || dirty
	}
	if dirty {
		err = m.Store.Update(func(cur *State) error {
			for i := range cur.Nodes {
				change(&cur.Nodes[i])
			}
			st = cur
			return nil
		})
		if err != nil {
			m.Log.Warn("record when nodes were first seen failed", "err", err)
		}
	}
	out := map[string]time.Time{}
	for _, n := range st.Nodes {
		out[n.Name] = n.FailedSince
	}
	return out
}

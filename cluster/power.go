package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/nodeapi"
	"github.com/clusterctl/clusterctl/provider"
)

// PowerRequest is what `clusterctl stop`, `start` and `restart` ask for.
type PowerRequest struct {
	Names []string
	All   bool // every node of the cluster (not for restart)
}

// Stop stops each named node's machine (every node's with All) at its
// provider (provider.PowerManager), keeping its disk, seed, name and nonce.
// Stopping is not leaving: no leave is asked, so the other nodes see the
// node fail and keep its /etc/hosts line, and it rejoins by itself when it
// starts. The node's phase becomes stopped. It holds the command lock.
func (m *Manager) Stop(ctx context.Context, req PowerRequest) ([]Result, error) {
	unlock, err := m.lockCommand(ctx, "stop")
	if err != nil {
		return nil, err
	}
	defer unlock()
	return m.stop(ctx, req)
}

// Start starts each named node's stopped machine (every node's with All)
// and returns when a member sees its agent alive again with the same name
// and nonce (the readiness rule of up: see watcher), or the join deadline
// passes, reporting the phases as up does. After the start it records the
// provider's current public address, which a cloud may have changed (EC2
// gives a started instance a new public IPv4), so the node's API stays
// reachable. It holds the command lock.
func (m *Manager) Start(ctx context.Context, req PowerRequest) ([]Result, error) {
	unlock, err := m.lockCommand(ctx, "start")
	if err != nil {
		return nil, err
	}
	defer unlock()
	return m.start(ctx, req)
}

// Restart stops the named nodes, then starts them (see Stop and Start),
// under one hold of the command lock.
func (m *Manager) Restart(ctx context.Context, names []string) ([]Result, error) {
	if len(names) == 0 {
		return nil, usererr.BadInput("name the nodes to restart", "no node named")
	}
	unlock, err := m.lockCommand(ctx, "restart")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if res, err := m.stop(ctx, PowerRequest{Names: names}); err != nil {
		return res, err
	}
	return m.start(ctx, PowerRequest{Names: names})
}

// powerTargets returns the nodes req names and, by provider name, the
// providers, each of which must be a PowerManager (else bad input: nothing
// is done).
func (m *Manager) powerTargets(req PowerRequest, verb string) (*State, []Node, map[string]provider.Provider, error) {
	st, err := m.Store.Load()
	if err != nil {
		return nil, nil, nil, err
	}
	targets, err := pickTargets(st, req.Names, req.All, verb)
	if err != nil {
		return nil, nil, nil, err
	}
	provs := map[string]provider.Provider{}
	for _, n := range targets {
		if provs[n.Provider] != nil {
			continue
		}
		p, err := m.provider(n.Provider)
		if err != nil {
			return nil, nil, nil, err
		}
		if _, ok := p.(provider.PowerManager); !ok {
			return nil, nil, nil, usererr.BadInput(
				"remove the node with `clusterctl down NAME` and make it again with `clusterctl up NAME` instead",
				"provider %q cannot stop and start machines", n.Provider)
		}
		provs[n.Provider] = p
	}
	return st, targets, provs, nil
}

// eachNode runs fn for every target, a few at once (createParallel), and
// returns the results in the targets' order and the failures joined.
func eachNode(targets []Node, fn func(Node) Result) ([]Result, error) {
	results := make([]Result, len(targets))
	sem := make(chan struct{}, createParallel)
	var wg sync.WaitGroup
	for i, n := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] = fn(n)
		}()
	}
	wg.Wait()
	var errs []error
	for _, r := range results {
		if r.Error != "" {
			errs = append(errs, fmt.Errorf("node %q: %s", r.Name, r.Error))
		}
	}
	return results, errors.Join(errs...)
}

func (m *Manager) stop(ctx context.Context, req PowerRequest) ([]Result, error) {
	_, targets, provs, err := m.powerTargets(req, "stop")
	if err != nil {
		return nil, err
	}
	results, err := eachNode(targets, func(n Node) Result {
		return m.stopOne(ctx, provs[n.Provider].(provider.PowerManager), n)
	})
	if err != nil {
		return results, usererr.WithHint(err, "see `clusterctl status`; run `clusterctl stop` again once the cause is fixed")
	}
	return results, nil
}

// powerRun starts the way of node n through stop or start.
func (m *Manager) powerRun(n Node) *nodeRun {
	return &nodeRun{pl: &plan{node: n}, start: m.now(), res: Result{Name: n.Name, Address: n.Address, InstanceID: n.InstanceID}}
}

// fail ends r failed in step, in state and in its result.
func (m *Manager) fail(r *nodeRun, step string, err error) {
	err = fmt.Errorf("%s: %w", step, err)
	m.setNode(r.pl.node.Name, func(x *Node) { x.Phase = PhaseFailed; x.Error = err.Error() })
	m.done(r, PhaseFailed, err)
}

// errNoMachine is the failure of a node recorded without a machine.
var errNoMachine = errors.New("no machine is recorded for it (its create was interrupted); remove it with `clusterctl down NAME`")

func (m *Manager) stopOne(ctx context.Context, pm provider.PowerManager, n Node) Result {
	r := m.powerRun(n)
	if n.InstanceID == "" {
		m.done(r, PhaseFailed, fmt.Errorf("stop: %w", errNoMachine))
		return r.res
	}
	m.setNode(n.Name, func(x *Node) { x.Phase = PhaseStopping })
	m.Report.Phase(n.Name, PhaseStopping, 0)
	sctx, cancel := context.WithTimeout(ctx, m.Cfg.Timeouts.Create)
	err := pm.Stop(sctx, n.InstanceID)
	cancel()
	if err != nil {
		m.fail(r, "stop", err)
		return r.res
	}
	m.setNode(n.Name, func(x *Node) { x.Phase = PhaseStopped; x.Error = "" })
	m.done(r, PhaseStopped, nil)
	return r.res
}

func (m *Manager) start(ctx context.Context, req PowerRequest) ([]Result, error) {
	st, targets, provs, err := m.powerTargets(req, "start")
	if err != nil {
		return nil, err
	}
	creds, err := m.credentials()
	if err != nil {
		return nil, err
	}
	client, err := m.client(creds, nil)
	if err != nil {
		return nil, err
	}
	// The only node of a cluster has nobody to be seen by: its own view
	// counts (as for the first node of up).
	alone := map[string]bool{}
	if len(st.Nodes) == 1 {
		alone[st.Nodes[0].Nonce] = true
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	w := watch(wctx, client, alone)
	results, err := eachNode(targets, func(n Node) Result {
		return m.startOne(ctx, provs[n.Provider], client, w, n)
	})
	if err != nil {
		return results, usererr.WithHint(err, "see `clusterctl status` and `clusterctl logs NAME`; run `clusterctl start` again, or replace the node with `clusterctl repair NAME`")
	}
	return results, nil
}

// startOne starts n's machine, records its addresses as the provider
// reports them now, and waits for its agent to be back (join). A machine
// the provider reports running is not started again; one that gossip still
// holds alive although it is stopped (its failure not detected yet) is
// started only once no member sees it alive, so that its old liveness is
// never taken for its return.
func (m *Manager) startOne(ctx context.Context, p provider.Provider, c *nodeapi.Client, w *watcher, n Node) Result {
	r := m.powerRun(n)
	if n.InstanceID == "" {
		m.done(r, PhaseFailed, fmt.Errorf("start: %w", errNoMachine))
		return r.res
	}
	m.setNode(n.Name, func(x *Node) { x.Phase = PhaseStarting })
	m.Report.Phase(n.Name, PhaseStarting, 0)
	sctx, cancel := context.WithTimeout(ctx, m.Cfg.Timeouts.Create)
	defer cancel()
	inst, err := p.Status(sctx, n.InstanceID)
	if err != nil {
		m.fail(r, "start", err)
		return r.res
	}
	switch inst.State {
	case provider.StateTerminated, provider.StateNotFound, provider.StateError:
		m.fail(r, "start", fmt.Errorf("the provider reports its machine %s %s; replace it with `clusterctl repair %s`", n.InstanceID, inst.State, n.Name))
		return r.res
	case provider.StateRunning:
	default:
		if err := m.waitNotAlive(ctx, c, n); err != nil {
			m.fail(r, "start", err)
			return r.res
		}
		if err := p.(provider.PowerManager).Start(sctx, n.InstanceID); err != nil {
			m.fail(r, "start", err)
			return r.res
		}
		if inst, err = p.Status(sctx, n.InstanceID); err != nil {
			inst = provider.Instance{ID: n.InstanceID}
			m.Log.Warn("status after start", "node", n.Name, "err", err)
		}
	}
	r.inst = inst
	// A cloud may have given it a new public address (or none yet: join
	// learns it); the old one is no way to its API any more.
	m.setNode(n.Name, func(x *Node) {
		x.Phase = PhaseBooting
		x.Error = ""
		x.FailedSince = time.Time{}
		x.PublicAddress = inst.PublicAddress
	})
	m.Report.Phase(n.Name, PhaseBooting, m.now().Sub(r.start))
	m.join(ctx, p, w, r)
	return r.res
}

// notAlivePoll is how often start asks whether a stopped node's failure
// has been noticed.
const notAlivePoll = 500 * time.Millisecond

// waitNotAlive returns once no member that answers sees n alive with its
// nonce (or no node answers), or fails after the leave deadline.
func (m *Manager) waitNotAlive(ctx context.Context, c *nodeapi.Client, n Node) error {
	wctx, cancel := context.WithTimeout(ctx, m.Cfg.Timeouts.Leave)
	defer cancel()
	for {
		snap, err := c.Members(wctx)
		if err != nil {
			if wctx.Err() != nil && ctx.Err() == nil {
				return fmt.Errorf("the cluster still saw it alive after %s (timeouts.leave), although its machine is not running", m.Cfg.Timeouts.Leave)
			}
			return nil // nobody answers: nobody sees it alive
		}
		alive := false
		for _, mem := range snap.Members {
			if mem.Name == n.Name && mem.Tags[nodeapi.TagNonce] == n.Nonce && mem.Status == nodeapi.StatusAlive && snap.Node != n.Name {
				alive = true
			}
		}
		if !alive {
			return nil
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("the cluster still saw it alive after %s (timeouts.leave), although its machine is not running", m.Cfg.Timeouts.Leave)
		case <-time.After(notAlivePoll):
		}
	}
}

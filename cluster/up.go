package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/clusterctl/clusterctl/agent"
	"github.com/clusterctl/clusterctl/internal/atomicfile"
	"github.com/clusterctl/clusterctl/provider"
)

// UpRequest is what `clusterctl up` asks for.
type UpRequest struct {
	Provider string   // "" = the cluster's, else the config's
	Names    []string // "" = pick Count names
	Count    int
}

// Result is the outcome for one node of up or down.
type Result struct {
	Name       string        `json:"name"`
	Address    string        `json:"address,omitempty"`
	InstanceID string        `json:"instance_id,omitempty"`
	Phase      Phase         `json:"phase"`
	Elapsed    time.Duration `json:"-"`
	Seconds    float64       `json:"elapsed_seconds"`
	Error      string        `json:"error,omitempty"`
	// ConsoleTail is the end of the console log when a phase failed.
	ConsoleTail string `json:"console_tail,omitempty"`
}

// createParallel bounds how many nodes are created at once.
const createParallel = 4

// consoleTailLines is how much of a console log a failed join shows.
const consoleTailLines = 25

// Up creates nodes and returns when each one's agent has joined the gossip
// cluster with the nonce rendered for it, or a phase deadline has passed.
func (m *Manager) Up(ctx context.Context, req UpRequest) ([]Result, error) {
	st, err := m.Store.Load()
	if err != nil {
		return nil, err
	}
	provName, err := m.chooseProvider(st, req.Provider)
	if err != nil {
		return nil, err
	}
	p, err := m.provider(provName)
	if err != nil {
		return nil, err
	}
	pl := newPlanner(m, p, false)
	if err := pl.plan(ctx, st, req); err != nil {
		return nil, err
	}

	if np, ok := p.(provider.NetworkPreparer); ok {
		if err := np.PrepareNetwork(ctx); err != nil {
			return nil, err
		}
	}

	// Write-ahead: the key, every node and the provider's cluster-wide
	// resources are recorded before the provider is asked to make any of
	// them (the agent's upload included).
	if err := m.record(provName, pl); err != nil {
		return nil, err
	}
	plans, key := pl.nodes, pl.key
	if a := pl.agent; a.upload {
		if err := a.pub.UploadAgent(ctx, m.Cluster, a.binary, a.src.SHA256); err != nil {
			err = fmt.Errorf("upload the agent binary: %w", err)
			m.failAll(plans, "upload", err)
			names := make([]string, len(plans))
			for i, pl := range plans {
				names[i] = pl.node.Name
			}
			return nil, provider.WithHint(err, "the nodes stay in state as failed: remove them with `clusterctl down "+strings.Join(names, " ")+"`, then run up again")
		}
	}

	obs, err := m.observer(ctx, p, key)
	if err != nil {
		m.failAll(plans, "observer", err)
		return nil, err
	}
	defer obs.Close()

	results := make([]Result, len(plans))
	sem := make(chan struct{}, createParallel)
	var wg sync.WaitGroup
	stopJoin := m.keepJoining(ctx, obs, p)
	for i := range plans {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = m.bringUp(ctx, p, obs, plans[i], sem)
		}(i)
	}
	wg.Wait()
	stopJoin()

	var failed []error
	for _, r := range results {
		if r.Error != "" {
			failed = append(failed, fmt.Errorf("node %q: %s", r.Name, r.Error))
		}
	}
	if len(failed) > 0 {
		return results, provider.WithHint(errors.Join(failed...),
			"the failed nodes stay in state: see `clusterctl status`, and remove them with `clusterctl down NAME`")
	}
	return results, nil
}

func (m *Manager) chooseProvider(st *State, asked string) (string, error) {
	bound := st.Provider
	if len(st.Nodes) == 0 {
		bound = ""
	}
	name := asked
	if name == "" {
		name = bound
	}
	if name == "" {
		name = m.Cfg.Provider
	}
	if name == "" {
		return "", provider.BadInput("pass --provider (one of: "+fmt.Sprint(provider.Names())+") or set provider: in the config", "no provider given")
	}
	if _, ok := provider.Lookup(name); !ok && m.NewProvider == nil {
		return "", provider.BadInput(fmt.Sprintf("use one of: %v", provider.Names()), "unknown provider %q", name)
	}
	if bound != "" && name != bound {
		return "", provider.BadInput(
			fmt.Sprintf("use --provider %s for this cluster, or another cluster with --cluster NAME", bound),
			"cluster %q is bound to provider %q, not %q", m.Cluster, bound, name)
	}
	return name, nil
}

// record writes the write-ahead record under the cluster's lock: the gossip
// key (if new), every planned node (phase recorded), the provider, and,
// for providers with cluster-wide resources, that down --all must clean
// them. The key is decided here, inside the lock: when another up made
// the cluster's key, or took a planned address, since pl was planned, the
// nodes are planned again against what the lock shows and re-rendered.
func (m *Manager) record(provName string, pl *planner) error {
	return m.Store.Update(func(st *State) error {
		for _, n := range pl.nodes {
			if st.Node(n.node.Name) != nil {
				return provider.BadInput("choose another name", "node %q was just created by another clusterctl", n.node.Name)
			}
		}
		again := false
		key, err := m.Store.ReadKey()
		switch {
		case err == nil:
			if !bytes.Equal(key, pl.key) {
				pl.key, again = key, true
			}
		case !errors.Is(err, os.ErrNotExist):
			return err
		}
		if pl.ssh != nil && pl.ssh.isNew {
			// Another up may have made the cluster's SSH key since pl
			// was planned: the nodes must trust that one.
			if _, err := os.Stat(m.Store.SSHKeyPath()); err == nil {
				if pl.ssh, err = m.sshUserKey(); err != nil {
					return err
				}
				again = true
			}
		}
		if pl.addressTaken(st) {
			if err := pl.assign(st); err != nil {
				return err
			}
			again = true
		}
		if again {
			if err := pl.render(st); err != nil {
				return err
			}
		}
		if errors.Is(err, os.ErrNotExist) {
			if err := atomicfile.WriteFile(m.Store.keyPath(), []byte(encodeKey(pl.key)), 0o600); err != nil {
				return err
			}
		}
		if err := m.saveSSHKey(pl.nodes); err != nil {
			return err
		}
		st.Cluster = m.Cluster
		st.Provider = provName
		if _, ok := pl.p.(provider.ClusterCleaner); ok {
			st.NeedsCleanup(provName)
		}
		for _, n := range pl.nodes {
			node := n.node
			node.CreatedAt = m.now().UTC()
			st.Nodes = append(st.Nodes, node)
		}
		return nil
	})
}

func (m *Manager) setNode(name string, fn func(*Node)) {
	err := m.Store.Update(func(st *State) error {
		if n := st.Node(name); n != nil {
			fn(n)
		}
		return nil
	})
	if err != nil {
		m.Log.Error("update state", "node", name, "err", err)
	}
}

// failAll marks every planned node failed in step (a phase name).
func (m *Manager) failAll(plans []plan, step string, err error) {
	for _, pl := range plans {
		m.setNode(pl.node.Name, func(n *Node) { n.Phase = PhaseFailed; n.Error = step + ": " + err.Error() })
	}
}

// bringUp creates one node and waits for its join.
func (m *Manager) bringUp(ctx context.Context, p provider.Provider, obs *agent.Observer, pl plan, sem chan struct{}) Result {
	start := m.now()
	name := pl.node.Name
	res := Result{Name: name, Address: pl.node.Address}
	done := func(phase Phase, err error) Result {
		res.Phase = phase
		res.Elapsed = m.now().Sub(start)
		res.Seconds = res.Elapsed.Round(100 * time.Millisecond).Seconds()
		if err != nil {
			res.Error = err.Error()
		}
		m.Report.Phase(name, phase, res.Elapsed)
		return res
	}

	if err := os.MkdirAll(pl.spec.Dir, 0o700); err != nil {
		m.setNode(name, func(n *Node) { n.Phase = PhaseFailed; n.Error = err.Error() })
		return done(PhaseFailed, fmt.Errorf("create node directory: %w", err))
	}
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return done(PhaseFailed, ctx.Err())
	}
	m.setNode(name, func(n *Node) { n.Phase = PhaseCreating })
	m.Report.Phase(name, PhaseCreating, m.now().Sub(start))
	cctx, cancel := context.WithTimeout(ctx, m.Cfg.Timeouts.Create)
	inst, err := p.Create(cctx, pl.spec)
	cancel()
	<-sem
	if err != nil {
		phaseErr := fmt.Errorf("create: %w", err)
		if errors.Is(err, context.DeadlineExceeded) {
			phaseErr = fmt.Errorf("create: no answer from provider within %s (timeouts.create / --create-timeout)", m.Cfg.Timeouts.Create)
		}
		m.setNode(name, func(n *Node) { n.InstanceID = inst.ID; n.Phase = PhaseFailed; n.Error = phaseErr.Error() })
		res.InstanceID = inst.ID
		return done(PhaseFailed, phaseErr)
	}
	res.InstanceID = inst.ID
	if res.Address == "" {
		res.Address = inst.Address
	}
	m.setNode(name, func(n *Node) {
		n.InstanceID = inst.ID
		n.Phase = PhaseBooting
		if n.Address == "" {
			n.Address = inst.Address
		}
	})
	m.Report.Phase(name, PhaseBooting, m.now().Sub(start))

	jctx, cancel := context.WithTimeout(ctx, m.Cfg.Timeouts.Join)
	defer cancel()
	mem, err := obs.WaitNonce(jctx, pl.node.Nonce)
	if err != nil {
		phaseErr := fmt.Errorf("join: %w", err)
		if errors.Is(err, context.DeadlineExceeded) {
			phaseErr = fmt.Errorf("join: the agent did not join within %s (timeouts.join / --join-timeout)", m.Cfg.Timeouts.Join)
		}
		res.ConsoleTail = m.consoleTail(p, inst.ID)
		m.setNode(name, func(n *Node) { n.Phase = PhaseFailed; n.Error = phaseErr.Error() })
		return done(PhaseFailed, phaseErr)
	}
	joinedAt := m.now().UTC()
	m.setNode(name, func(n *Node) {
		n.Phase = PhaseJoined
		n.Error = ""
		n.JoinedAt = joinedAt
		if n.Address == "" {
			n.Address = mem.Addr
		}
	})
	if res.Address == "" {
		res.Address = mem.Addr
	}
	return done(PhaseJoined, nil)
}

// consoleTail returns the last lines of the node's console, if the
// provider can show it.
func (m *Manager) consoleTail(p provider.Provider, id string) string {
	cl, ok := p.(provider.ConsoleLogger)
	if !ok || id == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := cl.ConsoleLog(ctx, id)
	if err != nil {
		return fmt.Sprintf("(console log unavailable: %v)", err)
	}
	return tail(out, consoleTailLines)
}

func tail(b []byte, n int) string {
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

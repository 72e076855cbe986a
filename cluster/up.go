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

	"github.com/clusterctl/clusterctl/internal/pki"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

// UpRequest is what `clusterctl up` asks for.
type UpRequest struct {
	Provider string   // "" = the cluster's, else the config's
	Names    []string // "" = pick Count names
	Count    int
	Role     string // the nodes' application role; "" = node.role
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
	unlock, err := m.lockCommand(ctx, "up")
	if err != nil {
		return nil, err
	}
	defer unlock()
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
	if nodes, err := resumable(st, req.Names); err != nil {
		return nil, err
	} else if len(nodes) > 0 {
		return m.resume(ctx, p, nodes)
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
	plans := pl.nodes
	if a := pl.agent; a.upload {
		if err := a.pub.UploadAgent(ctx, m.Cluster, a.binary, a.src.SHA256); err != nil {
			err = fmt.Errorf("upload the agent binary: %w", err)
			m.failAll(plans, "upload", err)
			names := make([]string, len(plans))
			for i, pl := range plans {
				names[i] = pl.node.Name
			}
			return nil, usererr.WithHint(err, "the nodes stay in state as failed: remove them with `clusterctl down "+strings.Join(names, " ")+"`, then run up again")
		}
	}

	creds, err := m.credentials()
	if err != nil {
		m.failAll(plans, "credentials", err)
		return nil, err
	}
	client, err := m.client(creds, nil)
	if err != nil {
		m.failAll(plans, "credentials", err)
		return nil, err
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	w := watch(wctx, client, map[string]bool{pl.alone: pl.alone != ""})

	runs := make([]*nodeRun, len(plans))
	for i := range plans {
		runs[i] = &nodeRun{pl: &plans[i], start: m.now(), res: Result{Name: plans[i].node.Name, Address: plans[i].node.Address}}
	}
	sem := make(chan struct{}, createParallel)
	var wg sync.WaitGroup
	next := 0
	if pl.staged {
		next = m.upFirst(ctx, p, pl, w, runs, sem, &wg)
	}
	for _, r := range runs[next:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if m.create(ctx, p, r, sem) {
				m.join(ctx, p, w, r)
			}
		}()
	}
	wg.Wait()
	results := make([]Result, len(runs))
	for i, r := range runs {
		results[i] = r.res
	}

	var failed []error
	for _, r := range results {
		if r.Error != "" {
			failed = append(failed, fmt.Errorf("node %q: %s", r.Name, r.Error))
		}
	}
	if len(failed) > 0 {
		return results, usererr.WithHint(errors.Join(failed...),
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
		return "", usererr.BadInput("pass --provider (one of: "+fmt.Sprint(provider.Names())+") or set provider: in the config", "no provider given")
	}
	if _, ok := provider.Lookup(name); !ok && m.NewProvider == nil {
		return "", usererr.BadInput(fmt.Sprintf("use one of: %v", provider.Names()), "unknown provider %q", name)
	}
	if bound != "" && name != bound {
		return "", usererr.BadInput(
			fmt.Sprintf("use --provider %s for this cluster, or another cluster with --cluster NAME", bound),
			"cluster %q is bound to provider %q, not %q", m.Cluster, bound, name)
	}
	return name, nil
}

// record writes the write-ahead record under the cluster's lock: the gossip
// key and the CA (if new), every planned node (phase recorded), the provider, and,
// for providers with cluster-wide resources, that down --all must clean
// them. The key is decided here, inside the lock: when another up made
// the cluster's key, or took a planned address, since pl was planned, the
// nodes are planned again against what the lock shows and re-rendered.
func (m *Manager) record(provName string, pl *planner) error {
	return m.Store.Update(func(st *State) error {
		for _, n := range pl.nodes {
			if st.Node(n.node.Name) != nil {
				return usererr.BadInput("choose another name", "node %q was just created by another clusterctl", n.node.Name)
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
		newKey := errors.Is(err, os.ErrNotExist)
		if newKey {
			// The cluster's first up: its CA is made with its key, under
			// the lock, so two first ups share both.
			if m.hasCAFile() {
				return usererr.BadInput(fmt.Sprintf("restore gossip.key in %s from a backup; if the cluster has no nodes, remove %s and %s there instead", m.Store.Dir, pki.CACertFile, pki.CAKeyFile),
					"cluster %q has a CA but no gossip key", m.Cluster)
			}
			ca, err := pki.Create(m.Store.Dir, m.Cluster)
			if err != nil {
				return err
			}
			pl.ca, again = ca, true
		} else if pl.newKey {
			// Another up made the key and the CA since pl was planned.
			ca, err := m.loadCA()
			if err != nil {
				return err
			}
			pl.ca, again = ca, true
		}
		if again {
			if err := pl.render(st); err != nil {
				if newKey {
					m.removeCA()
				}
				return err
			}
		}
		if newKey {
			if err := m.Store.WriteKeys([][]byte{pl.key}); err != nil {
				m.removeCA()
				return err
			}
		}
		if err := m.saveSSHKey(pl.nodes); err != nil {
			return err
		}
		if len(st.Nodes) == 0 && len(pl.nodes) > 0 {
			pl.alone = pl.nodes[0].node.Nonce
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

// nodeRun is one node's way through up.
type nodeRun struct {
	pl    *plan
	start time.Time
	res   Result
	inst  provider.Instance
}

// done ends r in phase and reports it.
func (m *Manager) done(r *nodeRun, phase Phase, err error) {
	r.res.Phase = phase
	r.res.Elapsed = m.now().Sub(r.start)
	r.res.Seconds = r.res.Elapsed.Round(100 * time.Millisecond).Seconds()
	if err != nil {
		r.res.Error = err.Error()
	}
	m.Report.Phase(r.res.Name, phase, r.res.Elapsed)
}

// upFirst runs the first phase of a staged batch (a cloud, several nodes):
// it creates nodes one at a time until one is accepted with its private
// address, re-renders the nodes after it with that address as their seed,
// and starts waiting for the first node's join. It returns the index of
// the first node not yet created.
func (m *Manager) upFirst(ctx context.Context, p provider.Provider, pl *planner, w *watcher, runs []*nodeRun, sem chan struct{}, wg *sync.WaitGroup) int {
	for i, r := range runs {
		if i > 0 {
			// The node before failed: this one becomes the first, with
			// no placeholder seed.
			pl.first = i
			st, err := m.Store.Load()
			if err == nil {
				err = pl.renderFrom(st, i)
			}
			if err != nil {
				m.failRuns(runs[i:], fmt.Errorf("render: %w", err))
				return len(runs)
			}
		}
		if !m.create(ctx, p, r, sem) {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); m.join(ctx, p, w, r) }()
		if pl.alone == pl.nodes[0].node.Nonce {
			w.setAlone(r.pl.node.Nonce)
		}
		addr := r.inst.Address
		if addr == "" {
			return i + 1 // the rest keep the seeds they have
		}
		pl.firstAddr = addr
		st, err := m.Store.Load()
		if err == nil {
			err = pl.renderFrom(st, i+1)
		}
		if err != nil {
			m.failRuns(runs[i+1:], fmt.Errorf("render with the first node's address: %w", err))
			return len(runs)
		}
		return i + 1
	}
	return len(runs)
}

// failRuns ends runs that were never created, failed with err.
func (m *Manager) failRuns(runs []*nodeRun, err error) {
	for _, r := range runs {
		m.setNode(r.pl.node.Name, func(n *Node) { n.Phase = PhaseFailed; n.Error = err.Error() })
		m.done(r, PhaseFailed, err)
	}
}

// create makes r's machine and records its id and address; it reports
// whether the provider accepted it (else r is done, failed).
func (m *Manager) create(ctx context.Context, p provider.Provider, r *nodeRun, sem chan struct{}) bool {
	pl := r.pl
	name := pl.node.Name
	if err := os.MkdirAll(pl.spec.Dir, 0o700); err != nil {
		m.setNode(name, func(n *Node) { n.Phase = PhaseFailed; n.Error = err.Error() })
		m.done(r, PhaseFailed, fmt.Errorf("create node directory: %w", err))
		return false
	}
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		m.done(r, PhaseFailed, ctx.Err())
		return false
	}
	m.setNode(name, func(n *Node) { n.Phase, n.CreateSent = PhaseCreating, true })
	m.Report.Phase(name, PhaseCreating, m.now().Sub(r.start))
	cctx, cancel := context.WithTimeout(ctx, m.Cfg.Timeouts.Create)
	inst, err := p.Create(cctx, pl.spec)
	cancel()
	<-sem
	r.inst = inst
	r.res.InstanceID = inst.ID
	if err != nil {
		phaseErr := fmt.Errorf("create: %w", err)
		if errors.Is(err, context.DeadlineExceeded) {
			phaseErr = fmt.Errorf("create: no answer from provider within %s (timeouts.create / --create-timeout)", m.Cfg.Timeouts.Create)
		}
		m.setNode(name, func(n *Node) { n.InstanceID = inst.ID; n.Phase = PhaseFailed; n.Error = phaseErr.Error() })
		m.done(r, PhaseFailed, phaseErr)
		return false
	}
	if r.res.Address == "" {
		r.res.Address = inst.Address
	}
	// Recording the address makes the node an API endpoint of the client.
	m.setNode(name, func(n *Node) {
		n.InstanceID = inst.ID
		n.Phase = PhaseBooting
		if n.Address == "" {
			n.Address = inst.Address
		}
		n.PublicAddress = inst.PublicAddress
	})
	m.Report.Phase(name, PhaseBooting, m.now().Sub(r.start))
	return true
}

// join waits until a member sees r's node alive with its nonce (see
// watcher), or the join deadline passes.
func (m *Manager) join(ctx context.Context, p provider.Provider, w *watcher, r *nodeRun) {
	name := r.pl.node.Name
	tctx, cancel := context.WithTimeout(ctx, m.Cfg.Timeouts.Join)
	defer cancel()
	jctx, fail := context.WithCancelCause(tctx)
	// Both helpers write the node's record: join returns only after they
	// have ended, so that what up reports is in the state when it returns.
	var helpers sync.WaitGroup
	defer func() { fail(nil); helpers.Wait() }()
	if r.inst.PublicAddress == "" {
		helpers.Go(func() { m.learnPublicAddress(jctx, p, name, r.inst.ID) })
	}
	enrolled := make(chan struct{})
	helpers.Go(func() { defer close(enrolled); m.enrol(jctx, w.client, name, fail) })
	mem, reach, err := w.wait(jctx, r.pl.node.Name, r.pl.node.Nonce)
	if err == nil {
		// The node joined, so it holds the grant enrol gave it: wait until
		// enrol has recorded that (the token gone, the node's SSH host key
		// pinned), or found it was not its grant.
		<-enrolled
	}
	if cause := context.Cause(jctx); errors.Is(cause, errEnrolment) {
		err = cause // a node that joined holding a grant that was not ours is no node of ours
	}
	if err != nil {
		phaseErr := fmt.Errorf("join: %w", err)
		if errors.Is(err, errEnrolment) {
			phaseErr = err
		} else if errors.Is(err, context.DeadlineExceeded) {
			phaseErr = fmt.Errorf("join: the agent did not join within %s (timeouts.join / --join-timeout)", m.Cfg.Timeouts.Join)
		}
		if reach != nil {
			phaseErr = fmt.Errorf("%w; at the end no node's API answered: %w", phaseErr, reach)
		}
		r.res.ConsoleTail = m.consoleTail(p, r.inst.ID)
		m.setNode(name, func(n *Node) { n.Phase = PhaseFailed; n.Error = phaseErr.Error() })
		m.done(r, PhaseFailed, phaseErr)
		return
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
	if r.res.Address == "" {
		r.res.Address = mem.Addr
	}
	m.done(r, PhaseJoined, nil)
}

// publicAddressPoll is how often up asks the provider for a booting node's
// public address (EC2 assigns it when the instance starts, after
// RunInstances has returned).
const publicAddressPoll = 2 * time.Second

// learnPublicAddress records the node's public address as soon as the
// provider reports one, which makes it an API endpoint the CLI can dial
// from outside the cloud network. Providers on which this machine reaches
// the cluster address (local VMs) never report one; it stops with ctx.
func (m *Manager) learnPublicAddress(ctx context.Context, p provider.Provider, name, id string) {
	if _, local := p.(provider.AddressChooser); local || id == "" {
		return
	}
	t := time.NewTicker(publicAddressPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		inst, err := p.Status(ctx, id)
		if err == nil && inst.PublicAddress != "" {
			m.setNode(name, func(n *Node) { n.PublicAddress = inst.PublicAddress })
			return
		}
	}
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

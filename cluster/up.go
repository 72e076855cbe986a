package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/clusterctl/clusterctl/agent"
	"github.com/clusterctl/clusterctl/cloudinit"
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
	Phase      string        `json:"phase"`
	Elapsed    time.Duration `json:"-"`
	Seconds    float64       `json:"elapsed_seconds"`
	Error      string        `json:"error,omitempty"`
	// ConsoleTail is the end of the console log when a phase failed.
	ConsoleTail string `json:"console_tail,omitempty"`
}

// plan is one node that up is about to make.
type plan struct {
	node Node
	spec provider.NodeSpec
	ssh  *sshUserKey // the cluster's SSH key; nil with ssh: false (see ssh.go)
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
	plans, key, err := m.plan(ctx, st, p, req, false)
	if err != nil {
		return nil, err
	}

	if np, ok := p.(provider.NetworkPreparer); ok {
		if err := np.PrepareNetwork(ctx); err != nil {
			return nil, err
		}
	}

	// Write-ahead: the key and every node are recorded before the provider
	// is asked to make any of them.
	if err := m.record(provName, key, plans); err != nil {
		return nil, err
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

// plan validates the request and renders every node. It creates nothing.
// A dry run (render) skips the provider's preflight checks: it only shows
// what would be sent, so it works where the node could not run.
func (m *Manager) plan(ctx context.Context, st *State, p provider.Provider, req UpRequest, dry bool) ([]plan, []byte, error) {
	used := map[string]bool{}
	usedAddr := map[netip.Addr]bool{}
	for _, n := range st.Nodes {
		used[n.Name] = true
		if a, err := netip.ParseAddr(n.Address); err == nil {
			usedAddr[a] = true
		}
	}
	names := req.Names
	if len(names) == 0 {
		count := req.Count
		if count == 0 {
			count = 1
		}
		if count < 0 || count > 250 {
			return nil, nil, provider.BadInput("use --count between 1 and 250", "--count %d is out of range", count)
		}
		names = pickNames(count, used)
	} else if req.Count != 0 && req.Count != len(names) {
		return nil, nil, provider.BadInput("give either names or --count", "--count %d does not match the %d name(s) given", req.Count, len(names))
	}
	if err := checkNames(names, used); err != nil {
		return nil, nil, err
	}

	var prefix netip.Prefix
	var host netip.Addr
	var addrs []netip.Addr
	if ac, ok := p.(provider.AddressChooser); ok {
		var err error
		prefix, host, err = ac.ClusterNetwork(ctx)
		if err != nil {
			return nil, nil, err
		}
		if addrs, err = allocate(prefix, host, usedAddr, len(names)); err != nil {
			return nil, nil, err
		}
	}

	_, chooses := p.(provider.AddressChooser)
	if !chooses && !dry && m.Cfg.Gossip.Observer == "" {
		return nil, nil, errNoObserverAddr(p.Name())
	}
	var cidr netip.Prefix
	if nn, ok := p.(provider.NodeNetwork); ok {
		var err error
		if cidr, err = nn.NodeCIDR(ctx); err != nil {
			return nil, nil, err
		}
	} else if chooses {
		cidr = prefix
	}

	source, agentBin, publisher, err := m.agentSource(p)
	if err != nil {
		return nil, nil, err
	}

	key, err := m.Store.ReadKey()
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, nil, fmt.Errorf("make gossip key: %w", err)
		}
	} else if err != nil {
		return nil, nil, err
	}

	extra, tmpl, err := m.userCloudInit()
	if err != nil {
		return nil, nil, err
	}
	sshKey, err := m.sshUserKey()
	if err != nil {
		return nil, nil, err
	}

	plans := make([]plan, len(names))
	var peers []cloudinit.Peer
	var seeds []string
	for _, n := range st.Nodes {
		if a, err := netip.ParseAddr(n.Address); err == nil {
			peers = append(peers, cloudinit.Peer{Name: n.Name, Address: a})
			seeds = append(seeds, gossipAddr(n.Address, m.Cfg.Gossip.Port))
		}
	}
	for i, name := range names {
		pl := plan{node: Node{Name: name, Nonce: randomHex(16), Provider: p.Name(), Phase: PhaseRecorded}}
		pl.spec = provider.NodeSpec{
			Cluster: m.Cluster, Name: name, Nonce: pl.node.Nonce,
			CPUs: m.Cfg.Node.CPUs, MemoryMiB: m.Cfg.Node.MemoryMiB, Tags: m.tags(),
			Dir: m.Store.NodeDir(name),
		}
		if source == cloudinit.AgentSeed {
			pl.spec.AgentBinary = agentBin
		}
		if len(addrs) > 0 {
			pl.node.Address = addrs[i].String()
			pl.node.MAC = newMAC()
			pl.spec.Address, pl.spec.MAC = addrs[i], pl.node.MAC
			if on, ok := p.(provider.OutboundNIC); ok && on.HasOutboundNIC() {
				pl.spec.OutboundMAC = newMAC()
			}
			peers = append(peers, cloudinit.Peer{Name: name, Address: addrs[i]})
			seeds = append(seeds, gossipAddr(pl.node.Address, m.Cfg.Gossip.Port))
		}
		plans[i] = pl
	}

	// Everything the provider can check before anything exists.
	if pf, ok := p.(provider.Preflighter); ok && !dry {
		specs := make([]provider.NodeSpec, len(plans))
		for i := range plans {
			specs[i] = plans[i].spec
		}
		if err := pf.Preflight(ctx, specs); err != nil {
			return nil, nil, err
		}
	}

	agentSrc := cloudinit.AgentSource{Kind: source, URL: m.Cfg.Agent.URL, SHA256: m.Cfg.Agent.SHA256}
	if source == cloudinit.AgentURL && agentSrc.URL == "" {
		if agentSrc.URL, agentSrc.SHA256, err = m.publishAgent(ctx, publisher, agentBin, dry); err != nil {
			return nil, nil, err
		}
	}

	var errs []error
	for i := range plans {
		pl := &plans[i]
		in, err := m.renderInput(pl.node, cidr, prefix.Bits(), key, peers, seeds, agentSrc, extra, tmpl)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		in.OutboundMAC = pl.spec.OutboundMAC
		if in.SSH, err = m.nodeSSH(pl, sshKey); err != nil {
			errs = append(errs, err)
			continue
		}
		r, err := cloudinit.Render(in)
		if err != nil {
			errs = append(errs, provider.BadInput("check node names, cloudinit.extra and cloudinit.template", "render cloud-init for %q: %w", pl.node.Name, err))
			continue
		}
		pl.spec.Seed = r.Seed()
		if sc, ok := p.(provider.SeedChecker); ok {
			if err := sc.CheckSeed(pl.spec); err != nil {
				errs = append(errs, fmt.Errorf("node %q: %w", pl.node.Name, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return plans, key, nil
}

// agentSource decides how nodes get the agent: agent.source, else the URL
// a publishing provider gives, else the seed ISO. It returns the local
// agent binary when one must be shipped or published.
func (m *Manager) agentSource(p provider.Provider) (source, bin string, pub provider.AgentPublisher, err error) {
	source = m.Cfg.Agent.Source
	pub, publishes := p.(provider.AgentPublisher)
	switch {
	case source == "" && publishes:
		source = cloudinit.AgentURL
	case source == "":
		source = cloudinit.AgentSeed
	case source == cloudinit.AgentSeed && publishes:
		return "", "", nil, provider.BadInput(`use agent.source "url" (or leave it unset) for provider `+p.Name(),
			"agent.source \"seed\" needs a provider that boots from a seed ISO; %q does not", p.Name())
	}
	if source == cloudinit.AgentSeed || (source == cloudinit.AgentURL && m.Cfg.Agent.URL == "") {
		if bin, err = m.agentBinary(); err != nil {
			return "", "", nil, err
		}
	}
	return source, bin, pub, nil
}

// userCloudInit returns the user's extra cloud-config and replacement
// template (nil when not configured).
func (m *Manager) userCloudInit() (extra, tmpl []byte, err error) {
	if m.Cfg.CloudInit.Extra != "" {
		extra = []byte(m.Cfg.CloudInit.Extra)
	}
	if m.Cfg.CloudInit.Template != "" {
		if tmpl, err = os.ReadFile(m.Cfg.CloudInit.Template); err != nil {
			return nil, nil, provider.BadInput("point cloudinit.template at a readable file", "cloudinit.template: %w", err)
		}
	}
	return extra, tmpl, nil
}

// publishAgent makes the agent binary downloadable through the provider.
// A dry run publishes nothing and shows a placeholder URL.
func (m *Manager) publishAgent(ctx context.Context, pub provider.AgentPublisher, bin string, dry bool) (url, sum string, err error) {
	if dry {
		sum, err := fileSHA256(bin)
		return "https://agent.invalid/published-by-up", sum, err
	}
	url, sum, err = pub.PublishAgent(ctx, m.Cluster, bin)
	if err != nil {
		return "", "", fmt.Errorf("publish the agent binary: %w", err)
	}
	return url, sum, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %q: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (m *Manager) tags() map[string]string {
	t := map[string]string{}
	for k, v := range m.Cfg.Node.Tags {
		t[k] = v
	}
	return t
}

// renderInput builds the cloud-init input (and the agent's config) for node.
func (m *Manager) renderInput(n Node, cidr netip.Prefix, bits int, key []byte, peers []cloudinit.Peer, seeds []string, src cloudinit.AgentSource, extra, tmpl []byte) (cloudinit.Input, error) {
	var others []cloudinit.Peer
	for _, p := range peers {
		if p.Name != n.Name {
			others = append(others, p)
		}
	}
	var seedList []string
	self := ""
	if n.Address != "" {
		self = gossipAddr(n.Address, m.Cfg.Gossip.Port)
	}
	for _, s := range seeds {
		if s != self {
			seedList = append(seedList, s)
		}
	}
	ac := agent.Config{
		Cluster:   m.Cluster,
		Name:      n.Name,
		Nonce:     n.Nonce,
		Provider:  n.Provider,
		Tags:      m.tags(),
		Key:       key,
		Port:      m.Cfg.Gossip.Port,
		Seeds:     seedList,
		HostsFile: "/etc/hosts",
		Domain:    m.Cfg.DomainFor(m.Cluster),
	}
	in := cloudinit.Input{
		Cluster:    m.Cluster,
		Name:       n.Name,
		Domain:     m.Cfg.DomainFor(m.Cluster),
		InstanceID: fmt.Sprintf("%s-%s-%s", m.Cluster, n.Name, n.Nonce[:8]),
		MAC:        n.MAC,
		Peers:      others,
		Agent:      src,
		Extra:      extra,
		Template:   tmpl,
	}
	if n.Address != "" {
		in.Address = netip.PrefixFrom(netip.MustParseAddr(n.Address), bits)
	}
	if cidr.IsValid() {
		ac.AdvertiseCIDR = cidr.Masked().String()
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(ac); err != nil {
		return in, fmt.Errorf("encode agent config: %w", err)
	}
	in.AgentConfig = buf.Bytes()
	return in, nil
}

// record writes the key (if new) and the planned nodes to state, failing if
// another command took a name or made a different key meanwhile.
func (m *Manager) record(provName string, key []byte, plans []plan) error {
	return m.Store.Update(func(st *State) error {
		if existing, err := m.Store.ReadKey(); err == nil {
			if !bytes.Equal(existing, key) {
				return errors.New("another clusterctl created this cluster at the same time; run the command again")
			}
		} else if errors.Is(err, os.ErrNotExist) {
			if err := WriteFileAtomic(m.Store.keyPath(), []byte(encodeKey(key)), 0o600); err != nil {
				return err
			}
		} else {
			return err
		}
		if err := m.saveSSHKey(plans); err != nil {
			return err
		}
		for _, pl := range plans {
			if st.Node(pl.node.Name) != nil {
				return provider.BadInput("choose another name", "node %q was just created by another clusterctl", pl.node.Name)
			}
		}
		st.Cluster = m.Cluster
		st.Provider = provName
		for _, pl := range plans {
			n := pl.node
			n.CreatedAt = m.now().UTC()
			st.Nodes = append(st.Nodes, n)
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

func (m *Manager) failAll(plans []plan, phase string, err error) {
	for _, pl := range plans {
		m.setNode(pl.node.Name, func(n *Node) { n.Phase = PhaseFailed; n.Error = phase + ": " + err.Error() })
	}
}

// bringUp creates one node and waits for its join.
func (m *Manager) bringUp(ctx context.Context, p provider.Provider, obs *agent.Observer, pl plan, sem chan struct{}) Result {
	start := m.now()
	name := pl.node.Name
	res := Result{Name: name, Address: pl.node.Address}
	done := func(phase string, err error) Result {
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

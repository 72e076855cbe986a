package cluster

import (
	"bytes"
	"cmp"
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

	"github.com/clusterctl/clusterctl/cloudinit"
	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/pki"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

// plan is one node that up is about to make.
type plan struct {
	node Node
	spec provider.NodeSpec
	ssh  *sshUserKey // the cluster's SSH key; nil with ssh: false (see ssh.go)
}

// agentPlan is how the nodes get the agent binary.
type agentPlan struct {
	src cloudinit.AgentSource
	// binary is the local agent binary: on the seed ISO (AgentSeed), or
	// uploaded by the provider (upload).
	binary string
	// upload says that up must call the provider's UploadAgent, after its
	// write-ahead record, so that src.URL serves binary.
	upload bool
	pub    provider.AgentPublisher
}

// planner decides everything up makes and makes nothing itself, at the
// provider or on disk: the nodes' names, addresses and MACs, the agent's
// source and URL (AgentURL, not the upload), the gossip key to render with,
// and every node's seed, checked by the provider. Its steps run in this
// order, so that the cheap checks and the provider's own checks of
// credentials and region come before any cloud lookup:
//
//  1. names, flags and the user's cloud-config (no provider call),
//  2. the cluster network and addresses (AddressChooser, a local lookup),
//  3. Preflight on specs without seeds,
//  4. cloud lookups: NodeCIDR,
//  5. the agent's SHA-256 and URL,
//  6. rendering and SeedChecker on every real seed.
//
// A dry run (render) skips Preflight and AgentURL: it only shows what would
// be sent, so it works where the nodes could not run.
type planner struct {
	m   *Manager
	p   provider.Provider
	dry bool

	nodes  []plan
	key    []byte // the key the seeds are rendered with
	newKey bool   // no key existed when planning began
	// ca issues the nodes' API certificates: the cluster's, or a throw-away
	// one until up's record makes the real one with the key (newKey).
	ca *pki.CA
	// staged: the provider chooses addresses (a cloud) and the batch has
	// more than one node, so up makes the first node first and the rest
	// get its private address (firstAddr) as their seed; until it is
	// known, the rest are rendered with seedPlaceholder, as long as any
	// real address, so the seed-size check holds.
	staged    bool
	first     int // index of the node the rest of a staged batch seed from
	firstAddr string
	// alone is the nonce of the node that may be ready in its own view
	// alone: the first node of a new cluster (set by up's record).
	alone  string
	prefix netip.Prefix
	host   netip.Addr
	cidr   netip.Prefix // the agents' advertise CIDR (invalid = none)
	agent  agentPlan
	extra  []byte
	tmpl   []byte
	ssh    *sshUserKey // the cluster's SSH key; nil with ssh: false
}

func newPlanner(m *Manager, p provider.Provider, dry bool) *planner {
	return &planner{m: m, p: p, dry: dry}
}

// plan runs every step against the state snapshot st.
func (pl *planner) plan(ctx context.Context, st *State, req UpRequest) error {
	m, p := pl.m, pl.p
	names, err := nodeNames(st, req)
	if err != nil {
		return err
	}
	role := cmp.Or(req.Role, m.Cfg.Node.Role)
	if err := checkRole("--role", role); err != nil {
		return err
	}
	for _, name := range names {
		if err := m.Cfg.checkMetaBudget(name, p.Name(), role); err != nil {
			return err
		}
	}
	if pl.agent, err = m.agentSource(p); err != nil {
		return err
	}
	if pl.extra, pl.tmpl, err = m.userCloudInit(); err != nil {
		return err
	}
	if pl.ssh, err = m.sshUserKey(); err != nil {
		return err
	}

	pl.nodes = make([]plan, len(names))
	for i, name := range names {
		token, err := bootstrapToken()
		if err != nil {
			return err
		}
		n := Node{Name: name, Nonce: randomHex(16), Provider: p.Name(), Role: role, Phase: PhaseRecorded,
			EnrolToken: token, EnrolExpires: m.now().UTC().Add(m.Cfg.Timeouts.Bootstrap)}
		pl.nodes[i] = plan{node: n, spec: provider.NodeSpec{
			Cluster: m.Cluster, Name: name, Nonce: n.Nonce,
			CPUs: m.Cfg.Node.CPUs, MemoryMiB: m.Cfg.Node.MemoryMiB, Tags: m.tags(),
			Dir: m.Store.NodeDir(name),
		}}
		if pl.agent.src.Kind == cloudinit.AgentSeed {
			pl.nodes[i].spec.AgentBinary = pl.agent.binary
		}
	}
	if ac, ok := p.(provider.AddressChooser); ok {
		if pl.prefix, pl.host, err = ac.ClusterNetwork(ctx); err != nil {
			return err
		}
		if err := pl.assign(st); err != nil {
			return err
		}
		pl.cidr = pl.prefix
	}

	// Everything the provider can check before anything exists, first.
	if pf, ok := p.(provider.Preflighter); ok && !pl.dry {
		specs := make([]provider.NodeSpec, len(pl.nodes))
		for i := range pl.nodes {
			specs[i] = pl.nodes[i].spec
		}
		if err := pf.Preflight(ctx, specs); err != nil {
			return err
		}
	}
	if nn, ok := p.(provider.NodeNetwork); ok {
		if pl.cidr, err = nn.NodeCIDR(ctx); err != nil {
			return err
		}
	}
	if err := pl.agentURL(ctx); err != nil {
		return err
	}

	key, err := m.Store.ReadKey()
	switch {
	case errors.Is(err, os.ErrNotExist):
		pl.newKey = true
		if key, err = newKey(); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	pl.key = key
	if pl.newKey {
		pl.ca, err = m.throwawayCA()
	} else {
		pl.ca, err = m.loadCA()
	}
	if err != nil {
		return err
	}
	_, chooses := p.(provider.AddressChooser)
	pl.staged = !chooses && len(pl.nodes) > 1
	return pl.render(st)
}

// seedPlaceholder stands in for the first node's address in the seeds of
// the rest of a staged batch until it is known: as long as the longest
// address with its port, and as incompressible as a real one.
const seedPlaceholder = "[fd8c:4b2e:91a7:3f05:c6d9:7e12:a84b:5f30]:65535"

// nodeNames returns the names asked for, or picked ones, all checked.
func nodeNames(st *State, req UpRequest) ([]string, error) {
	used := map[string]bool{}
	for _, n := range st.Nodes {
		used[n.Name] = true
	}
	names := req.Names
	if len(names) == 0 {
		count := req.Count
		if count == 0 {
			count = 1
		}
		if count < 0 || count > 250 {
			return nil, usererr.BadInput("use --count between 1 and 250", "--count %d is out of range", count)
		}
		names = pickNames(count, used)
	} else if req.Count != 0 && req.Count != len(names) {
		return nil, usererr.BadInput("give either names or --count", "--count %d does not match the %d name(s) given", req.Count, len(names))
	}
	if err := checkNames(names, used); err != nil {
		return nil, err
	}
	return names, nil
}

// newKey makes a gossip key.
func newKey() ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("make gossip key: %w", err)
	}
	return key, nil
}

// assign gives every planned node a free address of the cluster network
// (one that no node of st has) and MACs. Only for AddressChooser providers.
func (pl *planner) assign(st *State) error {
	if !pl.prefix.IsValid() {
		return nil
	}
	used := map[netip.Addr]bool{}
	for _, n := range st.Nodes {
		if a, err := netip.ParseAddr(n.Address); err == nil {
			used[a] = true
		}
	}
	addrs, err := allocate(pl.prefix, pl.host, used, len(pl.nodes))
	if err != nil {
		return err
	}
	on, hasOutbound := pl.p.(provider.OutboundNIC)
	for i := range pl.nodes {
		n := &pl.nodes[i]
		n.node.Address, n.node.MAC = addrs[i].String(), newMAC()
		n.spec.Address, n.spec.MAC = addrs[i], n.node.MAC
		if hasOutbound && on.HasOutboundNIC() {
			n.spec.OutboundMAC = newMAC()
		}
	}
	return nil
}

// addressTaken reports whether a node of st has an address planned here.
func (pl *planner) addressTaken(st *State) bool {
	for _, n := range st.Nodes {
		for _, p := range pl.nodes {
			if n.Address != "" && n.Address == p.node.Address {
				return true
			}
		}
	}
	return false
}

// agentURL decides the URL the nodes download the agent from when the
// provider hosts it: the binary's SHA-256 and the provider's AgentURL,
// which makes nothing. The upload waits for the write-ahead record.
func (pl *planner) agentURL(ctx context.Context) error {
	a := &pl.agent
	if a.src.Kind != cloudinit.AgentURL || a.src.URL != "" {
		return nil
	}
	sum, err := fileSHA256(a.binary)
	if err != nil {
		return usererr.BadInput("build the agent with `make build`, or set agent.binary", "agent binary: %w", err)
	}
	a.src.SHA256 = sum
	if pl.dry {
		a.src.URL = "https://agent.invalid/published-by-up"
		return nil
	}
	if a.src.URL, err = a.pub.AgentURL(ctx, pl.m.Cluster, sum); err != nil {
		return fmt.Errorf("the agent binary's URL at %s: %w", pl.p.Name(), err)
	}
	a.upload = true
	return nil
}

// render renders every planned node's seed with pl.key, its peers and seeds
// being the nodes of st and the other planned nodes, and has the provider
// check each seed. Every problem is returned at once.
func (pl *planner) render(st *State) error { return pl.renderFrom(st, 0) }

// renderFrom renders the planned nodes from index from on (see render).
// In a staged batch, every node but the first also gets the first node's
// address (or its placeholder) as a seed.
func (pl *planner) renderFrom(st *State, from int) error {
	m := pl.m
	var peers []cloudinit.Peer
	var seeds []string
	add := func(name, addr string) {
		if a, err := netip.ParseAddr(addr); err == nil {
			peers = append(peers, cloudinit.Peer{Name: name, Address: a})
			seeds = append(seeds, gossipAddr(addr, m.Cfg.Gossip.Port))
		}
	}
	for _, n := range st.Nodes {
		add(n.Name, n.Address)
	}
	for _, p := range pl.nodes {
		add(p.node.Name, p.node.Address)
	}
	sc, checks := pl.p.(provider.SeedChecker)
	var errs []error
	for i := from; i < len(pl.nodes); i++ {
		n := &pl.nodes[i]
		nodeSeeds := seeds
		if pl.staged && i > pl.first {
			first := seedPlaceholder
			if pl.firstAddr != "" {
				first = gossipAddr(pl.firstAddr, m.Cfg.Gossip.Port)
			}
			nodeSeeds = []string{first}
			for _, s := range seeds {
				if s != first {
					nodeSeeds = append(nodeSeeds, s)
				}
			}
		}
		in, err := m.renderInput(renderArgs{
			node: n.node, cidr: pl.cidr, bits: pl.prefix.Bits(), ca: pl.ca,
			peers: peers, seeds: nodeSeeds, agent: pl.agent.src,
			extra: pl.extra, tmpl: pl.tmpl, outboundMAC: n.spec.OutboundMAC,
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if in.SSH, err = m.nodeSSH(n, pl.ssh); err != nil {
			errs = append(errs, err)
			continue
		}
		r, err := cloudinit.Render(in)
		if err != nil {
			errs = append(errs, usererr.BadInput("check node names, cloudinit.extra and cloudinit.template", "render cloud-init for %q: %w", n.node.Name, err))
			continue
		}
		n.spec.Seed = provider.Seed(r)
		if checks {
			if err := sc.CheckSeed(n.spec); err != nil {
				errs = append(errs, fmt.Errorf("node %q: %w", n.node.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// agentSource decides how nodes get the agent: agent.source, else the URL
// a publishing provider gives, else the seed ISO. It finds the local agent
// binary when one must be shipped or uploaded.
func (m *Manager) agentSource(p provider.Provider) (agentPlan, error) {
	a := agentPlan{src: cloudinit.AgentSource{Kind: m.Cfg.Agent.Source, URL: m.Cfg.Agent.URL, SHA256: m.Cfg.Agent.SHA256}}
	pub, publishes := p.(provider.AgentPublisher)
	switch {
	case a.src.Kind == "" && publishes:
		a.src.Kind = cloudinit.AgentURL
	case a.src.Kind == "":
		a.src.Kind = cloudinit.AgentSeed
	case a.src.Kind == cloudinit.AgentSeed && publishes:
		return a, usererr.BadInput(`use agent.source "url" (or leave it unset) for provider `+p.Name(),
			"agent.source \"seed\" needs a provider that boots from a seed ISO; %q does not", p.Name())
	}
	if a.src.Kind == cloudinit.AgentURL && a.src.URL == "" && !publishes {
		return a, usererr.BadInput("set agent.url and agent.sha256", "provider %q does not host the agent binary", p.Name())
	}
	a.pub = pub
	if a.src.Kind == cloudinit.AgentSeed || (a.src.Kind == cloudinit.AgentURL && a.src.URL == "") {
		var err error
		if a.binary, err = m.agentBinary(); err != nil {
			return a, err
		}
	}
	return a, nil
}

// userCloudInit returns the user's extra cloud-config and replacement
// template (nil when not configured).
func (m *Manager) userCloudInit() (extra, tmpl []byte, err error) {
	if m.Cfg.CloudInit.Extra != "" {
		extra = []byte(m.Cfg.CloudInit.Extra)
	}
	if m.Cfg.CloudInit.Template != "" {
		if tmpl, err = os.ReadFile(m.Cfg.CloudInit.Template); err != nil {
			return nil, nil, usererr.BadInput("point cloudinit.template at a readable file", "cloudinit.template: %w", err)
		}
	}
	return extra, tmpl, nil
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

// renderArgs is what one node's cloud-init is rendered from.
type renderArgs struct {
	node Node
	// cidr is the network the agent advertises its address in (invalid:
	// none); bits is the prefix length of node.Address on the cluster
	// network (AddressChooser providers).
	cidr netip.Prefix
	bits int
	ca   *pki.CA // the CA the node trusts
	// peers and seeds are every node with a known address, this one
	// included (renderInput leaves it out).
	peers       []cloudinit.Peer
	seeds       []string
	agent       cloudinit.AgentSource
	extra, tmpl []byte
	outboundMAC string
}

// renderInput builds the cloud-init input (and the agent's config) for a node.
func (m *Manager) renderInput(a renderArgs) (cloudinit.Input, error) {
	n := a.node
	var others []cloudinit.Peer
	for _, p := range a.peers {
		if p.Name != n.Name {
			others = append(others, p)
		}
	}
	var seedList []string
	self := ""
	if n.Address != "" {
		self = gossipAddr(n.Address, m.Cfg.Gossip.Port)
	}
	for _, s := range a.seeds {
		if s != self {
			seedList = append(seedList, s)
		}
	}
	ac := agentconfig.Config{
		Cluster:   m.Cluster,
		Name:      n.Name,
		Nonce:     n.Nonce,
		Provider:  n.Provider,
		Tags:      m.tags(),
		AppRole:   n.Role,
		Handlers:  m.Cfg.agentHandlers(),
		Port:      m.Cfg.Gossip.Port,
		Seeds:     seedList,
		HostsFile: cloudinit.AgentHostsPath,
		Domain:    m.Cfg.DomainFor(m.Cluster),
	}
	in := cloudinit.Input{
		Cluster:     m.Cluster,
		Name:        n.Name,
		Domain:      m.Cfg.DomainFor(m.Cluster),
		InstanceID:  fmt.Sprintf("%s-%s-%s", m.Cluster, n.Name, n.Nonce[:8]),
		MAC:         n.MAC,
		OutboundMAC: a.outboundMAC,
		Peers:       others,
		Agent:       a.agent,
		Extra:       a.extra,
		Template:    a.tmpl,
	}
	if n.Address != "" {
		addr, err := netip.ParseAddr(n.Address)
		if err != nil {
			return in, fmt.Errorf("node %q: address %q: %w", n.Name, n.Address, err)
		}
		in.Address = netip.PrefixFrom(addr, a.bits)
	}
	if a.cidr.IsValid() {
		ac.AdvertiseCIDR = a.cidr.Masked().String()
	}
	// No long-lived secret: the node makes its own TLS, identity and SSH
	// host keys and enrols with its bootstrap token over the API, where it
	// gets its certificate, identity grant and the gossip keyring
	// (enrol.go). It trusts the CA's certificate.
	caPEM := string(a.ca.CertPEM())
	ac.API = agentconfig.APIConfig{Port: m.Cfg.API.Port, CA: caPEM}
	ac.Identity = agentconfig.IdentityConfig{CA: caPEM}
	ac.Enrol = &agentconfig.EnrolConfig{Token: n.EnrolToken, Expires: n.EnrolExpires}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(ac); err != nil {
		return in, fmt.Errorf("encode agent config: %w", err)
	}
	in.AgentConfig = buf.Bytes()
	return in, nil
}

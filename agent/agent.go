package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/serf/serf"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/atomicfile"
	"github.com/clusterctl/clusterctl/internal/identity"
	"github.com/clusterctl/clusterctl/internal/ratelog"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// options are the in-process knobs tests use; the gossip timings are in
// Config.Timing, where the product sets them too.
type options struct {
	joinMin, joinMax time.Duration // join retry backoff while never joined or alone
	rejoinInterval   time.Duration // how often a joined agent checks whether it is alone
	advertiseWait    time.Duration // bound on waiting for an address in advertise_cidr
	advertisePoll    time.Duration
	interfaceAddrs   func() ([]net.Addr, error)
	tune             func(*serf.Config) // extra serf settings
	onJoined         func(time.Time)    // called when a join succeeded
	hostsWritten     func()             // called after each hosts file write
	// handlerStarted is called as each handler run starts (latency
	// harness); handlerRetry replaces the wait before a retry.
	handlerStarted func(event string, members []AppMember, learnt time.Time)
	handlerRetry   time.Duration
}

func defaultOptions() options {
	return options{
		joinMin:        time.Second,
		joinMax:        4 * time.Second,
		rejoinInterval: 5 * time.Second,
		advertiseWait:  5 * time.Minute,
		advertisePoll:  time.Second,
		interfaceAddrs: net.InterfaceAddrs,
	}
}

// Agent is the clusterctl agent of one node: a serf member that publishes
// the node's Meta as tags, joins its seeds (or the members of its
// snapshot), reconnects to failed members so partitions heal, and, if
// configured, keeps the hosts file up to date. It implements
// nodeapi.Membership once Run has started it.
type Agent struct {
	cfg      agentconfig.Config
	creds    identity.Credentials
	verifier *identity.Verifier
	// enrolment is the node's bootstrap (nil when its config carries its
	// credentials); creds are set once it is enrolled.
	enrolment *enrolment
	refusals  *ratelog.Table
	tags      map[string]string // without the id tag
	logger    *slog.Logger
	opts      options
	leave     chan struct{} // a valid leave request arrived
	left      chan struct{} // closed once a requested leave went out

	mu    sync.Mutex
	g     *gossip
	hs    *handlers  // the event handlers, once Run started them (applications.go)
	keyMu sync.Mutex // one keyring operation at a time
}

// New checks cfg and prepares an agent; Run starts it. A nil logger
// discards logs.
func New(cfg agentconfig.Config, logger *slog.Logger) (*Agent, error) {
	return newAgent(cfg, logger, defaultOptions())
}

func newAgent(cfg agentconfig.Config, logger *slog.Logger, opts options) (*Agent, error) {
	if logger == nil {
		logger = discardLogger()
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	hostname, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	meta := agentconfig.Meta{
		Cluster:    cfg.Cluster,
		Name:       cfg.Name,
		Nonce:      cfg.Nonce,
		Provider:   cfg.Provider,
		InstanceID: cfg.InstanceID,
		Hostname:   hostname,
		Role:       agentconfig.RoleNode,
		AppRole:    cfg.AppRole,
		Tags:       cfg.Tags,
	}
	tags, err := meta.SerfTags()
	if err != nil {
		return nil, err
	}
	// The id tag is added once the advertised address is known; its size
	// is fixed, so the budget is checked now.
	if err := meta.CheckBudget(); err != nil {
		return nil, err
	}
	verifier, err := cfg.Verifier()
	if err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	a := &Agent{
		cfg:      cfg,
		verifier: verifier,
		refusals: newRefusalLog(refusalInterval),
		tags:     tags,
		logger:   logger.With("node", cfg.Name),
		opts:     opts,
		leave:    make(chan struct{}, 1),
		left:     make(chan struct{}),
	}
	if cfg.Enrol != nil {
		if a.enrolment, err = loadEnrolment(cfg, a); err != nil {
			return nil, fmt.Errorf("enrolment: %w", err)
		}
	}
	return a, nil
}

// Run runs the agent until ctx ends or a leave is requested (Leave,
// through the node API), and returns nil then; a node that enrols first
// waits for its enrolment. When ctx ends (SIGTERM:
// systemd stopping the agent, the machine rebooting) the agent stops
// without leaving: the others see it fail and reconnect when it is back,
// and it rejoins from its snapshot. A requested leave is for good: the
// leave is announced and recorded in the snapshot, so neither this node
// nor the others ever reconnect. Run returns an error when it cannot start
// (no address in advertise_cidr, port in use, state directory unusable).
func (a *Agent) Run(ctx context.Context) error {
	if err := a.awaitEnrolment(ctx); err != nil {
		return nil // stopped before it was enrolled
	}
	if a.enrolment != nil {
		a.enrolment.apply(&a.cfg)
	}
	var err error
	if a.creds, err = a.cfg.IdentityCredentials(); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	addr, err := a.advertiseAddr(ctx)
	if err != nil {
		return err
	}
	st, err := prepareState(a.cfg, a.logger)
	if err != nil {
		return err
	}
	tags := maps.Clone(a.tags)
	if tags[agentconfig.TagID], err = a.creds.Tag(addr, a.tags); err != nil {
		return err
	}
	g, err := startGossip(gossipConfig{
		name:          a.cfg.Name,
		cluster:       a.cfg.Cluster,
		tags:          tags,
		keyring:       st.keyring,
		bindAddr:      a.cfg.BindAddr,
		port:          a.cfg.Port,
		advertiseAddr: addr.String(),
		timing:        a.cfg.Timing,
		snapshotPath:  st.snapshotPath,
		keyringFile:   st.keyringPath,
		logger:        a.logger,
		tune:          a.opts.tune,
		verifier:      a.verifier,
		refused:       a.refusedMember,
		dropped:       a.droppedQuery,
	})
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.g = g
	a.mu.Unlock()
	local := g.serf.LocalMember()
	a.logger.Info("gossip started", "addr", local.Addr.String(), "port", local.Port, "cluster", a.cfg.Cluster, "nonce", a.cfg.Nonce, "seeds", a.cfg.Seeds, "state_dir", a.cfg.StateDir)

	peers := peersPath(a.cfg)
	remembered := a.readPeers(peers)
	loopCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); a.joinLoop(loopCtx, g, remembered) }()
	if peers != "" {
		wg.Add(1)
		go func() { defer wg.Done(); a.rememberLoop(loopCtx, g.table, peers) }()
	}
	if a.cfg.HostsFile != "" {
		wg.Add(1)
		go func() { defer wg.Done(); a.hostsLoop(loopCtx, g.table) }()
	}
	if err := a.startApplications(loopCtx, &wg, g.table, addr); err != nil {
		stop()
		wg.Wait()
		g.shutdown()
		return err
	}

	requested := false
	var runErr error
	select {
	case <-ctx.Done():
		a.logger.Info("stopping without leaving: the others reconnect when this node is back", "reason", context.Cause(ctx))
	case <-a.leave:
		requested = true
		a.logger.Info("leave requested: leaving the cluster for good")
	case <-g.serf.ShutdownCh():
		// serf stops itself when it loses a name conflict, among others;
		// a process that went on would serve a frozen view.
		runErr = serfStopped(g.serf)
		a.logger.Error("gossip stopped by itself", "err", runErr)
	}
	stop()
	wg.Wait()
	if requested {
		// Gone for good: a restarted agent must not rejoin anyone.
		if peers != "" {
			if err := os.Remove(peers); err != nil && !os.IsNotExist(err) {
				a.logger.Warn("remove the remembered members", "err", err)
			}
		}
		if err := g.leave(); err != nil {
			a.logger.Warn("leave was not confirmed; shutting down anyway", "err", err)
		}
		close(a.left)
	}
	if err := g.shutdown(); err != nil {
		a.logger.Warn("gossip shutdown", "err", err)
	}
	if requested {
		a.logger.Info("left the cluster")
	}
	return runErr
}

// advertiseAddr returns advertise_addr, or waits (bounded) until an
// interface has an address inside advertise_cidr.
func (a *Agent) advertiseAddr(ctx context.Context) (netip.Addr, error) {
	if a.cfg.AdvertiseAddr != "" {
		return netip.ParseAddr(a.cfg.AdvertiseAddr)
	}
	prefix, err := netip.ParsePrefix(a.cfg.AdvertiseCIDR)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("advertise_cidr %q: %w", a.cfg.AdvertiseCIDR, err)
	}
	ctx, cancel := context.WithTimeout(ctx, a.opts.advertiseWait)
	defer cancel()
	logged := false
	for {
		addrs, err := a.opts.interfaceAddrs()
		if err != nil {
			a.logger.Warn("list interface addresses", "err", err)
		}
		for _, ad := range addrs {
			if ipn, ok := ad.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok && prefix.Contains(ip.Unmap()) {
					return ip.Unmap(), nil
				}
			}
		}
		if !logged {
			a.logger.Info("waiting for an interface address", "advertise_cidr", a.cfg.AdvertiseCIDR)
			logged = true
		}
		select {
		case <-ctx.Done():
			return netip.Addr{}, fmt.Errorf("no interface has an address in advertise_cidr %q after %s", a.cfg.AdvertiseCIDR, a.opts.advertiseWait)
		case <-time.After(a.opts.advertisePoll):
		}
	}
}

// joinLoop joins the seeds, retrying with a backoff capped at joinMax
// (1, 2, 4, 4, ... s, each up to 20 % longer at random) until a join
// succeeds; then, every rejoinInterval, it checks whether any other node is
// alive, and while none is it rejoins the seeds and the members remembered
// from before a restart, with the same backoff. Everything else (partitions,
// members that failed) is serf's work: it rejoins the members of its
// snapshot at start and reconnects to failed members.
//
// The cap is short on purpose: in a batch, only the seeds know a node
// that never joined (serf reconnects only to members once seen alive), so
// a long backoff after a join that failed under load (30 s, as before)
// left a node outside for up to 1+2+4+8+16+30+30 s.
//
// The remembered members back up serf's snapshot, which is not crash
// safe: serf buffers its lines and flushes only when a line comes more
// than 500 ms after the last flush, so after kill -9 or a power cut the
// members that joined in one burst (a batch) may be missing from it, and
// serf then rejoins nobody (docs/benchmarks.md).
func (a *Agent) joinLoop(ctx context.Context, g *gossip, remembered []string) {
	targets := union(a.cfg.Seeds, remembered)
	if len(targets) == 0 {
		a.logger.Info("no seeds and no remembered members: waiting to be joined")
		return
	}
	first := a.opts.rejoinInterval
	if len(a.cfg.Seeds) > 0 {
		if !a.joinSeeds(ctx, g, a.cfg.Seeds, "join") {
			return
		}
	} else {
		a.logger.Info("no seeds: rejoining the members of the snapshot", "remembered", len(remembered))
		first = a.opts.joinMin // soon: serf's snapshot may have lost them
	}
	for wait := first; sleep(ctx, wait); wait = a.opts.rejoinInterval {
		if g.table.aliveOthers(a.cfg.Name) > 0 {
			continue
		}
		a.logger.Warn("alone in the cluster; rejoining the seeds and remembered members", "seeds", len(a.cfg.Seeds), "remembered", len(remembered))
		if !a.joinSeeds(ctx, g, targets, "rejoin") {
			return
		}
	}
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// joinSeeds tries seeds until a join succeeds or another node shows
// up alive (someone joined us), or ctx ends (it returns false then).
func (a *Agent) joinSeeds(ctx context.Context, g *gossip, seeds []string, what string) bool {
	b := backoff{min: a.opts.joinMin, max: a.opts.joinMax}
	for attempt := 1; ; attempt++ {
		n, err := g.join(seeds)
		if err == nil {
			a.logger.Info("joined the cluster", "seeds_reached", n, "attempts", attempt, "what", what)
			if a.opts.onJoined != nil {
				a.opts.onJoined(time.Now())
			}
			return true
		}
		d := b.next()
		a.logger.Warn("join failed; retrying", "err", err, "attempt", attempt, "retry_in", d.Round(time.Millisecond), "what", what)
		if !sleep(ctx, d) {
			return false
		}
		if others := g.table.aliveOthers(a.cfg.Name); others > 0 {
			a.logger.Info("joined by another member; no longer retrying the seeds", "alive_others", others)
			return true
		}
	}
}

// backoff yields retry delays: min, 2×min, ... up to max, each lengthened
// by up to 20 % at random, so that the nodes of a batch whose first join
// failed together do not retry together.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return jitter(b.cur)
}

// peersFile, in the state directory, lists the addresses of the other
// nodes this agent last knew (not those that left), with the identity of
// the incarnation that wrote it.
const peersFile = "peers.json"

type rememberedPeers struct {
	Cluster string   `json:"cluster"`
	Name    string   `json:"name"`
	Nonce   string   `json:"nonce"`
	Peers   []string `json:"peers"` // "addr:port"
}

func peersPath(cfg agentconfig.Config) string {
	if cfg.StateDir == "" {
		return ""
	}
	return filepath.Join(cfg.StateDir, peersFile)
}

// readPeers returns the remembered members of this incarnation; a missing
// file, another incarnation's or an unreadable one gives none (logged).
func (a *Agent) readPeers(path string) []string {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	var r rememberedPeers
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil {
		a.logger.Warn("the remembered members are unreadable; ignoring them", "path", path, "err", err)
		return nil
	}
	if r.Cluster != a.cfg.Cluster || r.Name != a.cfg.Name || r.Nonce != a.cfg.Nonce {
		a.logger.Warn("the remembered members belong to another cluster, node or incarnation; ignoring them", "path", path)
		return nil
	}
	return r.Peers
}

// rememberLoop writes the addresses of the other nodes (every state but
// left) to path whenever they change (the first change at once, then at
// most once per rememberDebounce),
// atomically and synced (mode 0600), so a crash keeps them. It never
// writes an empty list: a node that sees everyone failed keeps them.
func (a *Agent) rememberLoop(ctx context.Context, table *memberTable, path string) {
	var last []string
	for {
		wrote := false
		members, changed := table.snapshot(agentconfig.RoleNode)
		var peers []string
		for _, m := range members {
			if m.Name != a.cfg.Name && m.State != nodeapi.StatusLeft && m.Addr != "" {
				peers = append(peers, net.JoinHostPort(m.Addr, strconv.Itoa(m.Port)))
			}
		}
		slices.Sort(peers)
		if len(peers) > 0 && !slices.Equal(peers, last) {
			b, _ := json.Marshal(rememberedPeers{Cluster: a.cfg.Cluster, Name: a.cfg.Name, Nonce: a.cfg.Nonce, Peers: peers})
			if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
				a.logger.Warn("remember the members", "err", err)
			} else {
				last, wrote = peers, true
			}
		}
		if wrote && !sleep(ctx, rememberDebounce) { // the first change is written at once
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// rememberDebounce bounds how often the remembered members are written.
const rememberDebounce = time.Second

// hostsLoop rewrites the hosts file after every membership change. It
// lists nodes that are alive, suspect, leaving or failed: a failed node may
// be behind a partition that heals, and its name has only this address.
// Nodes that left, and failed nodes once reaped, are dropped.
func (a *Agent) hostsLoop(ctx context.Context, table *memberTable) {
	var last []HostEntry
	first := true
	for {
		members, changed := table.snapshot(agentconfig.RoleNode)
		var entries []HostEntry
		for _, m := range members {
			if InHostsFile(m.State) {
				entries = append(entries, HostEntry{Addr: m.Addr, Name: m.Name})
			}
		}
		if first || !equalEntries(entries, last) {
			wrote, err := WriteHostsFile(a.cfg.HostsFile, a.cfg.Domain, entries)
			switch {
			case err != nil:
				a.logger.Error("update hosts file", "err", err)
			case wrote:
				a.logger.Info("hosts file updated", "path", a.cfg.HostsFile, "nodes", len(entries))
			}
			if err == nil {
				last, first = entries, false
				if a.opts.hostsWritten != nil {
					a.opts.hostsWritten()
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// InHostsFile reports whether a node in state has a line in /etc/hosts:
// every state but left.
func InHostsFile(state nodeapi.MemberStatus) bool { return state != nodeapi.StatusLeft }

func equalEntries(a, b []HostEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (a *Agent) requestLeave() {
	select {
	case a.leave <- struct{}{}:
	default: // one is already pending
	}
}

// gossipOrErr returns the running gossip member.
func (a *Agent) gossipOrErr() (*gossip, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.g == nil {
		return nil, errNotStarted
	}
	return a.g, nil
}

// localAddr returns the address and port the agent advertises.
func (a *Agent) localAddr() (string, int, error) {
	g, err := a.gossipOrErr()
	if err != nil {
		return "", 0, err
	}
	m := g.serf.LocalMember()
	return m.Addr.String(), int(m.Port), nil
}

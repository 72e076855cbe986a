package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/serf/serf"
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
	cfg    Config
	tags   map[string]string
	logger *slog.Logger
	opts   options
	leave  chan struct{} // a valid leave request arrived
	left   chan struct{} // closed once a requested leave went out

	mu sync.Mutex
	g  *gossip
}

// New checks cfg and prepares an agent; Run starts it. A nil logger
// discards logs.
func New(cfg Config, logger *slog.Logger) (*Agent, error) {
	return newAgent(cfg, logger, defaultOptions())
}

func newAgent(cfg Config, logger *slog.Logger, opts options) (*Agent, error) {
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
	tags, err := Meta{
		Cluster:    cfg.Cluster,
		Name:       cfg.Name,
		Nonce:      cfg.Nonce,
		Provider:   cfg.Provider,
		InstanceID: cfg.InstanceID,
		Hostname:   hostname,
		Role:       RoleNode,
		Tags:       cfg.Tags,
	}.SerfTags()
	if err != nil {
		return nil, err
	}
	return &Agent{
		cfg:    cfg,
		tags:   tags,
		logger: logger.With("node", cfg.Name),
		opts:   opts,
		leave:  make(chan struct{}, 1),
		left:   make(chan struct{}),
	}, nil
}

// Run runs the agent until ctx ends or a leave is requested (by an
// observer's query or Leave), and returns nil then. When ctx ends (SIGTERM:
// systemd stopping the agent, the machine rebooting) the agent stops
// without leaving: the others see it fail and reconnect when it is back,
// and it rejoins from its snapshot. A requested leave is for good: the
// leave is announced and recorded in the snapshot, so neither this node
// nor the others ever reconnect. Run returns an error when it cannot start
// (no address in advertise_cidr, port in use, state directory unusable).
func (a *Agent) Run(ctx context.Context) error {
	addr, err := a.advertiseAddr(ctx)
	if err != nil {
		return err
	}
	st, err := prepareState(a.cfg, a.logger)
	if err != nil {
		return err
	}
	g, err := startGossip(gossipConfig{
		name:          a.cfg.Name,
		cluster:       a.cfg.Cluster,
		tags:          a.tags,
		keyring:       st.keyring,
		bindAddr:      a.cfg.BindAddr,
		port:          a.cfg.Port,
		advertiseAddr: addr.String(),
		timing:        a.cfg.Timing,
		snapshotPath:  st.snapshotPath,
		keyringFile:   st.keyringPath,
		logger:        a.logger,
		onQuery:       a.onQuery,
		tune:          a.opts.tune,
	})
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.g = g
	a.mu.Unlock()
	local := g.serf.LocalMember()
	a.logger.Info("gossip started", "addr", local.Addr.String(), "port", local.Port, "cluster", a.cfg.Cluster, "nonce", a.cfg.Nonce, "seeds", a.cfg.Seeds, "state_dir", a.cfg.StateDir)

	loopCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); a.joinLoop(loopCtx, g) }()
	if a.cfg.HostsFile != "" {
		wg.Add(1)
		go func() { defer wg.Done(); a.hostsLoop(loopCtx, g.table) }()
	}

	requested := false
	select {
	case <-ctx.Done():
		a.logger.Info("stopping without leaving: the others reconnect when this node is back", "reason", context.Cause(ctx))
	case <-a.leave:
		requested = true
		a.logger.Info("leave requested: leaving the cluster for good")
	}
	stop()
	wg.Wait()
	if requested {
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
	return nil
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
// alive, and while none is it rejoins the seeds with the same backoff.
// Everything else (members it knew before a restart, partitions) is serf's
// work: it rejoins the snapshot's members at start and reconnects to
// failed members.
//
// The cap is short on purpose: in a batch, only the seeds know a node
// that never joined (serf reconnects only to members once seen alive), so
// a long backoff after a join that failed under load (30 s, as before)
// left a node outside for up to 1+2+4+8+16+30+30 s.
func (a *Agent) joinLoop(ctx context.Context, g *gossip) {
	if len(a.cfg.Seeds) == 0 {
		a.logger.Info("no seeds: waiting to be joined (or rejoining the members of the snapshot)")
		return
	}
	if !a.joinSeeds(ctx, g, "join") {
		return
	}
	for sleep(ctx, a.opts.rejoinInterval) {
		if g.table.aliveOthers(a.cfg.Name) > 0 {
			continue
		}
		a.logger.Warn("alone in the cluster; rejoining the seeds")
		if !a.joinSeeds(ctx, g, "rejoin") {
			return
		}
	}
}

// joinSeeds tries the seeds until a join succeeds or another node shows
// up alive (someone joined us), or ctx ends (it returns false then).
func (a *Agent) joinSeeds(ctx context.Context, g *gossip, what string) bool {
	b := backoff{min: a.opts.joinMin, max: a.opts.joinMax}
	for attempt := 1; ; attempt++ {
		n, err := g.join(a.cfg.Seeds)
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

// hostsLoop rewrites the hosts file after every membership change. It
// lists nodes that are alive, suspect, leaving or failed: a failed node may
// be behind a partition that heals, and its name has only this address.
// Nodes that left, and failed nodes once reaped, are dropped.
func (a *Agent) hostsLoop(ctx context.Context, table *memberTable) {
	var last []HostEntry
	first := true
	for {
		members, changed := table.snapshot(RoleNode)
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
func InHostsFile(state string) bool { return state != StateLeft }

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

// leaveQuery is the serf query an observer sends (to one node, by name) to
// ask it to leave for good. The payload names the node and its nonce, so a
// request meant for an older incarnation is refused.
const leaveQuery = "clusterctl-leave"

type leaveRequest struct {
	Name  string `json:"name"`
	Nonce string `json:"nonce"`
}

// Answers to a leave query.
const (
	leaveOK         = "ok"
	leaveWrongNonce = "wrong-nonce"
)

// onQuery answers the leave query; serf calls it from the event loop.
func (a *Agent) onQuery(q *serf.Query) {
	if q.Name != leaveQuery {
		return
	}
	var req leaveRequest
	if err := json.Unmarshal(q.Payload, &req); err != nil || req.Name != a.cfg.Name {
		a.logger.Warn("ignored a malformed leave request", "from", q.SourceNode())
		return
	}
	if req.Nonce != a.cfg.Nonce {
		a.logger.Warn("refused a leave request for another incarnation", "for_nonce", req.Nonce, "from", q.SourceNode())
		_ = q.Respond([]byte(leaveWrongNonce))
		return
	}
	if err := q.Respond([]byte(leaveOK)); err != nil {
		a.logger.Warn("answer to a leave request", "err", err)
	}
	a.requestLeave()
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

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
	joinMin, joinMax time.Duration // join retry backoff
	rejoinInterval   time.Duration // how often a lone agent rejoins its seeds
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
		joinMax:        30 * time.Second,
		rejoinInterval: 30 * time.Second,
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

// joinLoop joins the seeds with exponential backoff until a join succeeds;
// then, every rejoinInterval, it rejoins them when no other node is alive.
// Everything else (members it knew before a restart, partitions) is serf's
// work: it rejoins the snapshot's members at start and reconnects to
// failed members.
func (a *Agent) joinLoop(ctx context.Context, g *gossip) {
	if len(a.cfg.Seeds) == 0 {
		a.logger.Info("no seeds: waiting to be joined (or rejoining the members of the snapshot)")
		return
	}
	delay := a.opts.joinMin
	for attempt := 1; ; attempt++ {
		n, err := g.join(a.cfg.Seeds)
		if err == nil {
			a.logger.Info("joined the cluster", "seeds_reached", n, "attempts", attempt)
			if a.opts.onJoined != nil {
				a.opts.onJoined(time.Now())
			}
			break
		}
		a.logger.Warn("join failed; retrying", "err", err, "attempt", attempt, "retry_in", delay)
		if !sleep(ctx, jitter(delay)) {
			return
		}
		delay = min(2*delay, a.opts.joinMax)
	}
	for sleep(ctx, a.opts.rejoinInterval) {
		if g.table.aliveOthers(a.cfg.Name) > 0 {
			continue
		}
		n, err := g.join(a.cfg.Seeds)
		if err != nil {
			a.logger.Warn("alone in the cluster; rejoining the seeds failed", "err", err)
			continue
		}
		a.logger.Info("alone in the cluster; rejoined the seeds", "seeds_reached", n)
	}
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

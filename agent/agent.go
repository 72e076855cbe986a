package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// options are the timings an Agent uses; tests make them shorter.
type options struct {
	joinMin, joinMax time.Duration // join retry backoff
	rejoinInterval   time.Duration // how often a lone agent rejoins its seeds
	leaveTimeout     time.Duration // bound on the leave broadcast
	advertiseWait    time.Duration // bound on waiting for an address in advertise_cidr
	advertisePoll    time.Duration
	deadReclaim      time.Duration
	interfaceAddrs   func() ([]net.Addr, error)
	tune             func(*memberlist.Config) // extra memberlist settings
	onJoined         func(time.Time)          // called when a join succeeded
	hostsWritten     func()                   // called after each hosts file write
	crashOnCancel    bool                     // tests: on ctx end, stop without leaving (like a power cut)
}

func defaultOptions() options {
	return options{
		joinMin:        time.Second,
		joinMax:        30 * time.Second,
		rejoinInterval: 30 * time.Second,
		leaveTimeout:   5 * time.Second,
		advertiseWait:  5 * time.Minute,
		advertisePoll:  time.Second,
		deadReclaim:    30 * time.Second,
		interfaceAddrs: net.InterfaceAddrs,
	}
}

// Agent is the clusterctl agent of one node: a memberlist member that
// publishes the node's Meta, keeps the seeds joined and, if configured, the
// hosts file up to date.
type Agent struct {
	cfg         Config
	meta        atomic.Pointer[[]byte] // encoded Meta; replaced when leaving
	leavingMeta []byte
	logger      *slog.Logger
	opts        options
	table       *memberTable
	leave       chan struct{} // a valid leave request arrived

	mu sync.Mutex
	ml *memberlist.Memberlist
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
	m := Meta{
		Cluster:    cfg.Cluster,
		Name:       cfg.Name,
		Nonce:      cfg.Nonce,
		Provider:   cfg.Provider,
		InstanceID: cfg.InstanceID,
		Hostname:   hostname,
		Role:       RoleNode,
		Tags:       cfg.Tags,
	}
	meta, err := EncodeMeta(m)
	if err != nil {
		return nil, err
	}
	m.Leaving = true
	leavingMeta, err := EncodeMeta(m)
	if err != nil {
		return nil, err
	}
	logger = logger.With("node", cfg.Name)
	a := &Agent{
		cfg:         cfg,
		leavingMeta: leavingMeta,
		logger:      logger,
		opts:        opts,
		table:       newMemberTable(cfg.Cluster, logger),
		leave:       make(chan struct{}, 1),
	}
	a.meta.Store(&meta)
	return a, nil
}

// Run runs the agent until ctx ends or an observer asks this node (by name
// and nonce) to leave. In both cases it leaves the cluster gracefully, shuts
// memberlist down and returns nil. It returns an error when it cannot start
// (no address in advertise_cidr, port in use, ...).
func (a *Agent) Run(ctx context.Context) error {
	addr, err := a.advertiseAddr(ctx)
	if err != nil {
		return err
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = a.cfg.Name
	mc.Label = a.cfg.Cluster
	mc.SecretKey = append([]byte(nil), a.cfg.Key...)
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	mc.BindAddr = a.cfg.BindAddr
	mc.BindPort = a.cfg.Port
	mc.AdvertiseAddr = addr.String()
	mc.AdvertisePort = a.cfg.Port
	mc.DeadNodeReclaimTime = a.opts.deadReclaim
	mc.Delegate = &nodeDelegate{a: a}
	mc.Events = a.table
	mc.Logger = memberlistLogger(a.logger)
	if a.opts.tune != nil {
		a.opts.tune(mc)
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("start gossip on %s:%d: %w", a.cfg.BindAddr, a.cfg.Port, err)
	}
	a.mu.Lock()
	a.ml = ml
	a.mu.Unlock()
	local := ml.LocalNode()
	a.logger.Info("gossip started", "addr", local.Addr.String(), "port", local.Port, "cluster", a.cfg.Cluster, "nonce", a.cfg.Nonce, "seeds", a.cfg.Seeds)

	loopCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); a.joinLoop(loopCtx, ml) }()
	if a.cfg.HostsFile != "" {
		wg.Add(1)
		go func() { defer wg.Done(); a.hostsLoop(loopCtx) }()
	}

	select {
	case <-ctx.Done():
		a.logger.Info("stopping: leaving the cluster", "reason", context.Cause(ctx))
	case <-a.leave:
		a.logger.Info("leave requested by an observer: leaving the cluster for good")
	}
	stop()
	if a.opts.crashOnCancel && ctx.Err() != nil {
		_ = ml.Shutdown()
		wg.Wait()
		return nil
	}
	// Announce the leave in the meta first, so that members can tell a
	// graceful leave ("left") from a failure ("dead").
	a.meta.Store(&a.leavingMeta)
	if err := ml.UpdateNode(a.opts.leaveTimeout); err != nil {
		a.logger.Warn("leaving announcement was not confirmed", "err", err)
	}
	if err := ml.Leave(a.opts.leaveTimeout); err != nil {
		a.logger.Warn("leave was not confirmed; shutting down anyway", "err", err)
	}
	if err := ml.Shutdown(); err != nil {
		a.logger.Warn("gossip shutdown", "err", err)
	}
	wg.Wait() // a join in progress fails fast once memberlist is shut down
	a.logger.Info("left the cluster")
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
// then, every rejoinInterval, it rejoins them when no other node is alive
// (the agent was cut off and everyone else declared it dead).
func (a *Agent) joinLoop(ctx context.Context, ml *memberlist.Memberlist) {
	if len(a.cfg.Seeds) == 0 {
		a.logger.Info("no seeds: this node starts the cluster")
		return
	}
	delay := a.opts.joinMin
	for attempt := 1; ; attempt++ {
		n, err := joinAny(ml, a.cfg.Seeds)
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
		if a.table.aliveOthers(a.cfg.Name) > 0 {
			continue
		}
		n, err := joinAny(ml, a.cfg.Seeds)
		if err != nil {
			a.logger.Warn("alone in the cluster; rejoining the seeds failed", "err", err)
			continue
		}
		a.logger.Info("alone in the cluster; rejoined the seeds", "seeds_reached", n)
	}
}

// jitter returns d plus up to 20%, so that many nodes do not retry in step.
// joinBatch is how many addresses one memberlist Join call gets.
// memberlist tries the addresses of one call one after the other, each
// bounded by its TCP timeout (10 s on a LAN), so a long seed list with
// machines still booting would take minutes; and one answering member is
// enough, since the join's state exchange brings the whole membership.
const joinBatch = 3

// joinAny joins through any of addrs: it tries them in random batches of
// joinBatch and returns after the first batch that reached a member, or
// with the errors of every batch.
func joinAny(ml *memberlist.Memberlist, addrs []string) (int, error) {
	addrs = append([]string(nil), addrs...)
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	var errs []error
	for len(addrs) > 0 {
		batch := addrs[:min(joinBatch, len(addrs))]
		addrs = addrs[len(batch):]
		n, err := ml.Join(batch)
		if err == nil && n > 0 {
			return n, nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return 0, errors.Join(errs...)
}

func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/5+1))
}

// sleep waits for d or ctx; it reports false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// hostsLoop rewrites the hosts file after every membership change.
func (a *Agent) hostsLoop(ctx context.Context) {
	var last []HostEntry
	first := true
	for {
		members, changed := a.table.snapshot(RoleNode)
		var entries []HostEntry
		for _, m := range members {
			if m.State == StateAlive {
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

// leaveRequest is the user message an observer sends to ask a node to
// leave. It names the node and its nonce, so a request meant for an older
// incarnation of the node is ignored.
type leaveRequest struct {
	Kind  string `json:"k"`
	Name  string `json:"n"`
	Nonce string `json:"o"`
}

const leaveKind = "leave"

func encodeLeaveRequest(name, nonce string) []byte {
	b, _ := json.Marshal(leaveRequest{Kind: leaveKind, Name: name, Nonce: nonce})
	return b
}

// nodeDelegate is the agent's memberlist.Delegate. memberlist calls it from
// its own goroutines; nothing here blocks.
type nodeDelegate struct{ a *Agent }

func (d *nodeDelegate) NodeMeta(limit int) []byte {
	meta := *d.a.meta.Load()
	if len(meta) > limit { // New checked MetaMaxSize; never happens
		return nil
	}
	return meta
}

func (d *nodeDelegate) NotifyMsg(b []byte) {
	var req leaveRequest
	if err := json.Unmarshal(b, &req); err != nil || req.Kind != leaveKind {
		d.a.logger.Warn("ignored an unknown user message", "bytes", len(b))
		return
	}
	if req.Name != d.a.cfg.Name || req.Nonce != d.a.cfg.Nonce {
		d.a.logger.Warn("ignored a leave request for another node or incarnation", "for_name", req.Name, "for_nonce", req.Nonce)
		return
	}
	select {
	case d.a.leave <- struct{}{}:
	default: // one is already pending
	}
}

func (d *nodeDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *nodeDelegate) LocalState(join bool) []byte                { return nil }
func (d *nodeDelegate) MergeRemoteState(buf []byte, join bool)     {}

var errNotStarted = errors.New("agent not started")

// localAddr returns the address and port memberlist advertises.
func (a *Agent) localAddr() (string, int, error) {
	a.mu.Lock()
	ml := a.ml
	a.mu.Unlock()
	if ml == nil {
		return "", 0, errNotStarted
	}
	n := ml.LocalNode()
	return n.Addr.String(), int(n.Port), nil
}

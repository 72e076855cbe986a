package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/identity"
)

// gossipConfig is one serf member's settings.
type gossipConfig struct {
	name, cluster string
	tags          map[string]string
	keyring       *memberlist.Keyring
	bindAddr      string
	port          int
	advertiseAddr string
	timing        agentconfig.Timing
	snapshotPath  string // "" = no snapshot
	keyringFile   string // "" = keyring in memory only
	logger        *slog.Logger
	tune          func(*serf.Config)
	verifier      *identity.Verifier                 // admits members (memberGate)
	refused       func(name, addr string, err error) // a member that did not verify
	dropped       func(query string)                 // a keyring query that came over gossip
}

// gossip is a running serf member with its member table.
type gossip struct {
	serf        *serf.Serf
	keyring     *memberlist.Keyring // memberlist's: changed only by the node API
	keyringPath string              // where it is kept ("" = memory only)
	table       *memberTable
	logger      *slog.Logger
	timing      agentconfig.Timing
	stop        context.CancelFunc
	wg          sync.WaitGroup
}

// refreshInterval is how often the member table is rebuilt from serf even
// without an event (serf marks a member "leaving" without one).
const refreshInterval = 500 * time.Millisecond

// startGossip creates the serf member (not yet joined to anyone). A
// snapshot serf cannot open is removed, with a warning, and the member
// starts without it.
func startGossip(cfg gossipConfig) (*gossip, error) {
	g := &gossip{table: newMemberTable(cfg.cluster, cfg.logger), logger: cfg.logger, timing: cfg.timing.WithDefaults(),
		keyring: cfg.keyring, keyringPath: cfg.keyringFile}
	events := make(chan serf.Event, 1024)
	mlLogger := gossipLogger(cfg.logger.With("component", "memberlist"), g.table)
	create := func() (*serf.Serf, error) {
		tr, err := newGatedTransport(cfg.bindAddr, cfg.port, mlLogger)
		if err != nil {
			return nil, err
		}
		port := tr.GetAutoBindPort()
		sc := serf.DefaultConfig()
		sc.NodeName = cfg.name
		sc.Tags = maps.Clone(cfg.tags)
		sc.EventCh = events
		sc.LogOutput = nil
		sc.Logger = gossipLogger(cfg.logger.With("component", "serf"), g.table)
		sc.SnapshotPath = cfg.snapshotPath
		sc.KeyringFile = ""         // written by the agent only (keyOp); serf's key queries are dropped
		sc.RejoinAfterLeave = false // a member that left on purpose is never brought back
		sc.EnableNameConflictResolution = true
		mc := sc.MemberlistConfig
		sc.Merge = &memberGate{verifier: cfg.verifier, refused: cfg.refused, onFirst: func() {
			// memberlist.Create's own alive: serf has set its delegate and
			// nothing has read it yet (see guard.go).
			mc.Delegate = &msgGuard{Delegate: mc.Delegate, dropped: cfg.dropped}
			tr.open()
		}}
		mc.Name = cfg.name
		mc.Label = cfg.cluster
		mc.Keyring = cfg.keyring
		mc.SecretKey = nil
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
		mc.Transport = tr
		mc.BindAddr = cfg.bindAddr
		mc.BindPort = port
		mc.AdvertiseAddr = cfg.advertiseAddr
		mc.AdvertisePort = port
		mc.Logger = mlLogger
		mc.LogOutput = nil
		ApplyTiming(cfg.timing, sc)
		if cfg.tune != nil {
			cfg.tune(sc)
		}
		s, err := serf.Create(sc)
		if err != nil {
			_ = tr.Shutdown()
		}
		return s, err
	}
	s, err := create()
	if err != nil && cfg.snapshotPath != "" && strings.Contains(err.Error(), "snapshot") {
		cfg.logger.Warn("the snapshot of known members cannot be used; starting without it", "path", cfg.snapshotPath, "err", err)
		if rerr := os.RemoveAll(cfg.snapshotPath); rerr != nil {
			return nil, fmt.Errorf("remove unusable snapshot %q: %w (after: %v)", cfg.snapshotPath, rerr, err)
		}
		s, err = create()
	}
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s:%d: %w", cfg.bindAddr, cfg.port, err)
	}
	g.serf = s
	// The table holds this member before anyone can subscribe to it, so
	// that no subscriber (the API, the event handlers) sees the node's own
	// start as a join.
	g.table.refresh(s.Members())
	ctx, cancel := context.WithCancel(context.Background())
	g.stop = cancel
	g.wg.Add(2)
	go func() { defer g.wg.Done(); g.eventLoop(ctx, events) }()
	go func() { defer g.wg.Done(); g.suspicionLoop(ctx) }()
	return g, nil
}

// eventLoop drains serf's events (serf blocks on a full channel) and
// rebuilds the member table after each batch of member events.
func (g *gossip) eventLoop(ctx context.Context, events <-chan serf.Event) {
	tick := time.NewTicker(refreshInterval)
	defer tick.Stop()
	for {
		dirty := false
		select {
		case <-ctx.Done():
			return
		case e := <-events:
			dirty = g.handle(e)
		case <-tick.C:
			dirty = true
		}
		for more := true; more; { // take what is queued, then refresh once
			select {
			case e := <-events:
				dirty = g.handle(e) || dirty
			default:
				more = false
			}
		}
		if dirty {
			g.table.refresh(g.serf.Members())
		}
	}
}

// handle notes what a member event says. Queries and user events are
// ignored, serf's keyring queries never get this far (guard.go), and only
// members with a verified identity are members at all: a leave and a key
// change come only through the mutually authenticated API.
func (g *gossip) handle(e serf.Event) bool {
	if e, ok := e.(serf.MemberEvent); ok {
		if e.Type == serf.EventMemberUpdate || e.Type == serf.EventMemberJoin {
			for _, m := range e.Members { // it spoke: whatever we suspected is over
				g.table.clearSuspect(m.Name)
			}
		}
		return true
	}
	return false
}

// suspicionLoop pings, once per probe interval, the members this member
// suspects; one that answers is no longer suspected. (Serf declares the
// others failed after the suspicion timeout.)
func (g *gossip) suspicionLoop(ctx context.Context) {
	for sleep(ctx, time.Duration(g.timing.ProbeInterval)) {
		for _, m := range g.table.suspects() {
			ip := net.ParseIP(m.Addr)
			if ip == nil {
				continue
			}
			if _, err := g.serf.Memberlist().Ping(m.Name, &net.UDPAddr{IP: ip, Port: m.Port}); err == nil {
				g.table.clearSuspect(m.Name)
			}
		}
	}
}

// join joins through any of addrs (see joinAny).
func (g *gossip) join(addrs []string) (int, error) {
	return joinAny(func(batch []string) (int, error) { return g.serf.Join(batch, true) }, addrs)
}

// leave announces a graceful leave and waits (bounded by serf's broadcast
// timeout) for it to go out.
func (g *gossip) leave() error { return g.serf.Leave() }

// shutdown stops the member without leaving (others see it fail) and
// waits for its goroutines.
func (g *gossip) shutdown() error {
	err := g.serf.Shutdown()
	g.stop()
	g.wg.Wait()
	return err
}

// joinBatch is how many addresses one join call gets. memberlist tries
// the addresses of one call one after the other, each bounded by its TCP
// timeout, so a long seed list with machines still booting would take
// minutes; and one answering member is enough, since the join's state
// exchange brings the whole membership.
const joinBatch = 3

// joinAny joins through any of addrs: it tries them in random batches of
// joinBatch and returns after the first batch that reached a member, or
// with the errors of every batch.
func joinAny(join func([]string) (int, error), addrs []string) (int, error) {
	addrs = append([]string(nil), addrs...)
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	var errs []error
	for len(addrs) > 0 {
		batch := addrs[:min(joinBatch, len(addrs))]
		addrs = addrs[len(batch):]
		n, err := join(batch)
		if err == nil && n > 0 {
			return n, nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return 0, errors.New("no member answered")
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

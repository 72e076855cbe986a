package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// ObserverConfig configures an Observer.
type ObserverConfig struct {
	Cluster string
	Key     []byte
	// BindAddr defaults to 0.0.0.0; Port 0 picks a free port.
	BindAddr string
	Port     int
	// AdvertiseAddr is the host's address that nodes can reach. It may be
	// empty only when BindAddr is a specific address.
	AdvertiseAddr string
	Logger        *slog.Logger

	tune func(*memberlist.Config) // tests: faster timings
}

// Observer is the short-lived member the CLI runs while it waits for nodes.
// It publishes role "observer", so agents leave it out of /etc/hosts and it
// never shows up in Members.
type Observer struct {
	name   string
	cfg    ObserverConfig
	logger *slog.Logger
	table  *memberTable
	ml     *memberlist.Memberlist

	closeOnce sync.Once
	closeErr  error
}

// observerLeaveTimeout bounds the leave broadcast in Close.
const observerLeaveTimeout = 3 * time.Second

// NewObserver starts an observer member. It joins nobody yet (see Join).
func NewObserver(ctx context.Context, cfg ObserverConfig) (*Observer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = discardLogger()
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = DefaultBindAddr
	}
	var errs []error
	if cfg.Cluster == "" || len(cfg.Cluster) > memberlist.LabelMaxSize {
		errs = append(errs, fmt.Errorf("observer: cluster name %q must be 1-%d bytes", cfg.Cluster, memberlist.LabelMaxSize))
	}
	switch len(cfg.Key) {
	case 16, 24, 32:
	default:
		errs = append(errs, fmt.Errorf("observer: gossip key must be 16, 24 or 32 bytes, got %d", len(cfg.Key)))
	}
	bind, err := netip.ParseAddr(cfg.BindAddr)
	if err != nil {
		errs = append(errs, fmt.Errorf("observer: bind address %q is not an IP address", cfg.BindAddr))
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		errs = append(errs, fmt.Errorf("observer: port %d is outside 0-65535", cfg.Port))
	}
	if cfg.AdvertiseAddr == "" && err == nil && !bind.IsUnspecified() {
		cfg.AdvertiseAddr = bind.String()
	}
	if a, err := netip.ParseAddr(cfg.AdvertiseAddr); err != nil || a.IsUnspecified() {
		errs = append(errs, fmt.Errorf("observer: advertise address %q is not an IP address nodes can reach", cfg.AdvertiseAddr))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := "clusterctl-observer-" + hex.EncodeToString(rnd[:])
	meta, err := EncodeMeta(Meta{Cluster: cfg.Cluster, Name: name, Role: RoleObserver})
	if err != nil {
		return nil, err
	}
	logger = logger.With("observer", name)
	o := &Observer{name: name, cfg: cfg, logger: logger, table: newMemberTable(cfg.Cluster, logger)}

	mc := memberlist.DefaultLANConfig()
	mc.Name = name
	mc.Label = cfg.Cluster
	mc.SecretKey = append([]byte(nil), cfg.Key...)
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.Port
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.Port
	mc.DeadNodeReclaimTime = defaultOptions().deadReclaim
	// The observer lives for one command and knocks on machines that may
	// still be booting or may be gone: give up on each sooner than the LAN
	// default of 10 s so a join pass moves on to the next batch.
	mc.TCPTimeout = 3 * time.Second
	mc.Delegate = observerDelegate(meta)
	mc.Events = o.table
	mc.Logger = memberlistLogger(logger)
	if cfg.tune != nil {
		cfg.tune(mc)
	}
	o.ml, err = memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("observer: start gossip on %s:%d: %w", cfg.BindAddr, cfg.Port, err)
	}
	return o, nil
}

// Addr returns the address and port nodes can reach the observer at.
func (o *Observer) Addr() (string, int) {
	n := o.ml.LocalNode()
	return n.Addr.String(), int(n.Port)
}

// Join contacts the members at addrs ("host:port"), retrying with backoff
// until at least one answers or ctx ends. It returns how many answered.
func (o *Observer) Join(ctx context.Context, addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, errors.New("observer: no addresses to join")
	}
	type result struct {
		n   int
		err error
	}
	delay := 200 * time.Millisecond
	for {
		ch := make(chan result, 1)
		go func() { n, err := joinAny(o.ml, addrs); ch <- result{n, err} }()
		var r result
		select {
		case r = <-ch:
		case <-ctx.Done():
			return 0, fmt.Errorf("observer: join %v: %w", addrs, ctx.Err())
		}
		if r.err == nil {
			o.logger.Debug("joined", "reached", r.n)
			return r.n, nil
		}
		o.logger.Debug("join failed; retrying", "err", r.err, "retry_in", delay)
		if !sleep(ctx, delay) {
			return 0, fmt.Errorf("observer: join %v: %w (last error: %v)", addrs, ctx.Err(), r.err)
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// WaitNonce returns the node whose meta carries nonce once it has joined,
// also when that happened before WaitNonce was called. Another node with
// the same name but a different nonce does not count.
func (o *Observer) WaitNonce(ctx context.Context, nonce string) (Member, error) {
	if nonce == "" {
		return Member{}, errors.New("observer: empty nonce")
	}
	m, err := o.table.wait(ctx, func(t *memberTable) (Member, bool, error) {
		m, ok := t.byNonce[nonce]
		return m, ok && m.Meta.Role == RoleNode, nil
	})
	if err != nil {
		return Member{}, fmt.Errorf("waiting for a node with nonce %q to join: %w", nonce, err)
	}
	return m, nil
}

// Members returns the nodes the observer has seen, sorted by name, with
// their states: nodes that left or died stay listed as "left" or "dead".
// Observers are never listed. States come from memberlist's join, update
// and leave events (see Member.State).
func (o *Observer) Members() []Member {
	m, _ := o.table.snapshot(RoleNode)
	return m
}

// RequestLeave asks the agent of node name (running with nonce) to leave
// the cluster and stop. It returns when the observer sees that node leave,
// or with ctx's error. A node that already left is not an error.
func (o *Observer) RequestLeave(ctx context.Context, name, nonce string) error {
	o.table.mu.Lock()
	m, ok := o.table.members[name]
	o.table.mu.Unlock()
	switch {
	case !ok || m.Meta.Role != RoleNode:
		return fmt.Errorf("request leave: node %q is not a member the observer knows", name)
	case m.Meta.Nonce != nonce:
		return fmt.Errorf("request leave: node %q runs with nonce %q, not %q", name, m.Meta.Nonce, nonce)
	case m.State == StateLeft:
		return nil
	case m.State == StateDead:
		return fmt.Errorf("request leave: node %q is dead (unreachable) and cannot be asked to leave", name)
	}
	ip := net.ParseIP(m.Addr)
	msg := encodeLeaveRequest(name, nonce)
	delay := 200 * time.Millisecond
	for {
		ch := make(chan error, 1)
		go func() {
			ch <- o.ml.SendReliable(&memberlist.Node{Name: name, Addr: ip, Port: uint16(m.Port)}, msg)
		}()
		var err error
		select {
		case err = <-ch:
		case <-ctx.Done():
			return fmt.Errorf("request leave of %q: %w", name, ctx.Err())
		}
		if err == nil {
			break
		}
		o.logger.Debug("sending leave request failed; retrying", "node", name, "err", err)
		if !sleep(ctx, delay) {
			return fmt.Errorf("request leave of %q: %w (last error: %v)", name, ctx.Err(), err)
		}
		delay = min(2*delay, 5*time.Second)
	}
	_, err := o.table.wait(ctx, func(t *memberTable) (Member, bool, error) {
		m := t.members[name]
		switch {
		case m.Meta.Nonce != nonce: // replaced by a new incarnation: the old one is gone
			return m, true, nil
		case m.State == StateLeft:
			return m, true, nil
		case m.State == StateDead:
			return m, false, fmt.Errorf("node %q became unreachable instead of leaving", name)
		}
		return m, false, nil
	})
	if err != nil {
		return fmt.Errorf("request leave of %q: %w", name, err)
	}
	return nil
}

// Close leaves the cluster (bounded) and shuts the observer down. Calling
// it again returns the first call's result.
func (o *Observer) Close() error {
	o.closeOnce.Do(func() {
		err := o.ml.Leave(observerLeaveTimeout)
		if serr := o.ml.Shutdown(); serr != nil {
			err = errors.Join(err, serr)
		}
		if err != nil {
			o.closeErr = fmt.Errorf("observer close: %w", err)
		}
	})
	return o.closeErr
}

// observerDelegate publishes the observer's meta and ignores everything
// else.
type observerDelegate []byte

func (d observerDelegate) NodeMeta(limit int) []byte {
	if len(d) > limit {
		return nil
	}
	return d
}
func (d observerDelegate) NotifyMsg([]byte)                           {}
func (d observerDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d observerDelegate) LocalState(join bool) []byte                { return nil }
func (d observerDelegate) MergeRemoteState(buf []byte, join bool)     {}

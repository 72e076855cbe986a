package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
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
	// Timing is the gossip timing; use the nodes' (zero: DefaultTiming).
	// The observer's TCP timeout is at most 3 s whatever Timing says.
	Timing Timing
	Logger *slog.Logger

	tune func(*serf.Config) // tests
}

// Observer is the short-lived serf member the CLI runs while it waits for
// nodes. It publishes role "observer", so agents leave it out of
// /etc/hosts and it never shows up in Members. It keeps nothing on disk.
type Observer struct {
	name   string
	cfg    ObserverConfig
	logger *slog.Logger
	g      *gossip
	table  *memberTable

	closeOnce sync.Once
	closeErr  error
}

// observerTCPTimeout: the observer knocks on machines that may still be
// booting or may be gone; it gives up on each sooner than the LAN default
// of 10 s so a join pass moves on.
const observerTCPTimeout = 3 * time.Second

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
	if err := cfg.Timing.validate(); err != nil {
		errs = append(errs, fmt.Errorf("observer: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := "clusterctl-observer-" + hex.EncodeToString(rnd[:])
	tags, err := Meta{Cluster: cfg.Cluster, Name: name, Role: RoleObserver}.SerfTags()
	if err != nil {
		return nil, err
	}
	logger = logger.With("observer", name)
	kr, err := memberlist.NewKeyring(nil, cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("observer: %w", err)
	}
	timing := cfg.Timing.withDefaults()
	timing.TCPTimeout = min(timing.TCPTimeout, Duration(observerTCPTimeout))
	g, err := startGossip(gossipConfig{
		name:          name,
		cluster:       cfg.Cluster,
		tags:          tags,
		keyring:       kr,
		bindAddr:      cfg.BindAddr,
		port:          cfg.Port,
		advertiseAddr: cfg.AdvertiseAddr,
		timing:        timing,
		logger:        logger,
		tune: func(sc *serf.Config) {
			// Leave quickly when the command ends.
			sc.BroadcastTimeout = 3 * time.Second
			sc.LeavePropagateDelay = 200 * time.Millisecond
			if cfg.tune != nil {
				cfg.tune(sc)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("observer: %w", err)
	}
	return &Observer{name: name, cfg: cfg, logger: logger, g: g, table: g.table}, nil
}

// Addr returns the address and port nodes can reach the observer at.
func (o *Observer) Addr() (string, int) {
	m := o.g.serf.LocalMember()
	return m.Addr.String(), int(m.Port)
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
		go func() { n, err := o.g.join(addrs); ch <- result{n, err} }()
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

// WaitNonce returns the node whose tags carry nonce once it has joined,
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

// Members returns the nodes the observer sees, sorted by name, with their
// states (alive, suspect, leaving, left, failed). Observers are never
// listed.
func (o *Observer) Members() []Member {
	m, _ := o.table.snapshot(RoleNode)
	return m
}

// RequestLeave asks the agent of node name (running with nonce) to leave
// the cluster for good and stop. It returns when the observer sees that
// node leave, or with ctx's error. A node that already left is not an
// error.
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
	case m.State == StateFailed:
		return fmt.Errorf("request leave: node %q has failed (unreachable) and cannot be asked to leave", name)
	}
	payload, _ := json.Marshal(leaveRequest{Name: name, Nonce: nonce})
	delay := 200 * time.Millisecond
	for acked := false; !acked; {
		answer, err := o.askLeave(ctx, name, payload)
		switch {
		case err == nil && answer == leaveOK:
			acked = true
		case err == nil && answer == leaveWrongNonce:
			return fmt.Errorf("request leave: node %q refused: it does not run with nonce %q", name, nonce)
		default:
			o.logger.Debug("leave request not answered; retrying", "node", name, "err", err)
			if !sleep(ctx, delay) {
				return fmt.Errorf("request leave of %q: %w", name, ctx.Err())
			}
			delay = min(2*delay, 5*time.Second)
		}
	}
	_, err := o.table.wait(ctx, func(t *memberTable) (Member, bool, error) {
		m := t.members[name]
		switch {
		case m.Meta.Nonce != nonce: // replaced by a new incarnation: the old one is gone
			return m, true, nil
		case m.State == StateLeft:
			return m, true, nil
		case m.State == StateFailed:
			return m, false, fmt.Errorf("node %q became unreachable instead of leaving", name)
		}
		return m, false, nil
	})
	if err != nil {
		return fmt.Errorf("request leave of %q: %w", name, err)
	}
	return nil
}

// askLeave sends the leave query to node name and returns its answer.
func (o *Observer) askLeave(ctx context.Context, name string, payload []byte) (string, error) {
	resp, err := o.g.serf.Query(leaveQuery, payload, &serf.QueryParam{FilterNodes: []string{name}, Timeout: 3 * time.Second})
	if err != nil {
		return "", err
	}
	defer resp.Close()
	for {
		select {
		case r, ok := <-resp.ResponseCh():
			if !ok {
				return "", errors.New("no answer")
			}
			if r.From == name {
				return string(r.Payload), nil
			}
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// Close leaves the cluster (bounded) and shuts the observer down. Calling
// it again returns the first call's result.
func (o *Observer) Close() error {
	o.closeOnce.Do(func() {
		err := o.g.leave()
		if serr := o.g.shutdown(); serr != nil {
			err = errors.Join(err, serr)
		}
		if err != nil {
			o.closeErr = fmt.Errorf("observer close: %w", err)
		}
	})
	return o.closeErr
}

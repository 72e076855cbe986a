package agentconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("1s",
// "200ms") in JSON.
type Duration time.Duration

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string such as "1s" or "200ms".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string such as \"1s\" or \"200ms\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Timing holds the gossip timings. A zero field takes the production value
// (DefaultTiming); tests and the scale harness set shorter ones through the
// same JSON the CLI renders, so that what is measured is what runs.
type Timing struct {
	// ProbeInterval is how often memberlist probes a random member;
	// ProbeTimeout how long it waits for the ack; a member that misses
	// probes is suspected, and declared failed after
	// SuspicionMult × log10(N+1) × ProbeInterval.
	ProbeInterval Duration `json:"probe_interval,omitempty"`
	ProbeTimeout  Duration `json:"probe_timeout,omitempty"`
	SuspicionMult int      `json:"suspicion_mult,omitempty"`
	// GossipInterval and GossipNodes: every GossipInterval a member sends
	// its queued broadcasts to GossipNodes random members.
	GossipInterval Duration `json:"gossip_interval,omitempty"`
	GossipNodes    int      `json:"gossip_nodes,omitempty"`
	// RetransmitMult: each broadcast is sent RetransmitMult × log10(N+1)
	// times.
	RetransmitMult int `json:"retransmit_mult,omitempty"`
	// PushPullInterval is how often a member exchanges its full state with
	// a random member over TCP (anti-entropy).
	PushPullInterval Duration `json:"push_pull_interval,omitempty"`
	// TCPTimeout bounds a join or push/pull with one member.
	TCPTimeout Duration `json:"tcp_timeout,omitempty"`
	// ReconnectInterval: every ReconnectInterval each member tries to
	// rejoin one random failed member (serf), with a probability such that
	// the cluster as a whole tries about one per failed member. This heals
	// partitions. Failed members are given up (reaped) after
	// ReconnectTimeout; members that left, after TombstoneTimeout.
	ReconnectInterval Duration `json:"reconnect_interval,omitempty"`
	ReconnectTimeout  Duration `json:"reconnect_timeout,omitempty"`
	TombstoneTimeout  Duration `json:"tombstone_timeout,omitempty"`
	// DeadNodeReclaim is how soon a failed member's name may be taken by a
	// member at another address (a re-created machine).
	DeadNodeReclaim Duration `json:"dead_node_reclaim,omitempty"`
}

// DefaultTiming is the production timing. memberlist's LAN profile
// (memberlist.DefaultLANConfig: the fields marked LAN, which package
// agent's tests check against memberlist's), except
// where docs/benchmarks.md shows a measured reason: serf reconnects to
// failed members every 10 s (its default 30 s would let a healed partition
// wait up to half a minute), tombstones of members that left are dropped
// after an hour (every short-lived CLI watcher leaves one), and a
// re-created machine may take a failed member's name after 30 s. For a
// batch joining at once: each broadcast goes to 4 members per gossip round
// (not 3) and is sent 6 × log10(N+1) times (not 4 ×), so that a member
// rarely misses a join; one that does learns it at the next push/pull,
// which memberlist spaces by 1 + ceil(log2(N/32)) × the interval, so 10 s
// (not 30 s) bounds that at 20 s for N = 50 and 40 s for N = 200 (a missed
// join waited 74 s at N = 50 with 30 s).
func DefaultTiming() Timing {
	return Timing{
		ProbeInterval:     Duration(time.Second),            // LAN
		ProbeTimeout:      Duration(500 * time.Millisecond), // LAN
		SuspicionMult:     4,                                // LAN
		GossipInterval:    Duration(200 * time.Millisecond), // LAN
		GossipNodes:       4,
		RetransmitMult:    6,
		PushPullInterval:  Duration(10 * time.Second),
		TCPTimeout:        Duration(10 * time.Second), // LAN
		ReconnectInterval: Duration(10 * time.Second),
		ReconnectTimeout:  Duration(24 * time.Hour),
		TombstoneTimeout:  Duration(time.Hour),
		DeadNodeReclaim:   Duration(30 * time.Second),
	}
}

// WithDefaults returns t with every zero field set from DefaultTiming.
func (t Timing) WithDefaults() Timing {
	d := DefaultTiming()
	setD := func(v *Duration, def Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setI := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setD(&t.ProbeInterval, d.ProbeInterval)
	setD(&t.ProbeTimeout, d.ProbeTimeout)
	setI(&t.SuspicionMult, d.SuspicionMult)
	setD(&t.GossipInterval, d.GossipInterval)
	setI(&t.GossipNodes, d.GossipNodes)
	setI(&t.RetransmitMult, d.RetransmitMult)
	setD(&t.PushPullInterval, d.PushPullInterval)
	setD(&t.TCPTimeout, d.TCPTimeout)
	setD(&t.ReconnectInterval, d.ReconnectInterval)
	setD(&t.ReconnectTimeout, d.ReconnectTimeout)
	setD(&t.TombstoneTimeout, d.TombstoneTimeout)
	setD(&t.DeadNodeReclaim, d.DeadNodeReclaim)
	return t
}

// validate reports negative values and a probe timeout that is not
// shorter than the probe interval.
func (t Timing) validate() error {
	var errs []error
	for name, v := range map[string]Duration{
		"probe_interval": t.ProbeInterval, "probe_timeout": t.ProbeTimeout, "gossip_interval": t.GossipInterval,
		"push_pull_interval": t.PushPullInterval, "tcp_timeout": t.TCPTimeout, "reconnect_interval": t.ReconnectInterval,
		"reconnect_timeout": t.ReconnectTimeout, "tombstone_timeout": t.TombstoneTimeout, "dead_node_reclaim": t.DeadNodeReclaim,
	} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("timing.%s: %s is negative", name, time.Duration(v)))
		}
	}
	for name, v := range map[string]int{"suspicion_mult": t.SuspicionMult, "gossip_nodes": t.GossipNodes, "retransmit_mult": t.RetransmitMult} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("timing.%s: %d is negative", name, v))
		}
	}
	w := t.WithDefaults()
	if w.ProbeTimeout >= w.ProbeInterval {
		errs = append(errs, fmt.Errorf("timing.probe_timeout (%s) must be shorter than timing.probe_interval (%s)", time.Duration(w.ProbeTimeout), time.Duration(w.ProbeInterval)))
	}
	return errors.Join(errs...)
}

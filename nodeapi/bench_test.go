package nodeapi

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/serf/serf"
)

// ProductTiming sets the agent's production gossip timing
// (agentconfig.DefaultTiming, through agent.ApplyTiming) on a serf config.
// timing_test.go, an external test (the agent imports this package), sets
// it, so that the benchmark's members gossip as the shipped agents do.
var ProductTiming func(*serf.Config)

// BenchmarkDetection measures, on loopback with a real serf cluster (the
// agent's production timings, ProductTiming) and real API servers, how long it takes from a member
// starting its join until the client following the stream knows: joining at
// the node the client follows, and joining at another node (gossip must
// carry it first). Next to it, a 3-second poll model: a poll loop waits
// uniformly 0–3 s for its next round, then pays one connection (measured
// here with Members on the API; an SSH handshake costs more). It also
// times Members (what `status` asks) with 100 reachable nodes, and with 100
// that never answer. It prints a table; run it with
//
//	go test -run '^$' -bench Detection -benchtime 1x ./nodeapi
//
// DETECTION_JOINS sets the joins at the followed node (default 200; each
// joiner leaves after it was seen), DETECTION_OTHER_JOINS those at another
// node (default 50; the joiners stay).
func BenchmarkDetection(b *testing.B) {
	joins, otherJoins := 200, 50
	if v, err := strconv.Atoi(os.Getenv("DETECTION_JOINS")); err == nil && v > 0 {
		joins = v
	}
	if v, err := strconv.Atoi(os.Getenv("DETECTION_OTHER_JOINS")); err == nil && v > 0 {
		otherJoins = v
	}
	if ProductTiming == nil {
		b.Fatal("ProductTiming is not set: the benchmark would not measure the agent's timing")
	}
	st := &stamps{at: map[string]time.Time{}}
	opt := serfOptions{tune: func(sc *serf.Config) {
		ProductTiming(sc)
		sc.Merge = stampMerge{node: sc.NodeName, st: st}
	}}
	c := newTestCluster(b, 3, opt)
	for _, nd := range c.nodes {
		nd.m.mu.Lock()
		name := nd.name
		nd.m.taken = func(ev Event) {
			if ev.Type == EventJoin {
				st.mark(name, "taken", ev.Member.Name, time.Now())
			}
		}
		nd.m.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The reader notes when Follow delivers each join, whatever the
	// benchmark's own goroutine is doing (it waits in the joiner's Join,
	// which can return after the followed node has long passed the join on).
	raw := c.client.Follow(ctx)
	updates := make(chan Update, 4096)
	go func() {
		defer close(updates)
		for u := range raw {
			if u.Kind == UpdateEvent && u.Event.Type == EventJoin {
				st.mark(u.From.Name, "client", u.Event.Member.Name, time.Now())
				st.mark(u.From.Name, "event", u.Event.Member.Name, u.Event.Time)
			}
			updates <- u
		}
	}()
	first := next(b, updates, 10*time.Second)
	followed := c.node(first.From.Name)
	var other *testNode
	for _, nd := range c.nodes {
		if nd != followed {
			other = nd
			break
		}
	}

	resyncs := 0
	knows := func(name string) func(Update) bool {
		return func(u Update) bool {
			switch u.Kind {
			case UpdateEvent:
				return u.Event.Type == EventJoin && u.Event.Member.Name == name
			case UpdateSnapshot:
				// The stream broke and came back (a loaded machine):
				// the fresh snapshot may be where the client learns it.
				resyncs++
				for _, m := range u.Snapshot.Members {
					if m.Name == name && m.Status == StatusAlive {
						st.mark(u.From.Name, "client", name, time.Now())
						return true
					}
				}
			}
			return false
		}
	}
	missed := map[string]int{}
	var stages []stageTimes // joins at the followed node, stage by stage
	// keep: leave the joiners running (no port of a left member is reused
	// by the next joiner).
	var afterJoin []time.Duration // as the benchmark measured before: until its goroutine, back from Join, read it
	measure := func(label string, at *testNode, joins int, keep bool) []time.Duration {
		var out []time.Duration
		for i := range joins {
			name := fmt.Sprintf("j-%s-%d", label, i)
			m := startSerf(b, name, "nonce-"+name, opt)
			t0 := time.Now()
			m.join(b, at.m)
			joined := time.Now()
			if !waitUpdate(updates, 10*time.Second, knows(name)) {
				// The followed node's serf never learnt of it: a gossip
				// matter (counted), not the API's.
				missed[label]++
				if !keep {
					go func() { m.s.Leave(); m.s.Shutdown() }()
				}
				continue
			}
			// From the join's start until Follow delivered it (not
			// until this goroutine, held in Join, read it).
			out = append(out, st.get(followed.name, "client", name).Sub(t0))
			if at == followed {
				afterJoin = append(afterJoin, time.Since(t0))
				stages = append(stages, st.times(at.name, name, t0, joined))
			}
			if !keep {
				go func() { m.s.Leave(); m.s.Shutdown() }()
			}
		}
		return out
	}
	sched := readSched()
	atFollowed := measure("f", followed, joins, false)
	sched = readSched().since(sched)
	atOther := measure("o", other, otherJoins, true)

	// One connection's cost, and the poll model built on it.
	var conn []time.Duration
	for range 50 {
		t0 := time.Now()
		if _, err := c.client.Members(ctx); err != nil {
			b.Fatal(err)
		}
		conn = append(conn, time.Since(t0))
	}
	var poll []time.Duration
	for i := range joins {
		poll = append(poll, time.Duration(rand.Int64N(int64(3*time.Second)))+conn[i%len(conn)])
	}

	// status: 100 reachable API servers (backed by the three members).
	var many []Endpoint
	for i := range 100 {
		many = append(many, c.serve(fmt.Sprintf("api-%d", i), c.nodes[i%3].m).ep)
	}
	cli, _ := c.ca.IssueCLI()
	reach, _ := NewClient(cli, Endpoints(many...))
	var status []time.Duration
	for range 50 {
		t0 := time.Now()
		snap, err := reach.Members(ctx)
		if err != nil {
			b.Fatal(err)
		}
		status = append(status, time.Since(t0))
		_ = snap
	}
	// status: 100 nodes that take the TCP connection and never answer.
	var silent []Endpoint
	for i := range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		silent = append(silent, Endpoint{Name: fmt.Sprintf("s-%d", i), Addr: ln.Addr().String()})
	}
	dead, _ := NewClient(cli, Endpoints(silent...))
	t0 := time.Now()
	_, err := dead.Members(ctx)
	unreach := time.Since(t0)
	if err == nil {
		b.Fatal("silent nodes answered")
	}

	fmt.Printf("\n| what | n | p50 | p99 | max |\n|---|---|---|---|---|\n")
	row := func(what string, d []time.Duration) {
		slices.Sort(d)
		q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
		fmt.Printf("| %s | %d | %v | %v | %v |\n", what, len(d), round(q(0.5)), round(q(0.99)), round(d[len(d)-1]))
	}
	row(fmt.Sprintf("join at the followed node → client knows (%d of %d never learnt by its serf in 10 s)", missed["f"], joins), atFollowed)
	row("the same joins, until the benchmark's goroutine, back from the joiner's Join, read it (how this row was measured before)", afterJoin)
	row(fmt.Sprintf("join at another node → client knows, gossip first (%d of %d never learnt by the followed node's serf in 10 s)", missed["o"], otherJoins), atOther)
	row("3-second poll model (0–3 s wait + one API connection)", poll)
	row("one API connection + members (poll's cost)", conn)
	row("status: Members, 100 reachable nodes", status)
	fmt.Printf("| status: Members, 100 silent nodes (connect timeout %v) | 1 | %v | | |\n\n", DefaultConnectTimeout, round(unreach))
	fmt.Printf("streams re-established during the joins: %d\n", resyncs)
	printStages(stages)
	sched.print()
	slices.Sort(atFollowed)
	b.ReportMetric(float64(atFollowed[len(atFollowed)*99/100].Microseconds())/1000, "p99-ms")
}

// waitUpdate reads updates until match accepts one (true) or d passes.
func waitUpdate(ch <-chan Update, d time.Duration, match func(Update) bool) bool {
	deadline := time.After(d)
	for {
		select {
		case u, ok := <-ch:
			if !ok {
				return false
			}
			if match(u) {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	default:
		return d.Round(10 * time.Microsecond)
	}
}

// stamps records when each stage of the join detection first saw a member
// (by node, stage and member name).
type stamps struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (s *stamps) mark(node, stage, member string, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := node + "|" + stage + "|" + member
	if _, ok := s.at[k]; !ok {
		s.at[k] = t
	}
}

func (s *stamps) get(node, stage, member string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.at[node+"|"+stage+"|"+member]
}

// stampMerge is a serf merge delegate that notes when node's memberlist
// first hands serf a member: from the join's push/pull (NotifyMerge) or
// from an alive broadcast (NotifyAlive). It admits every member.
type stampMerge struct {
	node string
	st   *stamps
}

func (d stampMerge) NotifyMerge(ms []*serf.Member) error {
	now := time.Now()
	for _, m := range ms {
		d.st.mark(d.node, "merge", m.Name, now)
	}
	return nil
}

// stageTimes is one join at the followed node, stage by stage.
type stageTimes struct {
	t0, joined, merge, event, taken, client time.Time
}

func (s *stamps) times(node, member string, t0, joined time.Time) stageTimes {
	return stageTimes{t0: t0, joined: joined, merge: s.get(node, "merge", member), event: s.get(node, "event", member),
		taken: s.get(node, "taken", member), client: s.get(node, "client", member)}
}

// printStages prints where the time of the joins at the followed node
// went: each stage's share, and the slowest joins stage by stage.
func printStages(all []stageTimes) {
	if len(all) == 0 {
		return
	}
	stages := []struct {
		what string
		d    func(stageTimes) time.Duration
	}{
		{"join started → the joiner's Join returned", func(s stageTimes) time.Duration { return s.joined.Sub(s.t0) }},
		{"join started → the followed node's memberlist handed it to serf (merge delegate)", func(s stageTimes) time.Duration { return s.merge.Sub(s.t0) }},
		{"memberlist → serf's join event read off serf's event channel", func(s stageTimes) time.Duration { return s.event.Sub(s.merge) }},
		{"serf's event → the API server took it", func(s stageTimes) time.Duration { return s.taken.Sub(s.event) }},
		{"the server took it → the client's Follow delivered it", func(s stageTimes) time.Duration { return s.client.Sub(s.taken) }},
		{"total", func(s stageTimes) time.Duration { return s.client.Sub(s.t0) }},
	}
	fmt.Printf("\n| stage (joins at the followed node) | n | p50 | p99 | max |\n|---|---|---|---|---|\n")
	for _, sg := range stages {
		var d []time.Duration
		for _, s := range all {
			d = append(d, sg.d(s))
		}
		slices.Sort(d)
		q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
		fmt.Printf("| %s | %d | %v | %v | %v |\n", sg.what, len(d), round(q(0.5)), round(q(0.99)), round(d[len(d)-1]))
	}
	slices.SortFunc(all, func(a, b stageTimes) int { return int(b.client.Sub(b.t0) - a.client.Sub(a.t0)) })
	fmt.Printf("\nslowest joins (ms): total = joined + (merge-t0) ... stage by stage\n| total | Join returned | memberlist | serf event | server took | client |\n|---|---|---|---|---|---|\n")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }
	for _, s := range all[:min(5, len(all))] {
		fmt.Printf("| %s | %s | %s | %s | %s | %s |\n", ms(s.client.Sub(s.t0)), ms(s.joined.Sub(s.t0)), ms(s.merge.Sub(s.t0)),
			ms(s.event.Sub(s.merge)), ms(s.taken.Sub(s.event)), ms(s.client.Sub(s.taken)))
	}
	fmt.Println()
}

// schedHist is the Go runtime's own account of waiting, from
// runtime/metrics: how long goroutines stayed runnable before a CPU took
// them (the scheduler's latency), and how long the GC stopped the world.
// Taken across the joins at the followed node, it says how much of a
// stage's tail is waiting for a CPU rather than work of the stage.
type schedHist struct {
	lat, pause *metrics.Float64Histogram
}

var schedMetrics = []string{"/sched/latencies:seconds", "/sched/pauses/total/gc:seconds"}

func readSched() schedHist {
	s := make([]metrics.Sample, len(schedMetrics))
	for i, n := range schedMetrics {
		s[i].Name = n
	}
	metrics.Read(s)
	return schedHist{lat: s[0].Value.Float64Histogram(), pause: s[1].Value.Float64Histogram()}
}

// since is the histogram of what happened after before was read.
func (h schedHist) since(before schedHist) schedHist {
	sub := func(a, b *metrics.Float64Histogram) *metrics.Float64Histogram {
		out := &metrics.Float64Histogram{Buckets: a.Buckets, Counts: slices.Clone(a.Counts)}
		for i := range out.Counts {
			out.Counts[i] -= b.Counts[i]
		}
		return out
	}
	return schedHist{lat: sub(h.lat, before.lat), pause: sub(h.pause, before.pause)}
}

func (h schedHist) print() {
	fmt.Printf("| the Go runtime during the joins at the followed node | n | p50 | p99 | p99.9 | max |\n|---|---|---|---|---|---|\n")
	row := func(what string, hist *metrics.Float64Histogram) {
		var n uint64
		for _, c := range hist.Counts {
			n += c
		}
		if n == 0 {
			return
		}
		// The upper bound of the bucket holding the q-th sample.
		q := func(p float64) string {
			want, seen := min(uint64(p*float64(n)), n-1), uint64(0)
			for i, c := range hist.Counts {
				seen += c
				if seen > want {
					if math.IsInf(hist.Buckets[i+1], 1) {
						return ">" + round(time.Duration(hist.Buckets[i]*float64(time.Second))).String()
					}
					return "≤" + round(time.Duration(hist.Buckets[i+1]*float64(time.Second))).String()
				}
			}
			return "?"
		}
		fmt.Printf("| %s | %d | %s | %s | %s | %s |\n", what, n, q(0.5), q(0.99), q(0.999), q(1))
	}
	row("a runnable goroutine waited for a CPU (/sched/latencies)", h.lat)
	row("the GC stopped the world (/sched/pauses/total/gc)", h.pause)
	fmt.Println()
}

package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// percentile returns the p-th percentile (0-100) of sorted durations, in
// milliseconds (nearest rank).
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / float64(time.Millisecond)
}

// BenchmarkJoinDetection measures how long after a new agent's Join returns
// another member learns of it by gossip, with production memberlist timings
// on loopback: the new agent joins a seed node; a watching agent, joined to
// the seed, learns of it by gossip (what the node API of a node other than
// the seed then streams to the CLI; nodeapi's BenchmarkDetection measures
// that path end to end).
//
//	go test -run '^$' -bench BenchmarkJoinDetection -benchtime 200x ./agent/
func BenchmarkJoinDetection(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var running sync.WaitGroup
	defer running.Wait()
	defer cancel()

	run := func(cfg Config, opts options) (*Agent, error) {
		a, err := newAgent(issued(cfg), nil, opts)
		if err != nil {
			return nil, err
		}
		running.Add(1)
		go func() { defer running.Done(); _ = a.Run(ctx) }()
		return a, nil
	}
	seedCfg := testConfig("seed")
	seedCfg.Port = freePort(b)
	if _, err := run(seedCfg, defaultOptions()); err != nil {
		b.Fatal(err)
	}
	seedAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(seedCfg.Port))
	watchCfg := testConfig("watch")
	watchCfg.Seeds = []string{seedAddr}
	joined := make(chan struct{}, 1)
	watchOpts := defaultOptions()
	watchOpts.onJoined = func(time.Time) {
		select {
		case joined <- struct{}{}:
		default:
		}
	}
	watch, err := run(watchCfg, watchOpts)
	if err != nil {
		b.Fatal(err)
	}
	select {
	case <-joined:
	case <-time.After(10 * time.Second):
		b.Fatal("the watching agent did not join the seed")
	}
	g, err := watch.gossipOrErr()
	if err != nil {
		b.Fatal(err)
	}
	view := g.table

	var lat, total []time.Duration
	early := 0
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("n%d", i)
		cfg := testConfig(name)
		cfg.Nonce = fmt.Sprintf("bench-%d-%d", i, rand.Int64())
		cfg.Seeds = []string{seedAddr}
		joinedAt := make(chan time.Time, 1)
		opts := defaultOptions()
		opts.onJoined = func(t time.Time) { joinedAt <- t }
		nodeCtx, stopNode := context.WithCancel(ctx)
		a, err := newAgent(issued(cfg), nil, opts)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		running.Add(1)
		go func() { defer running.Done(); _ = a.Run(nodeCtx) }()

		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = nonceIn(wctx, view, cfg.Nonce)
		seen := time.Now()
		wcancel()
		if err != nil {
			b.Fatal(err)
		}
		var joined time.Time
		select {
		case joined = <-joinedAt:
		case <-time.After(30 * time.Second):
			b.Fatal("agent never reported its join")
		}
		d := seen.Sub(joined)
		if d < 0 { // the watcher heard of it before Join returned to the agent
			early++
			d = 0
		}
		lat = append(lat, d)
		total = append(total, seen.Sub(start))
		stopNode() // leaves gracefully in the background
	}
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(total)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(percentile(lat, 50), "p50-ms")
	b.ReportMetric(percentile(lat, 99), "p99-ms")
	b.ReportMetric(percentile(total, 50), "start-to-seen-p50-ms")
	b.ReportMetric(float64(early), "seen-before-join-returned")
}

// BenchmarkPollBaseline measures the same "node becomes ready" event seen
// the old way: a loop that polls every 3 s (a TCP dial, as an SSH readiness
// probe would) against a listener that starts at a random moment within the
// first poll interval. Each run takes about 3 s, so keep the count small:
//
//	go test -run '^$' -bench BenchmarkPollBaseline -benchtime 20x ./agent/
func BenchmarkPollBaseline(b *testing.B) {
	const interval = 3 * time.Second
	var lat []time.Duration
	for range b.N {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(b)))
		delay := time.Duration(rand.Int64N(int64(interval)))
		started := make(chan time.Time, 1)
		var l net.Listener
		var mu sync.Mutex
		timer := time.AfterFunc(delay, func() {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				started <- time.Time{}
				return
			}
			mu.Lock()
			l = ln
			mu.Unlock()
			started <- time.Now()
		})
		var seen time.Time
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				seen = time.Now()
				c.Close()
				break
			}
			time.Sleep(interval)
		}
		timer.Stop()
		up := <-started
		if up.IsZero() {
			b.Fatal("listener could not start")
		}
		lat = append(lat, seen.Sub(up))
		mu.Lock()
		l.Close()
		mu.Unlock()
	}
	slices.Sort(lat)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(percentile(lat, 50), "p50-ms")
	b.ReportMetric(percentile(lat, 99), "p99-ms")
}

package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/testkit"
	"github.com/clusterctl/clusterctl/nodeapi"
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
// another member learns of it by gossip, on loopback with the agent tests'
// fast timing (testTiming: gossip every 20 ms, push/pull every second; not
// the shipped timing, which nodeapi's BenchmarkDetection uses): the new
// agent joins a seed node; a watching agent, joined to
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

	run := func(cfg agentconfig.Config, opts options) (*Agent, error) {
		a, err := newAgent(issued(cfg), nil, opts)
		if err != nil {
			return nil, err
		}
		running.Add(1)
		go func() { defer running.Done(); _ = a.Run(ctx) }()
		return a, nil
	}
	seedCfg := testConfig("seed")
	seedCfg.Port = testkit.FreePort(b, "127.0.0.1")
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
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testkit.FreePort(b, "127.0.0.1")))
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

// BenchmarkBatchStart starts a batch of agents in one process with the
// production timing (DefaultTiming), the first alone and the others with
// its address as seed, spread evenly over BATCH_SPREAD (default 10 s), and
// waits until every agent sees all of them alive. Run it with a CPU
// profile to see what a start costs:
//
//	BATCH_N=50 go test -run '^$' -bench BatchStart -benchtime 1x -cpuprofile /tmp/start.prof ./agent/
//	go tool pprof -top /tmp/start.prof
//
// BATCH_N is the batch's size (default 50). It prints the CPU the process
// used from the first start until all saw all (user + system, all agents
// together) and how many times an agent's table saw another member fail
// (the failure detector flapping: none in a batch that fits the machine).
func BenchmarkBatchStart(b *testing.B) {
	n, spread := 50, 10*time.Second
	if v, err := strconv.Atoi(os.Getenv("BATCH_N")); err == nil && v > 1 {
		n = v
	}
	if v, err := time.ParseDuration(os.Getenv("BATCH_SPREAD")); err == nil && v >= 0 {
		spread = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	var running sync.WaitGroup
	defer running.Wait()
	defer cancel()
	var tables []*memberTable
	var seed string
	var fails atomic.Int64
	cpu0 := cpuTime(b)
	start := time.Now()
	for i := range n {
		cfg := testConfig(fmt.Sprintf("b%d", i))
		cfg.Timing = agentconfig.Timing{} // production
		cfg.Port = testkit.FreePort(b, "127.0.0.1")
		if i == 0 {
			seed = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port))
		} else {
			cfg.Seeds = []string{seed}
		}
		a, err := newAgent(issued(cfg), nil, defaultOptions())
		if err != nil {
			b.Fatal(err)
		}
		running.Add(1)
		go func() { defer running.Done(); _ = a.Run(ctx) }()
		deadline := time.Now().Add(10 * time.Second)
		var g *gossip
		for g == nil && time.Now().Before(deadline) {
			if g, err = a.gossipOrErr(); err != nil {
				time.Sleep(10 * time.Millisecond)
			}
		}
		if g == nil {
			b.Fatalf("agent %d did not start its gossip: %v", i, err)
		}
		tables = append(tables, g.table)
		_, events := g.table.subscribe(ctx, "")
		go func() {
			for e := range events {
				if e.Type == nodeapi.EventFail {
					fails.Add(1)
				}
			}
		}()
		time.Sleep(time.Until(start.Add(spread * time.Duration(i+1) / time.Duration(n))))
	}
	last := time.Now()
	all := func() bool {
		for _, t := range tables {
			if t.aliveOthers("") != n {
				return false
			}
		}
		return true
	}
	for !all() {
		if time.Since(last) > 2*time.Minute {
			b.Fatal("the batch did not converge in 2 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	converged := time.Since(last)
	cpu := cpuTime(b) - cpu0
	fmt.Printf("\n%d agents started over %v; all see all %v after the last start; CPU %.1f s (%.2f cores); member failures seen %d\n",
		n, last.Sub(start).Round(time.Millisecond), converged.Round(time.Millisecond), cpu.Seconds(), cpu.Seconds()/time.Since(start).Seconds(), fails.Load())
}

// cpuTime is the CPU this process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Command scale is the membership scale harness: it starts N real agent
// processes (static binaries, built first), one per node, each on its own
// loopback address (127.0.x.y), started the way the cluster layer starts a
// batch (the first node alone, the rest with its address as their seed),
// and a watcher (an agent.Observer, standing in for the CLI) joined to the
// first node. It prints, for each N, the time from an agent's start to the
// watcher seeing its nonce (p50, p99, max), the time until every agent
// sees all N alive after the last start (from the agents' logs), and the
// time until the watcher sees a node killed with SIGKILL as failed.
//
//	go run ./test/scale              # N = 50 and 200
//	go run ./test/scale -n 500,1000  # on a machine with the cores for it
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clusterctl/clusterctl/agent"
)

func main() {
	ns := flag.String("n", "50,200", "cluster sizes to measure, comma-separated")
	interval := flag.Duration("start-interval", 20*time.Millisecond, "pause between agent starts")
	flag.Parse()
	dir, err := os.MkdirTemp("", "clusterctl-scale-")
	check(err)
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "clusterctl-agent")
	build := exec.Command("go", "build", "-o", bin, "./cmd/clusterctl-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stderr = os.Stderr
	check(build.Run())
	fmt.Printf("%6s %10s %10s %10s %14s %14s\n", "N", "seen p50", "seen p99", "seen max", "all see all", "kill -9 seen")
	for _, f := range strings.Split(*ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		check(err)
		r := run(bin, filepath.Join(dir, f), n, *interval)
		fmt.Printf("%6d %10s %10s %10s %14s %14s\n", n, r.p50, r.p99, r.max, r.converge, r.detect)
	}
}

type result struct{ p50, p99, max, converge, detect time.Duration }

var key = []byte("scale-harness-key-0123456789abcd")

func addr(i int) string { return fmt.Sprintf("127.0.%d.%d", 10+i/250, i%250+1) }

func run(bin, dir string, n int, interval time.Duration) result {
	check(os.MkdirAll(dir, 0o700))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	o, err := agent.NewObserver(ctx, agent.ObserverConfig{Cluster: "scale", Key: key, BindAddr: "127.0.0.1", Port: 0})
	check(err)
	defer o.Close()
	procs := make([]*exec.Cmd, n)
	logs := make([]string, n)
	starts := make([]time.Time, n)
	seen := make([]time.Duration, n)
	done := make(chan int, n)
	for i := range n {
		cfg := agent.Config{Cluster: "scale", Name: fmt.Sprintf("s%d", i), Nonce: fmt.Sprintf("nonce-%d-%d", n, i), Provider: "scale",
			InstanceID: fmt.Sprintf("i-%d", i), Key: key, BindAddr: addr(i), Port: 7946, AdvertiseAddr: addr(i),
			StateDir: filepath.Join(dir, fmt.Sprint(i))}
		if i > 0 {
			cfg.Seeds = []string{addr(0) + ":7946"}
		}
		b, _ := json.Marshal(cfg)
		p := filepath.Join(dir, fmt.Sprintf("%d.json", i))
		check(os.WriteFile(p, b, 0o600))
		logs[i] = filepath.Join(dir, fmt.Sprintf("%d.log", i))
		lf, err := os.Create(logs[i])
		check(err)
		cmd := exec.Command(bin, "-config", p)
		cmd.Stdout, cmd.Stderr = lf, lf
		starts[i] = time.Now()
		check(cmd.Start())
		lf.Close()
		procs[i] = cmd
		go func(i int, nonce string) {
			if _, err := o.WaitNonce(ctx, nonce); err == nil {
				seen[i] = time.Since(starts[i])
			}
			done <- i
		}(i, cfg.Nonce)
		if i == 0 {
			for {
				jctx, c := context.WithTimeout(ctx, time.Second)
				_, err := o.Join(jctx, []string{addr(0) + ":7946"})
				c()
				if err == nil {
					break
				}
			}
		}
		time.Sleep(interval)
	}
	defer func() {
		for _, p := range procs {
			_ = p.Process.Kill()
			_, _ = p.Process.Wait()
		}
	}()
	last := starts[n-1]
	for range n {
		<-done
	}
	var r result
	sorted := append([]time.Duration(nil), seen...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	r.p50, r.p99, r.max = sorted[n/2].Round(time.Millisecond), sorted[(n*99)/100].Round(time.Millisecond), sorted[n-1].Round(time.Millisecond)
	for !allSeeAll(logs, n) {
		time.Sleep(200 * time.Millisecond)
	}
	r.converge = time.Since(last).Round(100 * time.Millisecond)
	victim := n / 2
	killed := time.Now()
	_ = procs[victim].Process.Signal(syscall.SIGKILL)
	for {
		found := false
		for _, m := range o.Members() {
			if m.Name == fmt.Sprintf("s%d", victim) && m.State == agent.StateFailed {
				found = true
			}
		}
		if found {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.detect = time.Since(killed).Round(10 * time.Millisecond)
	return r
}

var memberLine = regexp.MustCompile(`msg="member [^"]*" .*\bmember=(\S+) .*\bstate=(\S+)`)

// allSeeAll reports whether every agent's log shows all n nodes alive.
func allSeeAll(logs []string, n int) bool {
	for _, l := range logs {
		f, err := os.Open(l)
		if err != nil {
			return false
		}
		v := map[string]string{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if m := memberLine.FindStringSubmatch(sc.Text()); m != nil && strings.HasPrefix(m[1], "s") {
				v[m[1]] = m[2]
			}
		}
		f.Close()
		alive := 0
		for _, s := range v {
			if s == agent.StateAlive {
				alive++
			}
		}
		if alive < n {
			return false
		}
	}
	return true
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

package agent_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/identity/identitytest"
	"github.com/clusterctl/clusterctl/nodeapi"

	"github.com/clusterctl/clusterctl/internal/netnstest"
)

// These tests run the real agent binary, one process per node, each in its
// own network namespace, and cut links for real. They read each agent's
// view from its log, as an operator would in the journal.

var (
	buildOnce sync.Once
	agentBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if agentBin != "" {
		os.RemoveAll(filepath.Dir(agentBin))
	}
	os.Exit(code)
}

func agentBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "clusterctl-agent-bin-")
		if err != nil {
			buildErr = err
			return
		}
		agentBin = filepath.Join(dir, "clusterctl-agent")
		cmd := exec.Command("go", "build", "-o", agentBin, "../cmd/clusterctl-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build agent: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return agentBin
}

// processTiming: fast failure detection through the product's own config;
// reconnection at the production interval, since that is what heals.
func processTiming() agentconfig.Timing {
	return agentconfig.Timing{
		ProbeInterval:    agentconfig.Duration(300 * time.Millisecond),
		ProbeTimeout:     agentconfig.Duration(150 * time.Millisecond),
		SuspicionMult:    2,
		GossipInterval:   agentconfig.Duration(100 * time.Millisecond),
		PushPullInterval: agentconfig.Duration(5 * time.Second),
		TCPTimeout:       agentconfig.Duration(2 * time.Second),
	}
}

type proc struct {
	name string
	node *netnstest.Node
	dir  string
	cfg  agentconfig.Config
	cmd  *exec.Cmd
	log  string
}

var testKey = []byte("0123456789abcdef")

func newProc(t *testing.T, node *netnstest.Node, name string, seeds []string) *proc {
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return &proc{name: name, node: node, dir: dir, log: filepath.Join(dir, "agent.log"), cfg: agentconfig.Config{
		Cluster: "heal", Name: name, Nonce: name + "-n1", Provider: "test", InstanceID: "i-" + name,
		Key: testKey, BindAddr: node.Addr.String(), Port: 7946, AdvertiseAddr: node.Addr.String(),
		Seeds: seeds, StateDir: filepath.Join(dir, "state"), Timing: processTiming(),
	}}
}

// start writes the config and starts the agent in its namespace.
func (p *proc) start(t *testing.T) {
	t.Helper()
	if p.cfg.Validate() != nil { // a new name or nonce: a new identity
		id, err := agentconfig.NewIdentity(identitytest.CA(p.cfg.Cluster), p.cfg.Name, p.cfg.Nonce)
		if err != nil {
			t.Fatal(err)
		}
		p.cfg.Identity = id
	}
	b, _ := json.Marshal(p.cfg)
	cfgPath := filepath.Join(p.dir, "agent.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = p.node.Command(agentBinary(t), "-config", cfgPath)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	cmd := p.cmd
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
}

// kill stops the agent with SIGKILL (a crash or power cut).
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_, _ = p.cmd.Process.Wait()
}

var memberLine = regexp.MustCompile(`msg="member [^"]*" .*\bmember=(\S+) .*\bstate=(\S+)`)

// view is the agent's last logged state of every member it knows. After a
// restart, only the lines of the current run count.
func (p *proc) view() map[string]string {
	f, err := os.Open(p.log)
	if err != nil {
		return nil
	}
	defer f.Close()
	v := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, `msg="clusterctl-agent starting"`) {
			v = map[string]string{}
		}
		if m := memberLine.FindStringSubmatch(line); m != nil {
			v[m[1]] = m[2]
		}
	}
	return v
}

// lastStart is the time of the agent's last "starting" line.
func (p *proc) lastStart(t *testing.T) time.Time {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	var last time.Time
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, `msg="clusterctl-agent starting"`) {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if last, err = time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Fatalf("log line without a time: %q", line)
		}
	}
	if last.IsZero() {
		t.Fatalf("%s: no start line in %s", p.name, p.log)
	}
	return last
}

// waitViews waits until every agent in ps sees each of names in the state
// want, and returns how long that took; it fails t after limit.
func waitViews(t *testing.T, ps []*proc, names []string, want nodeapi.MemberStatus, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok := true
		var bad []string
		for _, p := range ps {
			v := p.view()
			for _, n := range names {
				if v[n] != string(want) {
					ok = false
					bad = append(bad, fmt.Sprintf("%s sees %s %q", p.name, n, v[n]))
				}
			}
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("after %s not every agent sees %v %s: %s", limit, names, want, strings.Join(bad, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func names(ps []*proc) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.name)
	}
	return out
}

// startBatch starts n agents: the first alone, the rest with its address
// as their only seed (how the cluster layer starts a cloud batch).
func startBatch(t *testing.T, net *netnstest.Net, n int) []*proc {
	var ps []*proc
	for i := 1; i <= n; i++ {
		node := net.AddNode()
		var seeds []string
		if i > 1 {
			seeds = []string{ps[0].cfg.AdvertiseAddr + ":7946"}
		}
		p := newProc(t, node, fmt.Sprintf("n%d", i), seeds)
		p.start(t)
		ps = append(ps, p)
	}
	waitViews(t, ps, names(ps), nodeapi.StatusAlive, 60*time.Second)
	return ps
}

func TestPartitionHealsByItself(t *testing.T) {
	netnstest.Require(t)
	net := netnstest.New(t)
	ps := startBatch(t, net, 6)
	left, right := ps[:3], ps[3:]

	// A 50/50 split that lasts until each side has declared the other
	// failed: only serf's reconnection can bring them back together.
	for _, p := range right {
		p.node.Cut()
	}
	waitViews(t, left, names(right), nodeapi.StatusFailed, 60*time.Second)
	waitViews(t, right, names(left), nodeapi.StatusFailed, 60*time.Second)
	for _, p := range right {
		p.node.Restore()
	}
	took := waitViews(t, ps, names(ps), nodeapi.StatusAlive, 60*time.Second)
	t.Logf("3/3 split healed %s after the links came back", took.Round(100*time.Millisecond))

	// A single node cut off, then back.
	ps[0].node.Cut()
	waitViews(t, ps[1:], []string{"n1"}, nodeapi.StatusFailed, 60*time.Second)
	ps[0].node.Restore()
	took = waitViews(t, ps, names(ps), nodeapi.StatusAlive, 60*time.Second)
	t.Logf("a single node cut off rejoined %s after its link came back", took.Round(100*time.Millisecond))
}

func TestRestartRejoinsFromSnapshot(t *testing.T) {
	netnstest.Require(t)
	net := netnstest.New(t)
	ps := startBatch(t, net, 4)

	// n3 crashes and comes back with no seeds: its snapshot must bring it
	// back. So must n1, the only seed anyone had.
	for _, p := range []*proc{ps[2], ps[0]} {
		p.kill()
		others := []*proc{}
		for _, o := range ps {
			if o != p {
				others = append(others, o)
			}
		}
		waitViews(t, others, []string{p.name}, nodeapi.StatusFailed, 60*time.Second)
		p.cfg.Seeds = nil
		launched := time.Now()
		p.start(t)
		waitViews(t, ps, names(ps), nodeapi.StatusAlive, 60*time.Second)
		all := time.Now()
		// Split the figure: starting the process in its namespace (slow on
		// a loaded machine) is not the rejoin.
		up := p.lastStart(t)
		t.Logf("%s restarted without seeds: its first log line %s after the exec, all saw all alive %s after that",
			p.name, up.Sub(launched).Round(100*time.Millisecond), all.Sub(up).Round(100*time.Millisecond))
		if fi, err := os.Stat(filepath.Join(p.cfg.StateDir, "serf.snapshot")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("snapshot: %v, mode %v; want 0600", err, fi.Mode().Perm())
		}
		if fi, err := os.Stat(p.cfg.StateDir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("state dir: %v; want mode 0700", err)
		}
	}
}

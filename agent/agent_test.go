package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/identity/identitytest"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/clusterctl/clusterctl/internal/testkit"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// testTiming shortens the gossip timings (through the same config the
// product uses) so that joins, failures and leaves show up within a second
// on loopback. The retransmit multiplier stays the product's: with 2, a
// member that had just joined missed every copy of a key query
// (TestKeyRotation failed 4 runs in 6).
// testKey is the gossip key of the test agents.
var testKey = bytes.Repeat([]byte{0x5a}, 32)

func testTiming() agentconfig.Timing {
	return agentconfig.Timing{
		ProbeInterval:     agentconfig.Duration(200 * time.Millisecond),
		ProbeTimeout:      agentconfig.Duration(100 * time.Millisecond),
		SuspicionMult:     2,
		GossipInterval:    agentconfig.Duration(20 * time.Millisecond),
		PushPullInterval:  agentconfig.Duration(time.Second),
		TCPTimeout:        agentconfig.Duration(time.Second),
		ReconnectInterval: agentconfig.Duration(500 * time.Millisecond),
		DeadNodeReclaim:   agentconfig.Duration(100 * time.Millisecond),
	}
}

func testOptions() options {
	o := defaultOptions()
	o.joinMin, o.joinMax = 20*time.Millisecond, 200*time.Millisecond
	o.rejoinInterval = 200 * time.Millisecond
	return o
}

// tbl is the agent's member table.
func (r *runningAgent) tbl() *memberTable {
	g, err := r.gossipOrErr()
	if err != nil {
		panic(err)
	}
	return g.table
}

func testConfig(name string) agentconfig.Config {
	return agentconfig.Config{
		Cluster:       "test",
		Name:          name,
		Nonce:         name + "-nonce-1",
		Provider:      "fake",
		InstanceID:    "i-" + name,
		Tags:          map[string]string{"role": "worker"},
		Key:           testKey,
		BindAddr:      "127.0.0.1",
		Port:          0,
		AdvertiseAddr: "127.0.0.1",
		Timing:        testTiming(),
	}
}

// issued returns cfg with an identity for its cluster, name and nonce from
// the test CA of its cluster.
func issued(cfg agentconfig.Config) agentconfig.Config {
	id, err := agentconfig.NewIdentity(identitytest.CA(cfg.Cluster), cfg.Name, cfg.Nonce)
	if err != nil {
		panic(err)
	}
	cfg.Identity = id
	return cfg
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type runningAgent struct {
	*Agent
	cancel context.CancelFunc
	done   chan error // receives Run's result
	addr   string     // "127.0.0.1:port"
}

// startAgent runs an agent and waits until its gossip port is open.
func startAgent(t *testing.T, cfg agentconfig.Config, opts options) *runningAgent {
	t.Helper()
	a, err := newAgent(issued(cfg), testLogger(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{Agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	wctx := testCtx(t)
	for {
		if host, port, err := a.localAddr(); err == nil {
			r.addr = net.JoinHostPort(host, strconv.Itoa(port))
			break
		}
		select {
		case err := <-r.done:
			t.Fatalf("agent %s stopped while starting: %v", cfg.Name, err)
		case <-wctx.Done():
			t.Fatalf("agent %s did not start", cfg.Name)
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the agent and waits (bounded) for Run to return nil.
func (r *runningAgent) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("Run did not return after cancel")
	}
}

// testLogger logs to stderr when AGENT_TEST_LOG is set (debug level), and
// nowhere otherwise. (Not t.Log: memberlist may log after a test ends.)
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("AGENT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return discardLogger()
}

// waitMember waits (bounded by ctx) until the agent's table tb lists node
// name in a state for which ok returns true.
func waitMember(ctx context.Context, t *testing.T, tb *memberTable, name string, ok func(Member) bool) Member {
	t.Helper()
	m, err := tb.wait(ctx, func(tb *memberTable) (Member, bool, error) {
		m, found := tb.members[name]
		return m, found && ok(m), nil
	})
	if err != nil {
		list, _ := tb.snapshot(agentconfig.RoleNode)
		t.Fatalf("waiting for %s: %v; members: %+v", name, err, list)
	}
	return m
}

// nonceIn waits (bounded by ctx) until the agent's table tb has seen a
// node with nonce alive, and returns that node's latest record.
func nonceIn(ctx context.Context, tb *memberTable, nonce string) (Member, error) {
	m, err := tb.wait(ctx, func(tb *memberTable) (Member, bool, error) {
		m, ok := tb.byNonce[nonce]
		return m, ok && m.Meta.Role == agentconfig.RoleNode, nil
	})
	if err != nil {
		return Member{}, fmt.Errorf("waiting for a node with nonce %q: %w", nonce, err)
	}
	return m, nil
}

// states lists the nodes in tb as "name=state", sorted by name.
func states(tb *memberTable) string {
	list, _ := tb.snapshot(agentconfig.RoleNode)
	var out []string
	for _, m := range list {
		out = append(out, m.Name+"="+string(m.State))
	}
	return strings.Join(out, " ")
}

func TestAgentsJoinAndSeeEachOther(t *testing.T) {
	ctx := testCtx(t)
	red := startAgent(t, testConfig("red"), testOptions())
	blueCfg := testConfig("blue")
	blueCfg.Seeds = []string{red.addr}
	blue := startAgent(t, blueCfg, testOptions())

	// blue learns red's tags from its join.
	m, err := nonceIn(ctx, blue.tbl(), "red-nonce-1")
	if err != nil {
		t.Fatal(err)
	}
	hostname, _ := os.Hostname()
	want := Member{Name: "red", Addr: "127.0.0.1", Port: portOf(t, red.addr), State: nodeapi.StatusAlive, Meta: agentconfig.Meta{
		Cluster: "test", Name: "red", Nonce: "red-nonce-1", Provider: "fake", InstanceID: "i-red",
		Hostname: hostname, Role: agentconfig.RoleNode, Tags: map[string]string{"role": "worker"},
	}}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("blue's record of red:\n got %+v\nwant %+v", m, want)
	}
	if _, err := nonceIn(ctx, red.tbl(), "blue-nonce-1"); err != nil {
		t.Fatal(err)
	}

	// A node that joins blue while red is already waiting for it: gossip
	// carries it to red.
	got := make(chan error, 1)
	go func() {
		m, err := nonceIn(ctx, red.tbl(), "green-nonce-1")
		if err == nil && m.Name != "green" {
			err = fmt.Errorf("nonce green-nonce-1 is %q's", m.Name)
		}
		got <- err
	}()
	greenCfg := testConfig("green")
	greenCfg.Seeds = []string{blue.addr}
	startAgent(t, greenCfg, testOptions())
	if err := <-got; err != nil {
		t.Fatal(err)
	}

	if got := states(red.tbl()); got != "blue=alive green=alive red=alive" {
		t.Errorf("red's members: %s, want the three nodes alive", got)
	}
}

func portOf(t *testing.T, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func TestWaitNonceIgnoresStaleNodeWithSameName(t *testing.T) {
	ctx := testCtx(t)
	seed := startAgent(t, testConfig("seed"), testOptions())
	view := seed.tbl()

	// The old incarnation of "red" crashes (no leave) ...
	oldCfg := testConfig("red")
	oldCfg.Nonce = "old"
	oldCfg.Seeds = []string{seed.addr}
	old := startAgent(t, oldCfg, testOptions()) // stopping it is no leave
	if _, err := nonceIn(ctx, view, "old"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := nonceIn(short, view, "new")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("nonce new while only the old red exists: err = %v, want deadline exceeded", err)
	}
	old.stop(t)
	waitMember(ctx, t, view, "red", func(m Member) bool { return m.State == nodeapi.StatusFailed })

	// ... and is re-created at another address (port) with a new nonce.
	newCfg := testConfig("red")
	newCfg.Nonce = "new"
	newCfg.Seeds = []string{seed.addr}
	fresh := startAgent(t, newCfg, testOptions())
	m, err := nonceIn(ctx, view, "new")
	if err != nil {
		t.Fatal(err)
	}
	if m.Meta.Nonce != "new" || m.Port != portOf(t, fresh.addr) || m.State != nodeapi.StatusAlive {
		t.Errorf("nonce new = %+v, want the new red at port %d", m, portOf(t, fresh.addr))
	}
	// The old nonce is still known, as it was last seen.
	if m, err := nonceIn(ctx, view, "old"); err != nil || m.State != nodeapi.StatusFailed || m.Port != portOf(t, old.addr) {
		t.Errorf("nonce old = %+v, %v; want the old red, dead", m, err)
	}
}

func TestIsolation(t *testing.T) {
	wrongKeyCfg := testConfig("wrongkey")
	wrongKeyCfg.Key = []byte("0123456789abcdef0123456789abcdef")
	wrongKey := startAgent(t, wrongKeyCfg, testOptions())
	otherClusterCfg := testConfig("other")
	otherClusterCfg.Cluster = "prod"
	otherCluster := startAgent(t, otherClusterCfg, testOptions())

	good := startAgent(t, testConfig("good"), testOptions())
	goodG, _ := good.gossipOrErr()
	for _, a := range []*runningAgent{wrongKey, otherCluster} {
		if n, err := goodG.join([]string{a.addr}); err == nil {
			t.Errorf("good joined %s (%d reached), want isolation", a.cfg.Name, n)
		}
	}
	// And they cannot join good's cluster either.
	for _, a := range []*runningAgent{wrongKey, otherCluster} {
		g, _ := a.gossipOrErr()
		if n, err := g.serf.Join([]string{good.addr}, true); err == nil {
			t.Errorf("%s joined the test cluster (%d reached)", a.cfg.Name, n)
		}
	}
	time.Sleep(300 * time.Millisecond) // a gossip round or more
	if got := states(good.tbl()); got != "good=alive" {
		t.Errorf("good's members: %s, want only good", got)
	}
}

func TestLeaveShowsLeftAndStopShowsFailed(t *testing.T) {
	ctx := testCtx(t)
	red := startAgent(t, testConfig("red"), testOptions())
	var others []*runningAgent
	for _, name := range []string{"blue", "green"} {
		cfg := testConfig(name)
		cfg.Seeds = []string{red.addr}
		others = append(others, startAgent(t, cfg, testOptions()))
	}
	for _, n := range []string{"blue-nonce-1", "green-nonce-1"} {
		if _, err := nonceIn(ctx, red.tbl(), n); err != nil {
			t.Fatal(err)
		}
	}
	if err := others[0].Leave(ctx, "wrong"); !errors.Is(err, nodeapi.ErrWrongNonce) {
		t.Errorf("Leave with another nonce: err = %v, want ErrWrongNonce", err)
	}
	if err := others[0].Leave(ctx, "blue-nonce-1"); err != nil {
		t.Fatal(err)
	}
	others[1].stop(t) // SIGTERM: no leave; the node is expected back
	waitMember(ctx, t, red.tbl(), "blue", func(m Member) bool { return m.State == nodeapi.StatusLeft })
	waitMember(ctx, t, red.tbl(), "green", func(m Member) bool { return m.State == nodeapi.StatusFailed })
	if got := states(red.tbl()); got != "blue=left green=failed red=alive" {
		t.Errorf("red's members: %s, want blue left, green failed, red alive", got)
	}
}

// TestGossipQueryCannotMakeANodeLeave: a member holding the gossip key
// sends the query the CLI's old observer used to make a node leave; the
// node stays (only the mutually authenticated API's Leave ends it).
func TestGossipQueryCannotMakeANodeLeave(t *testing.T) {
	ctx := testCtx(t)
	red := startAgent(t, testConfig("red"), testOptions())
	blueCfg := testConfig("blue")
	blueCfg.Seeds = []string{red.addr}
	blue := startAgent(t, blueCfg, testOptions())
	if _, err := nonceIn(ctx, blue.tbl(), "red-nonce-1"); err != nil {
		t.Fatal(err)
	}
	g, _ := blue.gossipOrErr()
	payload, _ := json.Marshal(map[string]string{"name": "red", "nonce": "red-nonce-1"})
	resp, err := g.serf.Query("clusterctl-leave", payload, &serf.QueryParam{FilterNodes: []string{"red"}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for range resp.ResponseCh() {
		t.Error("red answered a gossip leave query")
	}
	select {
	case <-red.done:
		t.Fatal("red stopped after a gossip query")
	case <-time.After(500 * time.Millisecond):
	}
	if m := waitMember(ctx, t, blue.tbl(), "red", func(Member) bool { return true }); m.State != nodeapi.StatusAlive {
		t.Errorf("red is %s, want alive", m.State)
	}
}

func TestHostsFileFollowsMembers(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	outside := "127.0.0.1 localhost\n# keep me\n"
	redHosts := filepath.Join(dir, "red-hosts")
	if err := os.WriteFile(redHosts, []byte(outside), 0o644); err != nil {
		t.Fatal(err)
	}
	redCfg := testConfig("red")
	redCfg.HostsFile, redCfg.Domain = redHosts, "lab"
	red := startAgent(t, redCfg, testOptions())

	// A member with the gossip key but no identity is never listed,
	// whatever name it takes.
	intruder := startIntruder(t, "db", "127.0.0.9", map[string]string{"cluster": "test", "name": "db", "role": "node", "nonce": "x"}, red.addr)

	blueCfg := testConfig("blue")
	blueCfg.Seeds = []string{red.addr}
	blueCfg.AdvertiseAddr = "127.0.0.2" // a second loopback address, to tell lines apart
	blueCfg.BindAddr = "127.0.0.2"
	blue := startAgent(t, blueCfg, testOptions())

	waitHosts(ctx, t, redHosts, []HostEntry{{"127.0.0.2", "blue"}, {"127.0.0.1", "red"}})
	data, _ := os.ReadFile(redHosts)
	want := outside + HostsBegin + "\n127.0.0.2 blue.lab blue\n127.0.0.1 red.lab red\n" + HostsEnd + "\n"
	if string(data) != want {
		t.Errorf("hosts file:\n%s\nwant:\n%s", data, want)
	}

	// A node that stops without leaving (failed: maybe a partition) keeps
	// its line; a node that left for good loses it.
	greenCfg := testConfig("green")
	greenCfg.Seeds = []string{red.addr}
	greenCfg.AdvertiseAddr, greenCfg.BindAddr = "127.0.0.3", "127.0.0.3"
	green := startAgent(t, greenCfg, testOptions())
	waitHosts(ctx, t, redHosts, []HostEntry{{"127.0.0.2", "blue"}, {"127.0.0.3", "green"}, {"127.0.0.1", "red"}})
	green.stop(t)
	waitMember(ctx, t, red.tbl(), "green", func(m Member) bool { return m.State == nodeapi.StatusFailed })
	if err := blue.Leave(ctx, "blue-nonce-1"); err != nil {
		t.Fatal(err)
	}
	for _, a := range []*runningAgent{red, blue} {
		if ms, _ := a.tbl().snapshot(""); slices.ContainsFunc(ms, func(m Member) bool { return m.Name == "db" }) {
			t.Errorf("%s lists the intruder db (known to it: %d members)", a.cfg.Name, len(intruder.Members()))
		}
	}
	waitHosts(ctx, t, redHosts, []HostEntry{{"127.0.0.3", "green"}, {"127.0.0.1", "red"}})
	data, _ = os.ReadFile(redHosts)
	if !strings.HasPrefix(string(data), outside) {
		t.Errorf("content outside the block changed:\n%s", data)
	}
}

// startIntruder runs a plain serf member that holds the gossip key and the
// cluster's label, and nothing else: no identity from the CA. It joins
// addr with tags of its choice, as name, and returns the serf member.
func startIntruder(t *testing.T, name, bind string, tags map[string]string, addr string) *serf.Serf {
	t.Helper()
	kr, err := memberlist.NewKeyring(nil, testKey)
	if err != nil {
		t.Fatal(err)
	}
	sc := serf.DefaultConfig()
	sc.NodeName = name
	sc.Tags = tags
	sc.LogOutput = io.Discard
	sc.MemberlistConfig = memberlist.DefaultLocalConfig()
	sc.MemberlistConfig.Name = name
	sc.MemberlistConfig.Label = "test"
	sc.MemberlistConfig.Keyring = kr
	sc.MemberlistConfig.BindAddr, sc.MemberlistConfig.BindPort = bind, 0
	sc.MemberlistConfig.AdvertiseAddr = bind
	sc.MemberlistConfig.LogOutput = io.Discard
	s, err := serf.Create(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown() })
	_, _ = s.Join([]string{addr}, true) // refused: its push/pull carries itself
	return s
}

// waitHosts waits (bounded by ctx) until the block of the hosts file at
// path lists exactly want.
func waitHosts(ctx context.Context, t *testing.T, path string, want []HostEntry) {
	t.Helper()
	var got []HostEntry
	for {
		data, err := os.ReadFile(path)
		if err == nil {
			got = ParseHostsBlock(data)
			if reflect.DeepEqual(got, want) {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("hosts file %s lists %v, want %v", path, got, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestJoinRetriesUntilSeedAppears(t *testing.T) {
	ctx := testCtx(t)
	port := testkit.FreePort(t, "127.0.0.1")
	blueCfg := testConfig("blue")
	blueCfg.Seeds = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	joined := make(chan struct{})
	opts := testOptions()
	opts.onJoined = func(time.Time) { close(joined) }
	startAgent(t, blueCfg, opts) // its seed is not up yet

	redCfg := testConfig("red")
	redCfg.Port = port
	red := startAgent(t, redCfg, testOptions())
	select {
	case <-joined:
	case <-ctx.Done():
		t.Fatal("blue never joined red")
	}
	if _, err := nonceIn(ctx, red.tbl(), "blue-nonce-1"); err != nil {
		t.Fatal(err)
	}
}

func TestAdvertiseCIDR(t *testing.T) {
	ctx := testCtx(t)
	calls := 0
	opts := testOptions()
	opts.advertisePoll = 5 * time.Millisecond
	opts.interfaceAddrs = func() ([]net.Addr, error) {
		calls++
		if calls < 3 { // the address shows up on the third look
			return []net.Addr{&net.IPNet{IP: net.ParseIP("10.0.2.15"), Mask: net.CIDRMask(24, 32)}}, nil
		}
		return []net.Addr{
			&net.IPNet{IP: net.ParseIP("10.0.2.15"), Mask: net.CIDRMask(24, 32)},
			&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
		}, nil
	}
	cfg := testConfig("red")
	cfg.AdvertiseAddr, cfg.AdvertiseCIDR = "", "127.0.0.0/8"
	a, err := newAgent(issued(cfg), nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.advertiseAddr(ctx)
	if err != nil || got.String() != "127.0.0.1" {
		t.Errorf("advertiseAddr = %v, %v; want 127.0.0.1", got, err)
	}

	// When no address ever shows up, Run gives up with an error naming the CIDR.
	cfg.AdvertiseCIDR = "192.168.56.0/24"
	opts.advertiseWait = 100 * time.Millisecond
	a, err = newAgent(issued(cfg), nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(ctx); err == nil || !strings.Contains(err.Error(), `"192.168.56.0/24"`) {
		t.Errorf("Run = %v, want an error naming the CIDR", err)
	}
}

func TestLoneAgentRejoinsSeeds(t *testing.T) {
	ctx := testCtx(t)
	port := testkit.FreePort(t, "127.0.0.1")
	redCfg := testConfig("red")
	redCfg.Port = port
	red := startAgent(t, redCfg, testOptions()) // stopping it is no leave

	blueCfg := testConfig("blue")
	blueCfg.Seeds = []string{red.addr}
	blue := startAgent(t, blueCfg, testOptions())
	if _, err := blue.tbl().wait(ctx, func(tb *memberTable) (Member, bool, error) {
		return Member{}, tb.members["red"].State == nodeapi.StatusAlive, nil
	}); err != nil {
		t.Fatal(err)
	}

	// red loses power; blue is alone and declares it dead.
	red.stop(t)
	if _, err := blue.tbl().wait(ctx, func(tb *memberTable) (Member, bool, error) {
		return Member{}, tb.members["red"].State == nodeapi.StatusFailed, nil
	}); err != nil {
		t.Fatal(err)
	}

	// red comes back at the same address with no seeds of its own: only
	// blue's periodic rejoin can bring the two together again.
	redCfg.Nonce = "red-nonce-2"
	red2 := startAgent(t, redCfg, testOptions())
	if _, err := nonceIn(ctx, red2.tbl(), "blue-nonce-1"); err != nil {
		t.Fatalf("blue did not rejoin: %v", err)
	}
}

// A node whose first join fails (a seed still booting, a loaded seed) must
// keep knocking every few seconds: in a batch nobody else knows it yet.
func TestJoinBackoffIsCappedAndJittered(t *testing.T) {
	o := defaultOptions()
	b := backoff{min: o.joinMin, max: o.joinMax}
	distinct := map[time.Duration]bool{}
	for i := range 50 {
		d := b.next()
		base := min(o.joinMin<<min(i, 30), o.joinMax)
		if d < base || d > base+base/5 {
			t.Fatalf("retry %d waits %s; want %s plus at most 20 %%", i+1, d, base)
		}
		if i >= 5 {
			distinct[d] = true
		}
	}
	if o.joinMax > 5*time.Second {
		t.Errorf("the join backoff is capped at %s; a batch node outside for that long is not seen by anyone", o.joinMax)
	}
	if len(distinct) < 2 {
		t.Errorf("capped retries all wait the same %v: no jitter", distinct)
	}
}

// serf's snapshot loses the lines it buffered when the agent is killed
// (kill -9, a power cut); the agent must still rejoin the members it knew,
// with no seeds and with nobody reconnecting to it.
func TestRestartWithLostSnapshotRejoinsRememberedMembers(t *testing.T) {
	ctx := testCtx(t)
	noReconnect := testOptions()
	noReconnect.tune = func(sc *serf.Config) { sc.ReconnectInterval = time.Hour }
	red := startAgent(t, testConfig("red"), noReconnect)

	blueCfg := testConfig("blue")
	blueCfg.Seeds = []string{red.addr}
	blueCfg.StateDir = t.TempDir()
	blue := startAgent(t, blueCfg, noReconnect)
	peers := filepath.Join(blueCfg.StateDir, peersFile)
	waitFile(ctx, t, peers, red.addr)
	if fi, err := os.Stat(peers); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, mode %v; want 0600", peers, err, fi.Mode().Perm())
	}

	blue.stop(t)
	waitState(ctx, t, red.tbl(), "blue", nodeapi.StatusFailed)
	// What kill -9 leaves when serf had not flushed its buffered lines.
	if err := os.Truncate(filepath.Join(blueCfg.StateDir, snapshotFile), 0); err != nil {
		t.Fatal(err)
	}
	blueCfg.Seeds = nil
	blue = startAgent(t, blueCfg, noReconnect)
	waitState(ctx, t, blue.tbl(), "red", nodeapi.StatusAlive)
	waitState(ctx, t, red.tbl(), "blue", nodeapi.StatusAlive)

	// A node that leaves for good forgets them: restarted, it stays alone.
	blue.requestLeave()
	waitState(ctx, t, red.tbl(), "blue", nodeapi.StatusLeft)
	if _, err := os.Stat(peers); !os.IsNotExist(err) {
		t.Fatalf("after a leave, %s: %v; want it removed", peers, err)
	}
	blue = startAgent(t, blueCfg, noReconnect)
	time.Sleep(time.Second) // many retry periods of testOptions
	if n := blue.tbl().aliveOthers("blue"); n != 0 {
		t.Errorf("a node that left rejoined %d member(s) after a restart", n)
	}
}

func waitFile(ctx context.Context, t *testing.T, path, want string) {
	t.Helper()
	for {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), want) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never listed %s", path, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func waitState(ctx context.Context, t *testing.T, tb *memberTable, name string, state nodeapi.MemberStatus) {
	t.Helper()
	if _, err := tb.wait(ctx, func(tb *memberTable) (Member, bool, error) {
		return Member{}, tb.members[name].State == state, nil
	}); err != nil {
		t.Fatalf("waiting for %s to be %s: %v", name, state, err)
	}
}

// TestSerfShutdownEndsRun: when serf shuts itself down (here: it loses
// serf's name-conflict vote to another granted incarnation of its name),
// Run returns an error, so the process exits non-zero and systemd restarts
// it, instead of serving a frozen view.
func TestSerfShutdownEndsRun(t *testing.T) {
	ctx := testCtx(t)
	red := startAgent(t, testConfig("red"), testOptions())
	var yellows []*runningAgent
	for i, addr := range []string{"127.0.0.2", "127.0.0.3"} {
		cfg := testConfig("yellow")
		cfg.Nonce = fmt.Sprintf("yellow-nonce-%d", i)
		cfg.BindAddr, cfg.AdvertiseAddr = addr, addr
		cfg.Seeds = []string{red.addr}
		yellows = append(yellows, startAgent(t, cfg, testOptions()))
		if i == 0 {
			waitMember(ctx, t, red.tbl(), "yellow", func(m Member) bool { return m.State == nodeapi.StatusAlive && m.Addr == addr })
		}
	}
	select {
	case err := <-yellows[0].done:
		if !errors.Is(err, errSerfShutdown) {
			t.Fatalf("the older yellow's Run = %v, want errSerfShutdown", err)
		}
		close(yellows[0].done)
	case err := <-yellows[1].done:
		if !errors.Is(err, errSerfShutdown) {
			t.Fatalf("the newer yellow's Run = %v, want errSerfShutdown", err)
		}
		close(yellows[1].done)
	case <-ctx.Done():
		t.Fatal("neither yellow stopped after the name conflict")
	}
}

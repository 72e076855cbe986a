package nodeapi

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/pki"
	"github.com/clusterctl/clusterctl/internal/testkit"
)

func TestMembersAndEventStream(t *testing.T) {
	c := newTestCluster(t, 3, serfOptions{local: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	snap, err := c.client.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Members) != 3 {
		t.Fatalf("Members: %d members, want 3: %+v", len(snap.Members), snap.Members)
	}
	for _, m := range snap.Members {
		if m.Status != StatusAlive || m.Tags[TagNonce] != "nonce-"+m.Name || m.Addr != "127.0.0.1" || m.Port == 0 {
			t.Errorf("member %+v", m)
		}
	}
	if c.node(snap.Node) == nil {
		t.Fatalf("answered by %q", snap.Node)
	}

	updates := c.client.Follow(ctx)
	first := next(t, updates, 5*time.Second)
	if first.Kind != UpdateSnapshot || len(first.Snapshot.Members) != 3 || first.Snapshot.Node != first.From.Name {
		t.Fatalf("first update %+v, want a snapshot of 3 members", first)
	}
	c.add("n4")
	u := until(t, updates, 10*time.Second, "the join of n4", func(u Update) bool {
		return u.Kind == UpdateEvent && u.Event.Member.Name == "n4"
	})
	if u.Event.Type != EventJoin || u.Event.Member.Status != StatusAlive || u.Event.Member.Tags[TagNonce] != "nonce-n4" {
		t.Fatalf("event %+v", u.Event)
	}
}

// rawGet makes a GET over a TLS connection with cfg and returns what the
// server sent back, or the error.
func rawGet(addr string, cfg *tls.Config, laddr string) (*http.Response, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if laddr != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(laddr)}
	}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET "+PathMembers+" HTTP/1.1\r\nHost: n1\r\n\r\n"); err != nil {
		return nil, err
	}
	return http.ReadResponse(bufio.NewReader(conn), nil)
}

func TestRefusedPeersGetNothingAndAreLoggedOnceAMinute(t *testing.T) {
	c := newTestCluster(t, 1, serfOptions{local: true})
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	nd := c.serve("n1", c.node("n1").m, func(s *server) { s.now = func() time.Time { return time.Unix(0, clock.Load()) } })

	good, _ := c.ca.IssueCLI()
	// A CLI certificate that expired yesterday.
	expiredCA := *c.ca
	expiredCA.Now = func() time.Time { return time.Now().Add(-pki.CLIValidity - 24*time.Hour) }
	expired, err := expiredCA.IssueCLI()
	if err != nil {
		t.Fatal(err)
	}
	// A CA of another cluster that happens to have the same name.
	foreignCA, err := pki.Create(t.TempDir(), "lab")
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := foreignCA.IssueCLI()
	// A node's certificate (it travels in user-data) is not the CLI's.
	nodeCreds, _ := c.ca.IssueNode("n2", nil)

	cfg := func(cr pki.Credentials, role pki.Role) *tls.Config {
		// The client side is built by hand so that the bad ones can be
		// presented at all.
		pair, err := tls.X509KeyPair(cr.CertPEM, cr.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		ok, _ := good.ClientTLS("n1")
		ok.Certificates = []tls.Certificate{pair}
		return ok
	}
	noCert, _ := good.ClientTLS("n1")
	noCert.Certificates = nil

	if resp, err := rawGet(nd.ep.Addr, cfg(good, pki.RoleCLI), ""); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the CLI's own certificate: %v", err)
	}
	refused := map[string]*tls.Config{
		"expired":   cfg(expired, pki.RoleCLI),
		"foreign":   cfg(foreign, pki.RoleCLI),
		"node cert": cfg(nodeCreds, pki.RoleNode),
		"none":      noCert,
	}
	for name, cc := range refused {
		resp, err := rawGet(nd.ep.Addr, cc, "")
		if err == nil {
			t.Errorf("%s: the server answered %s", name, resp.Status)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
	// Four refusals from 127.0.0.1 within a minute: one log line.
	testkit.WaitFor(t, "the refusal to be logged", 5*time.Second, func() bool { return nd.log.count("refused a peer") >= 1 })
	time.Sleep(100 * time.Millisecond)
	if n := nd.log.count("refused a peer"); n != 1 {
		t.Fatalf("%d log lines for 4 refusals of one address within a minute, want 1:\n%s", n, nd.log.buf.String())
	}
	// Another address is logged on its own.
	if _, err := rawGet(nd.ep.Addr, noCert, "127.0.0.2"); err == nil {
		t.Fatal("no certificate from 127.0.0.2: answered")
	}
	testkit.WaitFor(t, "the refusal of 127.0.0.2", 5*time.Second, func() bool { return nd.log.count("peer=127.0.0.2") == 1 })
	// A minute later the first address is logged again, with the count of
	// refusals kept quiet.
	clock.Add(int64(61 * time.Second))
	if _, err := rawGet(nd.ep.Addr, refused["foreign"], ""); err == nil {
		t.Fatal("foreign: answered")
	}
	testkit.WaitFor(t, "the second log line for 127.0.0.1", 5*time.Second, func() bool { return nd.log.count("peer=127.0.0.1") == 2 })
	if !strings.Contains(nd.log.buf.String(), "refused_since_last_log=3") {
		t.Errorf("the second line does not count the 3 quiet refusals:\n%s", nd.log.buf.String())
	}
	for _, secret := range []string{"PRIVATE KEY", string(good.KeyPEM[40:80])} {
		if nd.log.count(secret) != 0 {
			t.Error("the log shows key material")
		}
	}
}

func TestClientRefusesAServerOfAnotherCAOrName(t *testing.T) {
	c := newTestCluster(t, 1, serfOptions{local: true})
	ctx := context.Background()
	// Same cluster name, another CA: the CLI of that cluster gets nothing
	// from this node, and this CLI would not trust that node.
	otherCA, _ := pki.Create(t.TempDir(), "lab")
	otherCLI, _ := otherCA.IssueCLI()
	other, _ := NewClient(otherCLI, c.endpoints)
	other.ConnectTimeout = time.Second
	if _, err := other.Members(ctx); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("a client of another CA: %v", err)
	}
	// The right CA, but the address of n1 under another name.
	cli, _ := c.ca.IssueCLI()
	wrong, _ := NewClient(cli, Endpoints(Endpoint{Name: "n9", Addr: c.node("n1").ep.Addr}))
	_, err := wrong.Members(ctx)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "n9") {
		t.Fatalf("n1 answering for n9: %v", err)
	}
}

func TestFollowMovesOnWhenTheNodeGoesAwayAndResyncs(t *testing.T) {
	c := newTestCluster(t, 3, serfOptions{local: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	updates := c.client.Follow(ctx)
	first := next(t, updates, 5*time.Second)
	if first.Kind != UpdateSnapshot {
		t.Fatalf("first update %+v", first)
	}
	gone := c.node(first.From.Name)
	// The node's API goes away; while no stream is up, n4 joins.
	gone.stop()
	c.add("n4")
	u := until(t, updates, 15*time.Second, "a snapshot from another node", func(u Update) bool { return u.Kind == UpdateSnapshot })
	if u.From.Name == gone.name {
		t.Fatalf("reconnected to %s, whose API is down", gone.name)
	}
	found := false
	for _, m := range u.Snapshot.Members {
		found = found || (m.Name == "n4" && m.Status == StatusAlive)
	}
	if !found {
		// The join may have reached the new node after its snapshot: then
		// it comes as an event. If every gossip copy of the join missed
		// that node, it learns it at the next push/pull (15 s in
		// memberlist's local timings), so the wait covers one of those.
		until(t, updates, 25*time.Second, "n4 after the move", func(u Update) bool {
			return u.Kind == UpdateEvent && u.Event.Member.Name == "n4"
		})
	}
}

// freezer is a TCP proxy whose traffic can be stopped without closing the
// connections: a network cut, as the client sees it.
type freezer struct {
	ln     net.Listener
	frozen chan struct{}
}

func newFreezer(t *testing.T, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, frozen: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); s.Close() })
			go f.copy(s, c)
			go f.copy(c, s)
		}
	}()
	return f
}

func (f *freezer) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		select {
		case <-f.frozen:
			<-make(chan struct{}) // hold the connection open, pass nothing
		default:
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func TestFollowNoticesASilentStream(t *testing.T) {
	c := newTestCluster(t, 2, serfOptions{local: true})
	n1 := c.node("n1")
	proxy := newFreezer(t, n1.ep.Addr)
	var mu sync.Mutex
	eps := []Endpoint{{Name: "n1", Addr: proxy.ln.Addr().String()}}
	cli, _ := c.ca.IssueCLI()
	client, _ := NewClient(cli, func() []Endpoint {
		mu.Lock()
		defer mu.Unlock()
		return eps
	})
	client.StreamIdle = 1500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	updates := client.Follow(ctx)
	if u := next(t, updates, 5*time.Second); u.Kind != UpdateSnapshot || u.From.Name != "n1" {
		t.Fatalf("first update %+v", u)
	}
	mu.Lock()
	eps = []Endpoint{eps[0], c.node("n2").ep} // read by the next connection attempt only
	mu.Unlock()
	close(proxy.frozen)
	cut := time.Now()
	u := until(t, updates, 10*time.Second, "a snapshot from n2", func(u Update) bool { return u.Kind == UpdateSnapshot && u.From.Name == "n2" })
	t.Logf("moved to %s %v after the cut", u.From.Name, time.Since(cut).Round(time.Millisecond))
}

func TestWaitMember(t *testing.T) {
	// The first node of a new cluster: it is the only member, so it is the
	// member that sees itself.
	c := newTestCluster(t, 1, serfOptions{local: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := c.client.WaitMember(ctx, "n1", "nonce-n1")
	if err != nil || m.Name != "n1" {
		t.Fatalf("WaitMember for the first node: %+v, %v", m, err)
	}
	// A node not made yet: WaitNonce returns when it has joined.
	got := make(chan error, 1)
	go func() {
		m, err := c.client.WaitMember(ctx, "n2", "nonce-n2")
		if err == nil && m.Name != "n2" {
			err = errors.New("wrong member " + m.Name)
		}
		got <- err
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("WaitMember returned before n2 existed: %v", err)
	default:
	}
	c.add("n2")
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	// A nonce nobody has, or n1's nonce under another name: ends with ctx.
	for _, name := range []string{"n1", "evil"} {
		short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
		nonce := map[string]string{"n1": "nonce-old", "evil": "nonce-n1"}[name]
		if _, err := c.client.WaitMember(short, name, nonce); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitMember(%s, %s): %v, want it to wait until ctx ends", name, nonce, err)
		}
		cancel2()
	}
}

func TestMembersUnreachable(t *testing.T) {
	ca, _ := pki.Create(t.TempDir(), "lab")
	cli, _ := ca.IssueCLI()
	// 50 nodes whose port takes the TCP connection but never answers TLS
	// (the kernel's backlog accepts it) and 50 whose port is closed.
	var eps []Endpoint
	for i := range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		eps = append(eps, Endpoint{Name: "silent" + string(rune('a'+i%26)), Addr: ln.Addr().String()})
		closed, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := closed.Addr().String()
		closed.Close()
		eps = append(eps, Endpoint{Name: "closed", Addr: addr})
	}
	client, _ := NewClient(cli, Endpoints(eps...))
	client.ConnectTimeout = 500 * time.Millisecond
	start := time.Now()
	_, err := client.Members(context.Background())
	took := time.Since(start)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Members with no node answering: %v", err)
	}
	t.Logf("unreachable after %v: %v", took.Round(time.Millisecond), err)
	// Bounded by one connect timeout (generously, for a loaded machine).
	if took > 10*client.ConnectTimeout {
		t.Fatalf("Members took %v with a connect timeout of %v", took, client.ConnectTimeout)
	}
	empty, _ := NewClient(cli, nil)
	if _, err := empty.Members(context.Background()); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "no node address") {
		t.Fatalf("Members with no endpoint: %v", err)
	}
}

func TestRequestLeave(t *testing.T) {
	c := newTestCluster(t, 3, serfOptions{local: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// An older incarnation's nonce is refused and nothing leaves.
	if err := c.client.RequestLeave(ctx, "n2", "nonce-old"); !errors.Is(err, ErrWrongNonce) {
		t.Fatalf("leave with a wrong nonce: %v", err)
	}
	if n := c.node("n1").m.aliveCount(); n != 3 {
		t.Fatalf("%d alive after a refused leave", n)
	}
	if err := c.client.RequestLeave(ctx, "n2", "nonce-n2"); err != nil {
		t.Fatal(err)
	}
	// Seen by another member when RequestLeave returned.
	for _, m := range c.node("n1").m.Members() {
		if m.Name == "n2" && m.Status != StatusLeft {
			t.Fatalf("n1 sees n2 %s after RequestLeave returned", m.Status)
		}
	}
	if err := c.client.RequestLeave(ctx, "n7", "x"); err == nil {
		t.Fatal("leave of an unknown node")
	}
}

// TestKeyRotation: each key operation changes the keyring of the node it
// is sent to, and only that one.
func TestKeyRotation(t *testing.T) {
	k1 := []byte("0123456789abcdef0123456789abcdef")
	k2 := []byte("fedcba9876543210fedcba9876543210")
	c := newTestCluster(t, 3, serfOptions{local: true, key: k1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, step := range []struct {
		name string
		op   func(context.Context, string, []byte) (KeyReport, error)
		key  []byte
	}{{"install", c.client.KeyInstall, k2}, {"use", c.client.KeyUse, k2}, {"remove", c.client.KeyRemove, k1}} {
		rep, err := step.op(ctx, "n2", step.key)
		if err != nil || rep.NumResp != 1 || rep.NumErr != 0 {
			t.Fatalf("%s: %+v, %v", step.name, rep, err)
		}
	}
	want := map[string]map[string]int{
		"n1": {"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=": 1},
		"n2": {"ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=": 1},
	}
	for node, keys := range want {
		rep, err := c.client.KeyList(ctx, node)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(rep.Keys, keys) {
			t.Errorf("keys of %s: %v, want %v", node, rep.Keys, keys)
		}
	}
	// Removing the key in use fails, and says so.
	if _, err := c.client.KeyRemove(ctx, "n2", k2); err == nil {
		t.Fatal("removing the primary key succeeded")
	}
	var apiErr *APIError
	if _, err := c.client.KeyInstall(ctx, "n1", []byte("short")); !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || !strings.Contains(apiErr.Message, "not 16, 24 or 32") {
		t.Fatalf("a 5-byte key: %v", err)
	}
	if _, err := c.client.KeyList(ctx, "n9"); err == nil {
		t.Fatal("a key operation on an unknown node")
	}
}

func TestBadRequestBodies(t *testing.T) {
	c := newTestCluster(t, 1, serfOptions{local: true})
	cli, _ := c.ca.IssueCLI()
	ep := c.node("n1").ep
	for _, tc := range []struct {
		path string
		body any
	}{
		{PathLeave, map[string]string{"nonce": "nonce-n1", "extra": "x"}},
		{PathLeave, map[string]string{}},
		{PathKeyList, map[string]string{"key": "AAAA"}},
	} {
		conn, err := c.client.Dial(context.Background(), ep)
		if err != nil {
			t.Fatal(err)
		}
		err = c.client.roundTrip(context.Background(), conn, ep, time.Second, http.MethodPost, tc.path, tc.body, &struct{}{})
		conn.Close()
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
			t.Errorf("%s %v: %v, want 400", tc.path, tc.body, err)
		}
	}
	_ = cli
	if n := c.node("n1").m.aliveCount(); n != 1 {
		t.Fatal("a bad leave request made the node leave")
	}
}

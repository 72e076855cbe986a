package nodeapi

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/pki"
	"github.com/clusterctl/clusterctl/internal/testkit"
)

// lockedBuffer is a log sink the test reads while servers write.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

// testNode is one agent as the API sees it: a serf member and its server.
type testNode struct {
	name string
	m    *serfMember
	ep   Endpoint
	srv  *server
	log  *lockedBuffer
	stop func() // stops the API server and waits for Serve to return
}

// testCluster is a real serf cluster on loopback with an API server per
// member, a CA in a temporary state directory and a CLI client.
type testCluster struct {
	t      testing.TB
	ca     *pki.CA
	opt    serfOptions
	mu     sync.Mutex
	nodes  []*testNode
	client *Client
}

func newTestCluster(t testing.TB, n int, opt serfOptions) *testCluster {
	t.Helper()
	ca, err := pki.Create(t.TempDir(), "lab")
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, ca: ca, opt: opt}
	for i := range n {
		c.add(fmt.Sprintf("n%d", i+1))
	}
	cli, err := ca.IssueCLI()
	if err != nil {
		t.Fatal(err)
	}
	c.client, err = NewClient(cli, c.endpoints)
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the cluster to converge", 10*time.Second, func() bool {
		for _, nd := range c.nodes {
			if nd.m.aliveCount() != n {
				return false
			}
		}
		return true
	})
	return c
}

// add starts a serf member named name, joined to the first node, and its
// API server.
func (c *testCluster) add(name string) *testNode {
	c.t.Helper()
	m := startSerf(c.t, name, "nonce-"+name, c.opt)
	c.mu.Lock()
	first := len(c.nodes) > 0
	var seed *serfMember
	if first {
		seed = c.nodes[0].m
	}
	c.mu.Unlock()
	if seed != nil {
		m.join(c.t, seed)
	}
	nd := c.serve(name, m)
	c.mu.Lock()
	c.nodes = append(c.nodes, nd)
	c.mu.Unlock()
	return nd
}

// serve starts an API server for m under the node name, with each tweak
// applied to it before it serves.
func (c *testCluster) serve(name string, m Membership, tweaks ...func(*server)) *testNode {
	c.t.Helper()
	creds, err := c.ca.IssueNode(name, []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		c.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	logs := &lockedBuffer{}
	srv, err := newServer(creds, m, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		c.t.Fatal(err)
	}
	for _, tweak := range tweaks {
		tweak(srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.serve(ctx, ln); err != nil {
			c.t.Errorf("serve %s: %v", name, err)
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	c.t.Cleanup(stop)
	sm, _ := m.(*serfMember)
	return &testNode{name: name, m: sm, ep: Endpoint{Name: name, Addr: ln.Addr().String()}, srv: srv, log: logs, stop: stop}
}

func (c *testCluster) endpoints() []Endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Endpoint
	for _, nd := range c.nodes {
		out = append(out, nd.ep)
	}
	return out
}

func (c *testCluster) node(name string) *testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, nd := range c.nodes {
		if nd.name == name {
			return nd
		}
	}
	c.t.Fatalf("no node %s", name)
	return nil
}

// next reads one update within d, failing the test otherwise.
func next(t testing.TB, ch <-chan Update, d time.Duration) Update {
	t.Helper()
	select {
	case u, ok := <-ch:
		if !ok {
			t.Fatal("the update channel closed")
		}
		return u
	case <-time.After(d):
		t.Fatalf("no update within %v", d)
	}
	return Update{}
}

// until reads updates until match accepts one, within d.
func until(t testing.TB, ch <-chan Update, d time.Duration, what string, match func(Update) bool) Update {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case u, ok := <-ch:
			if !ok {
				t.Fatalf("the update channel closed while waiting for %s", what)
			}
			if match(u) {
				return u
			}
		case <-deadline:
			t.Fatalf("no %s within %v", what, d)
		}
	}
}

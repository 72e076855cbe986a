package nodeapi

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/ratelog"
	"github.com/clusterctl/clusterctl/internal/testkit"
)

// dialFrom opens a plain TCP connection to addr from the loopback address
// laddr ("" for any).
func dialFrom(t *testing.T, addr, laddr string) net.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	if laddr != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(laddr)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reads c until the server closes it; the deadline only
// keeps a broken server from hanging the test.
func closedByServer(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("the server kept the connection open: %w", err)
	}
	return nil // EOF or a reset: closed
}

func TestHandshakeTimeoutClosesASilentPeer(t *testing.T) {
	if HandshakeTimeout > 5*time.Second {
		t.Fatalf("HandshakeTimeout %s, want 5 s or less", HandshakeTimeout)
	}
	c := newTestCluster(t, 1, serfOptions{local: true})
	nd := c.serve("n1", c.node("n1").m, func(s *server) { s.handshakeTimeout = 300 * time.Millisecond })
	// A TCP connection that never starts its handshake is closed, and the
	// peer is logged as refused.
	if err := closedByServer(dialFrom(t, nd.ep.Addr, "")); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the silent peer to be logged", 5*time.Second, func() bool { return nd.log.count("refused a peer") == 1 })
}

func TestConnectionsPerSourceAreBounded(t *testing.T) {
	c := newTestCluster(t, 1, serfOptions{local: true})
	// Handshakes that wait long, so that the silent connections stay open.
	nd := c.serve("n1", c.node("n1").m, func(s *server) { s.handshakeTimeout = time.Hour })
	cli, _ := c.ca.IssueCLI()
	cfg, _ := cli.ClientTLS("n1")

	silent := make([]net.Conn, MaxConnsPerSource)
	for i := range silent {
		silent[i] = dialFrom(t, nd.ep.Addr, "127.0.0.1")
	}
	// All of them are admitted before the next one is judged.
	testkit.WaitFor(t, "the silent connections to be admitted", 10*time.Second, func() bool {
		return nd.srv.sources.count("127.0.0.1") == MaxConnsPerSource
	})
	// One more from the same address is closed at once, and logged.
	if err := closedByServer(dialFrom(t, nd.ep.Addr, "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the refusal to be logged", 5*time.Second, func() bool { return nd.log.count("connections at once from this address") == 1 })
	// Another address is served meanwhile.
	if resp, err := rawGet(nd.ep.Addr, cfg, "127.0.0.2"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("127.0.0.2 while 127.0.0.1 is at its limit: %v", err)
	}
	// Once the silent ones go, 127.0.0.1 is served again.
	for _, s := range silent {
		s.Close()
	}
	testkit.WaitFor(t, "127.0.0.1's slots to be freed", 10*time.Second, func() bool { return nd.srv.sources.count("127.0.0.1") == 0 })
	if resp, err := rawGet(nd.ep.Addr, cfg, "127.0.0.1"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("127.0.0.1 after its connections closed: %v", err)
	}
}

// A flood of refused peers from many addresses: the refusal log's table
// stays at its size, only the addresses it holds get a line each, and the
// rest are counted in one summary line.
func TestRefusalFloodIsCountedNotLogged(t *testing.T) {
	const table, sources = 4, 40
	c := newTestCluster(t, 1, serfOptions{local: true})
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	nd := c.serve("n1", c.node("n1").m, func(s *server) {
		s.now = func() time.Time { return time.Unix(0, clock.Load()) }
		s.refused = ratelog.New(time.Minute, table)
		s.refusalEvery = 20 * time.Millisecond // the summary ticker; the table's clock is s.now
	})
	for i := range sources {
		// Not TLS: the handshake fails at once, and the refusal is noted
		// before the server closes the connection.
		conn := dialFrom(t, nd.ep.Addr, fmt.Sprintf("127.0.1.%d", i+1))
		io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n")
		if err := closedByServer(conn); err != nil {
			t.Fatal(err)
		}
	}
	if n := nd.srv.refused.Len(); n > table {
		t.Fatalf("the refusal table holds %d addresses, more than %d", n, table)
	}
	if n := nd.log.count("refused a peer"); n != table {
		t.Fatalf("%d refusal lines for %d addresses, want %d (the table's size)", n, sources, table)
	}
	// A minute later the ticker logs the count of the others.
	clock.Add(int64(61 * time.Second))
	want := fmt.Sprintf("refused=%d", sources-table)
	testkit.WaitFor(t, "the summary line", 10*time.Second, func() bool { return nd.log.count(want) == 1 })
	if n := nd.log.count("refused a peer"); n != table {
		t.Errorf("%d refusal lines after the summary, want %d", n, table)
	}
}

// fakeNode is a TLS server with a node's certificate that answers every
// request with a 200 header and then n bytes without a newline.
func fakeNode(t *testing.T, c *testCluster, name string, n int64) Endpoint {
	t.Helper()
	creds, err := c.ca.IssueNode(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := creds.ServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				if _, err := http.ReadRequest(bufio.NewReader(conn)); err != nil {
					return
				}
				io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n")
				chunk := []byte(strings.Repeat("x", 64<<10))
				for sent := int64(0); sent < n; sent += int64(len(chunk)) {
					if _, err := conn.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	return Endpoint{Name: name, Addr: ln.Addr().String()}
}

func TestClientBoundsWhatItReads(t *testing.T) {
	const huge = 256 << 20
	c := newTestCluster(t, 1, serfOptions{local: true})
	ep := fakeNode(t, c, "big", huge)
	cli, _ := c.ca.IssueCLI()
	client, err := NewClient(cli, Endpoints(ep))
	if err != nil {
		t.Fatal(err)
	}
	client.RequestTimeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	// (firstOf's error names each node's failure in words.)
	tooLarge := func(err error) bool { return err != nil && strings.Contains(err.Error(), ErrTooLarge.Error()) }
	_, err = client.Members(ctx)
	if !tooLarge(err) {
		t.Fatalf("Members of a %d MiB answer: %v, want ErrTooLarge", huge>>20, err)
	}
	u := next(t, client.Follow(ctx), time.Minute)
	if u.Kind != UpdateUnreachable || !tooLarge(u.Err) {
		t.Fatalf("Follow of a %d MiB first line: %+v, want UpdateUnreachable with ErrTooLarge", huge>>20, u)
	}
	cancel()
	runtime.ReadMemStats(&after)
	// Everything the process allocated meanwhile (both servers' sides
	// included): a client that read the whole line would take hundreds of
	// MiB.
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d MiB for two %d MiB answers", alloc>>20, huge>>20)
	if alloc > 8*MaxMessage {
		t.Errorf("allocated %d MiB, want at most %d", alloc>>20, 8*MaxMessage>>20)
	}
}

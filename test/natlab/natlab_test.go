package natlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/ports"
	"github.com/clusterctl/clusterctl/internal/publicip"
)

// accepted waits up to d for one connection on ln and returns its peer
// address, or an invalid address if none came.
func accepted(t *testing.T, ln net.Listener, d time.Duration) netip.Addr {
	t.Helper()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(d))
	c, err := ln.Accept()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return netip.Addr{}
		}
		t.Fatalf("accept: %v", err)
	}
	defer c.Close()
	return c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
}

// received waits up to d for one datagram on pc and returns its payload and
// source, or "" if none came.
func received(t *testing.T, pc net.PacketConn, d time.Duration) (string, netip.Addr) {
	t.Helper()
	pc.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 1500)
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "", netip.Addr{}
		}
		t.Fatalf("read: %v", err)
	}
	return string(buf[:n]), from.(*net.UDPAddr).AddrPort().Addr().Unmap()
}

func sendUDP(t *testing.T, l *Lab, ns string, to netip.AddrPort, msg string) {
	t.Helper()
	c, err := l.Dial(context.Background(), ns, "udp", to.String())
	if err != nil {
		t.Fatalf("from %s: %v", ns, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("from %s: sending to %s: %v", ns, to, err)
	}
}

func TestLaptopReachesNodeByPublicAddress(t *testing.T) {
	l := New(t)
	private, public, ns := l.AddNode("node-1")
	if private != netip.MustParseAddr("172.31.0.10") || public != netip.MustParseAddr("203.0.113.10") {
		t.Fatalf("first node's addresses %s, %s; want 172.31.0.10, 203.0.113.10", private, public)
	}
	api := strconv.Itoa(ports.API)
	ln, err := l.Listen(ns, "tcp", ":"+api)
	if err != nil {
		t.Fatal(err)
	}

	// In-process, from a socket in the laptop's namespace.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Fprintf(c, "seen %s said %s", c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(), line)
	}()
	c, err := l.Dial(ctx, l.Laptop, "tcp", net.JoinHostPort(public.String(), api))
	if err != nil {
		t.Fatalf("laptop → node's public address: %v", err)
	}
	fmt.Fprintf(c, "hello\n")
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := "seen 198.51.100.2 said hello\n"; string(reply) != want {
		t.Errorf("node answered %q, want %q (the home router's public address as source)", reply, want)
	}

	// From a process started in the laptop's namespace (as the CLI will be).
	go func() {
		got <- accepted(t, ln, 5*time.Second).String()
	}()
	if _, err := l.Exec(ctx, l.Laptop, "bash", "-c", "exec 3<>/dev/tcp/"+public.String()+"/"+api); err != nil {
		t.Fatalf("laptop process → node's public address: %v", err)
	}
	if src := <-got; src != RouterPublicAddr.String() {
		t.Errorf("node saw the laptop process's connection from %s, want %s", src, RouterPublicAddr)
	}
}

func TestNodeCannotOpenAnythingTowardsTheLaptop(t *testing.T) {
	l := New(t)
	_, nodePublic, node := l.AddNode("node-1")
	laptop := netip.AddrPortFrom(LaptopAddr, 9000)
	router := netip.AddrPortFrom(RouterPublicAddr, 9000)
	targets := []struct {
		name, ns string
		at       netip.AddrPort
		control  string // a namespace from which the target is reachable
	}{
		{"laptop's private address", l.Laptop, laptop, l.Router},
		{"home router's public address", l.Router, router, l.Internet},
	}
	type listeners struct {
		tcp net.Listener
		udp net.PacketConn
	}
	ls := make([]listeners, len(targets))
	for i, tg := range targets {
		var err error
		if ls[i].tcp, err = l.Listen(tg.ns, "tcp", tg.at.String()); err != nil {
			t.Fatal(err)
		}
		if ls[i].udp, err = l.ListenPacket(tg.ns, "udp", tg.at.String()); err != nil {
			t.Fatal(err)
		}
	}

	// Controls: the listeners do receive what is allowed to reach them.
	for i, tg := range targets {
		c, err := l.Dial(context.Background(), tg.control, "tcp", tg.at.String())
		if err != nil {
			t.Fatalf("control: %s → %s: %v", tg.control, tg.name, err)
		}
		c.Close()
		if src := accepted(t, ls[i].tcp, 5*time.Second); !src.IsValid() {
			t.Fatalf("control: %s's TCP listener got nothing", tg.name)
		}
		sendUDP(t, l, tg.control, tg.at, "control")
		if msg, _ := received(t, ls[i].udp, 5*time.Second); msg != "control" {
			t.Fatalf("control: %s's UDP listener got %q", tg.name, msg)
		}
	}

	before, err := l.DroppedFromNodes()
	if err != nil {
		t.Fatal(err)
	}
	for i, tg := range targets {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := l.Dial(ctx, node, "tcp", tg.at.String())
		cancel()
		if err == nil {
			c.Close()
			t.Errorf("node opened a TCP connection to the %s", tg.name)
		}
		if src := accepted(t, ls[i].tcp, 500*time.Millisecond); src.IsValid() {
			t.Errorf("the %s accepted a connection from %s", tg.name, src)
		}
		sendUDP(t, l, node, tg.at, "from the node")
		if msg, src := received(t, ls[i].udp, time.Second); msg != "" {
			t.Errorf("the %s received %q from %s", tg.name, msg, src)
		}
	}
	after, err := l.DroppedFromNodes()
	if err != nil {
		t.Fatal(err)
	}
	if after < before+4 {
		t.Errorf("the edge's drop rule counted %d packets, want at least 4 (a SYN and a datagram to each target)", after-before)
	}

	// Without the drop rule the node does reach the home router, with its
	// public address as source: the rule is what stops it.
	if _, err := l.Exec(context.Background(), l.Edge, "nft", "flush", "chain", "ip", "natlab", "forward"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := l.Dial(ctx, node, "tcp", router.String())
	if err != nil {
		t.Fatalf("without the drop rule, node → home router: %v", err)
	}
	c.Close()
	if src := accepted(t, ls[1].tcp, 5*time.Second); src != nodePublic {
		t.Errorf("without the drop rule the home router saw the node as %s, want its public address %s", src, nodePublic)
	}
}

func TestNodesReachEachOtherPrivately(t *testing.T) {
	l := New(t)
	p1, _, n1 := l.AddNode("a")
	p2, pub2, n2 := l.AddNode("b")
	if p2 != p1.Next() || pub2 != netip.MustParseAddr("203.0.113.11") {
		t.Fatalf("second node's addresses %s, %s", p2, pub2)
	}
	gossip := strconv.Itoa(ports.Gossip)
	ln, err := l.Listen(n2, "tcp", net.JoinHostPort(p2.String(), gossip))
	if err != nil {
		t.Fatal(err)
	}
	pc, err := l.ListenPacket(n2, "udp", net.JoinHostPort(p2.String(), gossip))
	if err != nil {
		t.Fatal(err)
	}
	before, err := l.DroppedFromNodes()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := l.Dial(ctx, n1, "tcp", net.JoinHostPort(p2.String(), gossip))
	if err != nil {
		t.Fatalf("node a → node b's private address: %v", err)
	}
	c.Close()
	if src := accepted(t, ln, 5*time.Second); src != p1 {
		t.Errorf("node b saw node a as %s, want %s", src, p1)
	}
	sendUDP(t, l, n1, netip.AddrPortFrom(p2, uint16(ports.Gossip)), "ping")
	if msg, src := received(t, pc, 5*time.Second); msg != "ping" || src != p1 {
		t.Errorf("node b got %q from %s, want ping from %s", msg, src, p1)
	}
	if after, _ := l.DroppedFromNodes(); after != before {
		t.Errorf("the drop rule counted %d packets between nodes", after-before)
	}
}

func TestWhatIsMyIP(t *testing.T) {
	l := New(t)
	_, _, node := l.AddNode("node-1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// What clusterctl will do: CLUSTERCTL_PUBLIC_IP_URL names the fixture.
	t.Setenv(publicip.EnvURL, l.WhatIsMyIPURL())
	got, err := publicip.Detect(ctx, "ec2.api_from", publicip.Options{Client: l.HTTPClient(l.Laptop)})
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.PrefixFrom(RouterPublicAddr, 32); got != want {
		t.Errorf("detected %s from the laptop, want the home router's %s", got, want)
	}

	// The raw answer, and that a node cannot ask (it opens nothing outwards).
	resp, err := l.HTTPClient(l.Router).Get(l.WhatIsMyIPURL())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != RouterPublicAddr.String()+"\n" {
		t.Errorf("fixture answered the router %q", body)
	}
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	defer cancelShort()
	if _, err := publicip.Detect(short, "ec2.api_from", publicip.Options{Client: l.HTTPClient(node)}); err == nil {
		t.Error("a node reached the what-is-my-IP fixture")
	}
}

func TestCleanupRemovesEverything(t *testing.T) {
	SkipUnlessRoot(t)
	var namespaces []string
	var pid int
	t.Run("lab", func(t *testing.T) {
		l := New(t)
		_, _, ns := l.AddNode("node-1")
		cmd := l.Command(context.Background(), ns, "sleep", "600")
		if err := l.Start(cmd); err != nil {
			t.Fatal(err)
		}
		pid = cmd.Process.Pid
		namespaces = l.Namespaces()
		for _, n := range namespaces {
			if len(n) > 64 || !strings.HasPrefix(n, l.prefix) {
				t.Errorf("namespace %q lacks the lab's prefix %q", n, l.prefix)
			}
		}
	})
	if len(namespaces) != 5 {
		t.Fatalf("the lab made namespaces %q, want 5", namespaces)
	}
	for _, n := range namespaces {
		if _, err := os.Stat("/run/netns/" + n); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s still exists after the test (%v)", n, err)
		}
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the started process %d still exists after the test (%v)", pid, err)
	}
}

func TestAddNodeRejects(t *testing.T) {
	l := New(t)
	l.AddNode("node-1")
	for _, name := range []string{"node-1", "Node_2", "", strings.Repeat("a", 64)} {
		if _, _, _, err := l.addNode(name); err == nil {
			t.Errorf("AddNode(%q) succeeded", name)
		}
	}
}

func TestAddNodeAtMapsAnyPublicAddress(t *testing.T) {
	l := New(t)
	// As moto gives them: a private address anywhere in the VPC, a public
	// one outside 203.0.113.0/24 (192.0.2.0/24 is a documentation range).
	private, public := netip.MustParseAddr("172.31.17.5"), netip.MustParseAddr("192.0.2.77")
	ns, err := l.AddNodeAt("moto-node", private, public)
	if err != nil {
		t.Fatal(err)
	}
	// AddNode still hands out its own addresses next to it.
	_, _, other := l.AddNode("node-1")
	ln, err := l.Listen(ns, "tcp", ":7947")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := make(chan netip.Addr, 1)
	go func() { got <- accepted(t, ln, 5*time.Second) }()
	c, err := l.Dial(ctx, l.Laptop, "tcp", netip.AddrPortFrom(public, 7947).String())
	if err != nil {
		t.Fatalf("laptop → %s: %v", public, err)
	}
	c.Close()
	if src := <-got; src != RouterPublicAddr {
		t.Errorf("node saw the laptop's connection from %s, want %s", src, RouterPublicAddr)
	}
	// The other node reaches it on its private address.
	if c, err := l.Dial(ctx, other, "tcp", netip.AddrPortFrom(private, 7947).String()); err != nil {
		t.Errorf("node-1 → %s: %v", private, err)
	} else {
		c.Close()
	}

	// Outwards, the node is still held back.
	before, err := l.DroppedFromNodes()
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
	defer dcancel()
	if c, err := l.Dial(dctx, ns, "tcp", netip.AddrPortFrom(RouterPublicAddr, 7946).String()); err == nil {
		c.Close()
		t.Errorf("node opened a connection to the home router's public address")
	}
	if after, err := l.DroppedFromNodes(); err != nil || after <= before {
		t.Errorf("drop counter %d → %d (%v), want it to grow", before, after, err)
	}
}

func TestAddNodeAtRejects(t *testing.T) {
	l := New(t)
	if _, err := l.AddNodeAt("taken", netip.MustParseAddr("172.31.5.5"), netip.MustParseAddr("192.0.2.5")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, private, public, want string }{
		{"a", "10.0.0.5", "192.0.2.6", "outside the VPC"},
		{"a", "172.31.0.1", "192.0.2.6", "gateway"},
		{"a", "172.31.255.255", "192.0.2.6", "broadcast"},
		{"a", "172.31.5.5", "192.0.2.6", "belongs to another node"},
		{"a", "172.31.5.6", "192.0.2.5", "belongs to another node"},
		{"a", "172.31.5.6", "198.51.100.9", "internet segment"},
		{"a", "172.31.5.6", "10.1.2.3", "not a public unicast"},
		{"a", "172.31.5.6", "127.0.0.1", "not a public unicast"},
		{"a", "172.31.5.6", "2001:db8::1", "not IPv4"},
		{"taken", "172.31.5.6", "192.0.2.6", "exists"},
		{"Bad_Name", "172.31.5.6", "192.0.2.6", "DNS label"},
	} {
		_, err := l.AddNodeAt(c.name, netip.MustParseAddr(c.private), netip.MustParseAddr(c.public))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("AddNodeAt(%q, %s, %s) = %v, want an error saying %q", c.name, c.private, c.public, err, c.want)
		}
	}
}

func TestStartService(t *testing.T) {
	l := New(t)
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	port, err := l.FreePort(l.Laptop, netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	ctx := context.Background()
	srv := l.Command(ctx, l.Laptop, py, "-m", "http.server", "--bind", "127.0.0.1", strconv.Itoa(port))
	if err := l.StartService(l.Laptop, addr, 30*time.Second, srv); err != nil {
		t.Fatal(err)
	}
	// The laptop's own processes reach it on the laptop's loopback...
	resp, err := l.HTTPClient(l.Laptop).Get("http://" + addr.String() + "/")
	if err != nil {
		t.Fatalf("from the laptop: %v", err)
	}
	resp.Body.Close()
	// ...and the test's own namespace has no such server.
	if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		c.Close()
		t.Errorf("%s answers outside the laptop's namespace", addr)
	}

	// A server that exits is reported at once, not after the timeout.
	start := time.Now()
	err = l.StartService(l.Laptop, netip.AddrPortFrom(addr.Addr(), uint16(port+1)), time.Minute, l.Command(ctx, l.Laptop, "false"))
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("StartService(false) = %v, want it to say the command exited", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("StartService(false) took %s", d)
	}
}

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

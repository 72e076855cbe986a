// Package netnstest builds throw-away networks of Linux network namespaces
// for tests: one hub namespace with a bridge, and one namespace per node
// joined to it by a veth pair, so that a test can run real processes on
// private addresses and cut or restore any node's link. Nothing it makes
// is reachable from, or reaches, the host's own network. It needs root and
// the ip command; Require skips the test otherwise.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Require skips t unless it runs as root with the ip command available.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to make network namespaces (CI runs these tests as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipped: the ip command (iproute2) is not installed")
	}
}

// Net is a hub namespace with a bridge and the nodes attached to it.
type Net struct {
	t      testing.TB
	prefix string
	hub    string
	Prefix netip.Prefix // the nodes' subnet, 10.213.0.0/16
	nodes  []*Node
}

// Node is one namespace on the Net.
type Node struct {
	NS   string     // namespace name, for ip netns exec
	Addr netip.Addr // its address on the bridge
	veth string     // its link's end in the hub namespace
	net  *Net
}

// New makes the hub namespace and its bridge; t.Cleanup removes every
// namespace the Net made.
func New(t testing.TB) *Net {
	t.Helper()
	Require(t)
	var b [3]byte
	_, _ = rand.Read(b[:])
	n := &Net{t: t, prefix: "cc" + hex.EncodeToString(b[:]), Prefix: netip.MustParsePrefix("10.213.0.0/16")}
	n.hub = n.prefix + "-hub"
	n.run("ip", "netns", "add", n.hub)
	t.Cleanup(n.close)
	n.run("ip", "-n", n.hub, "link", "add", "br0", "type", "bridge")
	n.run("ip", "-n", n.hub, "link", "set", "br0", "up")
	n.run("ip", "-n", n.hub, "link", "set", "lo", "up")
	return n
}

func (n *Net) run(args ...string) {
	n.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		n.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// AddNode makes node i's namespace (address 10.213.x.y from i) on the
// bridge.
func (n *Net) AddNode() *Node {
	n.t.Helper()
	i := len(n.nodes) + 1
	node := &Node{
		NS:   fmt.Sprintf("%s-n%d", n.prefix, i),
		Addr: netip.AddrFrom4([4]byte{10, 213, byte(i / 250), byte(i%250 + 1)}),
		veth: fmt.Sprintf("v%d", i),
		net:  n,
	}
	n.run("ip", "netns", "add", node.NS)
	n.nodes = append(n.nodes, node)
	n.run("ip", "-n", n.hub, "link", "add", node.veth, "type", "veth", "peer", "name", "eth0", "netns", node.NS)
	n.run("ip", "-n", n.hub, "link", "set", node.veth, "master", "br0", "up")
	n.run("ip", "-n", node.NS, "addr", "add", node.Addr.String()+"/16", "dev", "eth0")
	n.run("ip", "-n", node.NS, "link", "set", "eth0", "up")
	n.run("ip", "-n", node.NS, "link", "set", "lo", "up")
	return node
}

// Cut takes the node's link down at the hub: nothing reaches it or leaves it.
func (node *Node) Cut() { node.net.run("ip", "-n", node.net.hub, "link", "set", node.veth, "down") }

// Restore brings the node's link back up.
func (node *Node) Restore() { node.net.run("ip", "-n", node.net.hub, "link", "set", node.veth, "up") }

// Command returns cmd run inside the node's namespace.
func (node *Node) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", node.NS, name}, args...)...)
}

func (n *Net) close() {
	for _, node := range n.nodes {
		_ = exec.Command("ip", "netns", "del", node.NS).Run()
	}
	_ = exec.Command("ip", "netns", "del", n.hub).Run()
}

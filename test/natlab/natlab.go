// Package natlab builds, out of Linux network namespaces, a small model of
// "a laptop behind NAT driving a cloud" for end-to-end tests: the laptop
// behind a masquerading home router, an internet segment with a "what is my
// IP" service, and a cloud edge that gives each node a 1:1 public address
// (as EC2's internet gateway and OpenStack's floating IPs do) and lets the
// nodes open no connection outwards. docs/nat.md draws the topology.
//
// A Lab needs root, iproute2 (ip) and nftables (nft); New skips the test
// when not root. Every namespace a Lab makes carries a random prefix and is
// deleted, with every process and socket the Lab started, when the test
// ends. The Lab touches nothing outside its namespaces.
package natlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clusterctl/clusterctl/internal/dnslabel"
)

// The addresses of a Lab. Every Lab uses the same ones: they exist only
// inside its own namespaces.
var (
	// LaptopAddr is the laptop's private address (192.168.77.0/24).
	LaptopAddr = netip.MustParseAddr("192.168.77.2")
	// RouterLANAddr is the home router's address on the laptop's network,
	// the laptop's default gateway.
	RouterLANAddr = netip.MustParseAddr("192.168.77.1")
	// RouterPublicAddr is the home router's public address: what the
	// internet (and a node) sees as the source of the laptop's connections.
	RouterPublicAddr = netip.MustParseAddr("198.51.100.2")
	// InternetAddr is the internet router's address on the internet
	// segment, where the what-is-my-IP fixture listens.
	InternetAddr = netip.MustParseAddr("198.51.100.1")
	// EdgeAddr is the cloud edge's address on the internet segment; the
	// internet routes PublicNet to it.
	EdgeAddr = netip.MustParseAddr("198.51.100.3")
	// InternetNet is the internet segment.
	InternetNet = netip.MustParsePrefix("198.51.100.0/24")
	// VPCNet is the nodes' private network; its first address is the cloud
	// edge, their default gateway.
	VPCNet = netip.MustParsePrefix("172.31.0.0/16")
	// PublicNet holds the nodes' public addresses.
	PublicNet = netip.MustParsePrefix("203.0.113.0/24")
)

// FixturePort is the TCP port of the what-is-my-IP fixture.
const FixturePort = 80

// firstHost is the last octet of the first node's addresses
// (172.31.0.10 ⇄ 203.0.113.10); nodes count up from it.
const (
	firstHost = 10
	lastHost  = 254
)

// Interface names (at most 15 characters; each is unique within its
// namespace, so no Lab's names collide with another's).
const (
	ifLAN      = "lan0"  // laptop ⇄ home router
	ifWAN      = "wan0"  // home router and cloud edge ⇄ internet
	ifInternet = "inet0" // the internet segment's bridge
	ifVPC      = "vpc0"  // the nodes' bridge in the cloud edge
	ifNode     = "eth0"  // a node's interface
)

// DropComment names the cloud edge's rule that drops what nodes send
// outwards except replies; DroppedFromNodes reads its counter.
const DropComment = "natlab: nodes open nothing outwards"

// Lab is one running topology. Its exported fields are the names of its
// namespaces; treat them as read-only.
type Lab struct {
	Laptop   string // the CLI runs here (LaptopAddr)
	Router   string // the home router: masquerade
	Internet string // the internet segment and the what-is-my-IP fixture
	Edge     string // the cloud edge: 1:1 NAT, the nodes' bridge, the drop rule

	t      testing.TB
	prefix string

	mu         sync.Mutex
	namespaces []string
	closers    []io.Closer
	nodes      map[string]bool     // node names in use
	used       map[netip.Addr]bool // nodes' private and public addresses in use
	next       int                 // AddNode's next host number
	links      int                 // number of the next node's link in the edge (v<links>)
}

// New builds the fixed part of the topology (laptop, home router, internet,
// cloud edge, what-is-my-IP fixture) and registers its removal with
// t.Cleanup. It skips the test unless it runs as root, and fails it when
// ip or nft is missing.
func New(t testing.TB) *Lab {
	t.Helper()
	SkipUnlessRoot(t)
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("natlab: %s not found; run scripts/deps.sh (it installs iproute2 and nftables)", tool)
		}
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	prefix := "nl" + hex.EncodeToString(b[:]) + "-"
	l := &Lab{
		Laptop:   prefix + "laptop",
		Router:   prefix + "router",
		Internet: prefix + "inet",
		Edge:     prefix + "edge",
		t:        t,
		prefix:   prefix,
		nodes:    map[string]bool{},
		used:     map[netip.Addr]bool{},
		next:     firstHost,
		links:    firstHost,
	}
	t.Cleanup(l.cleanup)
	if err := l.build(); err != nil {
		t.Fatalf("natlab: building the topology: %v", err)
	}
	if err := l.startFixture(); err != nil {
		t.Fatalf("natlab: starting the what-is-my-IP fixture: %v", err)
	}
	return l
}

// SkipUnlessRoot skips the test, saying why, unless it runs as root, which
// a Lab needs to make network namespaces. New calls it; call it yourself
// before work that must not start without a Lab.
func SkipUnlessRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("natlab: needs root to make network namespaces (CI runs these tests as root; locally: sudo go test)")
	}
}

// WhatIsMyIPURL is the URL of the fixture that answers each caller with its
// source address as seen on the internet segment, in checkip's plain-text
// form; point CLUSTERCTL_PUBLIC_IP_URL at it. From the laptop, the answer
// is RouterPublicAddr.
func (l *Lab) WhatIsMyIPURL() string {
	return "http://" + netip.AddrPortFrom(InternetAddr, FixturePort).String() + "/"
}

// Namespaces lists every namespace the Lab made, nodes included.
func (l *Lab) Namespaces() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.namespaces...)
}

// AddNode makes a node's namespace, with private address 172.31.0.N on the
// VPC bridge and public address 203.0.113.N at the cloud edge, N counting up
// from 10. name must be a DNS label, unique in the Lab. Failures fail the
// test.
func (l *Lab) AddNode(name string) (private, public netip.Addr, ns string) {
	l.t.Helper()
	private, public, ns, err := l.addNode(name)
	if err != nil {
		l.t.Fatalf("natlab: adding node %q: %v", name, err)
	}
	return private, public, ns
}

func (l *Lab) addNode(name string) (private, public netip.Addr, ns string, err error) {
	if !dnslabel.Valid(name) {
		return private, public, "", fmt.Errorf("%q is not a DNS label (lower-case letters, digits, '-')", name)
	}
	l.mu.Lock()
	for ; l.next <= lastHost; l.next++ {
		private = netip.AddrFrom4([4]byte{172, 31, 0, byte(l.next)})
		public = netip.AddrFrom4([4]byte{203, 0, 113, byte(l.next)})
		if !l.used[private] && !l.used[public] {
			break
		}
	}
	if l.next > lastHost {
		l.mu.Unlock()
		return netip.Addr{}, netip.Addr{}, "", fmt.Errorf("the lab holds at most %d nodes from AddNode", lastHost-firstHost+1)
	}
	l.next++
	l.mu.Unlock()
	ns, err = l.addNodeAt(name, private, public)
	return private, public, ns, err
}

// AddNodeAt makes a node's namespace like AddNode, with the addresses the
// caller gives: private on the VPC bridge (inside VPCNet, not its network,
// gateway or broadcast address) and public at the cloud edge, mapped 1:1
// to private. public may be any IPv4 public unicast address outside the
// internet segment, such as the PublicIpAddress moto gives an instance;
// the internet segment routes it to the edge. Neither address may be in
// use by another node. It returns the node's namespace; unlike AddNode it
// returns its error rather than failing the test, so that a harness
// goroutine playing instances may call it.
func (l *Lab) AddNodeAt(name string, private, public netip.Addr) (ns string, err error) {
	ns, err = l.addNodeAt(name, private, public)
	if err != nil {
		return ns, fmt.Errorf("natlab: adding node %q at %s ⇄ %s: %w", name, private, public, err)
	}
	return ns, nil
}

// checkNodeAddrs says what is wrong with a node's addresses, if anything.
func checkNodeAddrs(private, public netip.Addr) error {
	var problems []string
	switch {
	case !private.Is4():
		problems = append(problems, fmt.Sprintf("private address %s is not IPv4", private))
	case !VPCNet.Contains(private):
		problems = append(problems, fmt.Sprintf("private address %s is outside the VPC %s", private, VPCNet))
	case private == VPCNet.Masked().Addr() || private == gateway(VPCNet) || private == broadcast(VPCNet):
		problems = append(problems, fmt.Sprintf("private address %s is the VPC's network, gateway or broadcast address", private))
	}
	switch {
	case !public.Is4():
		problems = append(problems, fmt.Sprintf("public address %s is not IPv4", public))
	case InternetNet.Contains(public):
		problems = append(problems, fmt.Sprintf("public address %s is inside the lab's internet segment %s", public, InternetNet))
	case !public.IsGlobalUnicast() || public.IsPrivate():
		problems = append(problems, fmt.Sprintf("public address %s is not a public unicast address", public))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func (l *Lab) addNodeAt(name string, private, public netip.Addr) (ns string, err error) {
	if !dnslabel.Valid(name) {
		return "", fmt.Errorf("%q is not a DNS label (lower-case letters, digits, '-')", name)
	}
	if err := checkNodeAddrs(private, public); err != nil {
		return "", err
	}
	l.mu.Lock()
	switch {
	case l.nodes[name]:
		l.mu.Unlock()
		return "", errors.New("a node of that name exists")
	case l.used[private]:
		l.mu.Unlock()
		return "", fmt.Errorf("private address %s belongs to another node", private)
	case l.used[public]:
		l.mu.Unlock()
		return "", fmt.Errorf("public address %s belongs to another node", public)
	}
	l.nodes[name] = true
	l.used[private], l.used[public] = true, true
	edgeIf := "v" + strconv.Itoa(l.links)
	l.links++
	l.mu.Unlock()

	ns = l.prefix + "n-" + name
	steps := [][]string{
		{"link", "add", edgeIf, "netns", l.Edge, "type", "veth", "peer", "name", ifNode, "netns", ns},
		{"-n", l.Edge, "link", "set", edgeIf, "master", ifVPC, "up"},
		{"-n", ns, "addr", "add", prefixOf(private, VPCNet), "dev", ifNode},
		{"-n", ns, "link", "set", ifNode, "up"},
		{"-n", ns, "route", "add", "default", "via", gateway(VPCNet).String()},
	}
	if !PublicNet.Contains(public) {
		// The internet routes PublicNet to the edge; other public
		// addresses get a route of their own.
		steps = append(steps, []string{"-n", l.Internet, "route", "add", netip.PrefixFrom(public, 32).String(), "via", EdgeAddr.String()})
	}
	if err := l.addNamespace(ns); err != nil {
		return ns, err
	}
	for _, s := range steps {
		if err := l.ip(s...); err != nil {
			return ns, err
		}
	}
	el := fmt.Sprintf("{ %s : %s }", public, private)
	if _, err := l.exec(l.Edge, nil, "nft", "add", "element", "ip", "natlab", "pub2priv", el); err != nil {
		return ns, err
	}
	el = fmt.Sprintf("{ %s : %s }", private, public)
	if _, err := l.exec(l.Edge, nil, "nft", "add", "element", "ip", "natlab", "priv2pub", el); err != nil {
		return ns, err
	}
	return ns, nil
}

// build makes the four fixed namespaces, their links, addresses, routes and
// rules.
func (l *Lab) build() error {
	for _, ns := range []string{l.Laptop, l.Router, l.Internet, l.Edge} {
		if err := l.addNamespace(ns); err != nil {
			return err
		}
	}
	lan := netip.PrefixFrom(RouterLANAddr, 24)
	steps := [][]string{
		// laptop ⇄ home router
		{"link", "add", ifLAN, "netns", l.Laptop, "type", "veth", "peer", "name", ifLAN, "netns", l.Router},
		{"-n", l.Laptop, "addr", "add", prefixOf(LaptopAddr, lan), "dev", ifLAN},
		{"-n", l.Laptop, "link", "set", ifLAN, "up"},
		{"-n", l.Laptop, "route", "add", "default", "via", RouterLANAddr.String()},
		{"-n", l.Router, "addr", "add", prefixOf(RouterLANAddr, lan), "dev", ifLAN},
		{"-n", l.Router, "link", "set", ifLAN, "up"},
		// the internet segment: a bridge in the internet namespace
		{"-n", l.Internet, "link", "add", ifInternet, "type", "bridge"},
		{"-n", l.Internet, "addr", "add", prefixOf(InternetAddr, InternetNet), "dev", ifInternet},
		{"-n", l.Internet, "link", "set", ifInternet, "up"},
		// home router ⇄ internet
		{"link", "add", ifWAN, "netns", l.Router, "type", "veth", "peer", "name", "router", "netns", l.Internet},
		{"-n", l.Internet, "link", "set", "router", "master", ifInternet, "up"},
		{"-n", l.Router, "addr", "add", prefixOf(RouterPublicAddr, InternetNet), "dev", ifWAN},
		{"-n", l.Router, "link", "set", ifWAN, "up"},
		{"-n", l.Router, "route", "add", "default", "via", InternetAddr.String()},
		// cloud edge ⇄ internet; the internet routes the public addresses to the edge
		{"link", "add", ifWAN, "netns", l.Edge, "type", "veth", "peer", "name", "edge", "netns", l.Internet},
		{"-n", l.Internet, "link", "set", "edge", "master", ifInternet, "up"},
		{"-n", l.Edge, "addr", "add", prefixOf(EdgeAddr, InternetNet), "dev", ifWAN},
		{"-n", l.Edge, "link", "set", ifWAN, "up"},
		{"-n", l.Edge, "route", "add", "default", "via", InternetAddr.String()},
		{"-n", l.Internet, "route", "add", PublicNet.String(), "via", EdgeAddr.String()},
		// the VPC: a bridge in the cloud edge, the nodes' gateway
		{"-n", l.Edge, "link", "add", ifVPC, "type", "bridge"},
		{"-n", l.Edge, "addr", "add", prefixOf(gateway(VPCNet), VPCNet), "dev", ifVPC},
		{"-n", l.Edge, "link", "set", ifVPC, "up"},
	}
	for _, s := range steps {
		if err := l.ip(s...); err != nil {
			return err
		}
	}
	for _, ns := range []string{l.Router, l.Internet, l.Edge} {
		if err := l.sysctl(ns, "net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
	}
	// The internet sends packets between the router and the edge back out
	// of the port they came in on; a redirect would be noise.
	if err := l.sysctl(l.Internet, "net/ipv4/conf/all/send_redirects", "0"); err != nil {
		return err
	}
	if _, err := l.exec(l.Router, strings.NewReader(routerRules), "nft", "-f", "-"); err != nil {
		return err
	}
	if _, err := l.exec(l.Edge, strings.NewReader(edgeRules), "nft", "-f", "-"); err != nil {
		return err
	}
	return nil
}

// routerRules make the home router a typical NAT box: what the laptop sends
// out leaves with the router's public address, and nothing from the
// internet enters the home network except replies.
const routerRules = `
table ip natlab {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "` + ifWAN + `" masquerade
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "` + ifLAN + `" oifname "` + ifWAN + `" accept
	}
}
`

// edgeRules make the cloud edge a 1:1 NAT (public → private for what comes
// in, private → public for what goes out), and drop every packet a node
// sends outwards that is not part of a connection opened from outside.
const edgeRules = `
table ip natlab {
	map pub2priv { type ipv4_addr : ipv4_addr; }
	map priv2pub { type ipv4_addr : ipv4_addr; }
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "` + ifWAN + `" dnat to ip daddr map @pub2priv
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "` + ifWAN + `" snat to ip saddr map @priv2pub
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "` + ifVPC + `" oifname "` + ifWAN + `" ct state established,related accept
		iifname "` + ifVPC + `" oifname "` + ifWAN + `" counter drop comment "` + DropComment + `"
	}
}
`

// DroppedFromNodes returns how many packets the cloud edge's drop rule has
// dropped so far: packets nodes sent outwards that were not replies.
func (l *Lab) DroppedFromNodes() (uint64, error) {
	out, err := l.exec(l.Edge, nil, "nft", "list", "chain", "ip", "natlab", "forward")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, DropComment) {
			continue
		}
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "packets" {
				return strconv.ParseUint(f[i+1], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no counter on the drop rule in:\n%s", out)
}

// startFixture serves the what-is-my-IP fixture in the internet namespace.
func (l *Lab) startFixture() error {
	ln, err := l.Listen(l.Internet, "tcp", netip.AddrPortFrom(InternetAddr, FixturePort).String())
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ap, err := netip.ParseAddrPort(r.RemoteAddr)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintln(w, ap.Addr().Unmap())
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln) //nolint:errcheck // ends with ErrServerClosed at cleanup
	l.track(srv)
	return nil
}

// Command returns a command that runs name with args in namespace ns
// (through `ip netns exec`). Set its Env, Stdout and so on, then Run it, or
// hand it to Start.
func (l *Lab) Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Exec runs name with args in namespace ns and returns its output, stdout
// and stderr together. The error names the namespace and the command and
// carries the output.
func (l *Lab) Exec(ctx context.Context, ns, name string, args ...string) (string, error) {
	cmd := l.Command(ctx, ns, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s: %w\n%s", ns, strings.Join(append([]string{name}, args...), " "), err, out)
	}
	return string(out), nil
}

// Start starts a long-running command (from Command) in its own process
// group and, when the test ends, sends the group SIGTERM, then SIGKILL
// after 5 seconds, and waits for it. Call cmd.Wait yourself only if you
// need its status before then; the cleanup copes.
func (l *Lab) Start(cmd *exec.Cmd) error {
	_, err := l.start(cmd)
	return err
}

// start is Start; the channel closes when the command has exited.
func (l *Lab) start(cmd *exec.Cmd) (<-chan struct{}, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", strings.Join(cmd.Args, " "), err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait() //nolint:errcheck // the caller reads the status from cmd.ProcessState
		close(done)
	}()
	l.t.Cleanup(func() {
		pid := cmd.Process.Pid
		syscall.Kill(-pid, syscall.SIGTERM) //nolint:errcheck // may have exited
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-pid, syscall.SIGKILL) //nolint:errcheck
			<-done
		}
	})
	return done, nil
}

// StartService starts a server (cmd, from Command in namespace ns) like
// Start, and returns once something accepts TCP connections at addr in
// ns, which is where cmd was told to listen. It fails if cmd exits first or
// nothing answers within timeout. A cloud API emulator the CLI talks to
// (moto) runs this way on the laptop's loopback: the CLI and the test's
// in-process clients (HTTPClient(Laptop)) reach it, the nodes cannot.
func (l *Lab) StartService(ns string, addr netip.AddrPort, timeout time.Duration, cmd *exec.Cmd) error {
	done, err := l.start(cmd)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := l.Dial(ctx, ns, "tcp", addr.String())
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited (%s) before listening on %s in %s", strings.Join(cmd.Args, " "), cmd.ProcessState, addr, ns)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: nothing listens on %s in %s after %s: %w", strings.Join(cmd.Args, " "), addr, ns, timeout, err)
		}
	}
}

// FreePort returns a TCP port that is free on addr in namespace ns now
// (the kernel picks it; the listener is closed again).
func (l *Lab) FreePort(ns string, addr netip.Addr) (int, error) {
	var port int
	err := Do(ns, func() error {
		ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		if err != nil {
			return err
		}
		defer ln.Close()
		port = ln.Addr().(*net.TCPAddr).Port
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("in %s: %w", ns, err)
	}
	return port, nil
}

// Do runs f on an OS thread that has joined namespace ns. Sockets f opens
// belong to ns for their whole life, whichever goroutine uses them later.
// Goroutines f starts do not run in ns. The thread is discarded afterwards,
// so no other goroutine ever runs in ns.
func Do(ns string, f func() error) error {
	fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", ns, err)
	}
	defer unix.Close(fd)
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine.
		runtime.LockOSThread()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("joining network namespace %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// Listen opens a listener in namespace ns (see net.Listen). The Lab closes
// it when the test ends, if the test has not.
func (l *Lab) Listen(ns, network, address string) (net.Listener, error) {
	var ln net.Listener
	err := Do(ns, func() (err error) {
		ln, err = net.Listen(network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("in %s: %w", ns, err)
	}
	l.track(ln)
	return ln, nil
}

// ListenPacket opens a packet listener in namespace ns (see
// net.ListenPacket). The Lab closes it when the test ends.
func (l *Lab) ListenPacket(ns, network, address string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := Do(ns, func() (err error) {
		pc, err = net.ListenPacket(network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("in %s: %w", ns, err)
	}
	l.track(pc)
	return pc, nil
}

// Dial connects from namespace ns (see net.Dialer.DialContext). The Lab
// closes the connection when the test ends.
func (l *Lab) Dial(ctx context.Context, ns, network, address string) (net.Conn, error) {
	var c net.Conn
	err := Do(ns, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("in %s: %w", ns, err)
	}
	l.track(c)
	return c, nil
}

// HTTPClient returns a client whose connections are made from namespace ns.
func (l *Lab) HTTPClient(ns string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return l.Dial(ctx, ns, network, addr)
		},
		DisableKeepAlives: true,
	}}
}

func (l *Lab) track(c io.Closer) {
	l.mu.Lock()
	l.closers = append(l.closers, c)
	l.mu.Unlock()
}

// addNamespace makes ns with its loopback up, and records it for cleanup
// before anything else can fail.
func (l *Lab) addNamespace(ns string) error {
	if err := l.ip("netns", "add", ns); err != nil {
		return err
	}
	l.mu.Lock()
	l.namespaces = append(l.namespaces, ns)
	l.mu.Unlock()
	return l.ip("-n", ns, "link", "set", "lo", "up")
}

// cleanup closes every socket and deletes every namespace the Lab made;
// processes were stopped by their own cleanups, which run first.
func (l *Lab) cleanup() {
	l.mu.Lock()
	closers, namespaces := l.closers, l.namespaces
	l.closers, l.namespaces = nil, nil
	l.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i].Close()
	}
	for i := len(namespaces) - 1; i >= 0; i-- {
		if err := l.ip("netns", "delete", namespaces[i]); err != nil {
			l.t.Errorf("natlab: cleanup: %v", err)
		}
	}
}

// ip runs the ip command with args in the test's own namespace (args pick
// the namespace with -n or netns).
func (l *Lab) ip(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// exec runs a set-up command in ns with stdin.
func (l *Lab) exec(ns string, stdin io.Reader, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := l.Command(ctx, ns, name, args...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("in %s: %s %s: %w: %s", ns, name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// sysctl sets a /proc/sys/ key (path form, like net/ipv4/ip_forward) in ns.
func (l *Lab) sysctl(ns, key, value string) error {
	return Do(ns, func() error {
		if err := os.WriteFile("/proc/sys/"+key, []byte(value), 0); err != nil {
			return fmt.Errorf("in %s: sysctl %s=%s: %w", ns, key, value, err)
		}
		return nil
	})
}

// prefixOf writes addr with net's prefix length, as ip addr add wants it.
func prefixOf(addr netip.Addr, net netip.Prefix) string {
	return netip.PrefixFrom(addr, net.Bits()).String()
}

// broadcast is the last address of an IPv4 net.
func broadcast(net netip.Prefix) netip.Addr {
	a := net.Masked().Addr().As4()
	host := uint32(1)<<(32-net.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// gateway is the first address of net.
func gateway(net netip.Prefix) netip.Addr {
	return net.Masked().Addr().Next()
}

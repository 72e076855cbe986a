//go:build e2e

package e2e

// The NAT e2e tests (issue 9): clusterctl on a laptop behind NAT driving a
// cloud whose nodes can open no connection towards the laptop. test/natlab
// builds that world (docs/nat.md).
//
// Each test re-executes itself inside an empty "world" namespace holding
// nothing but its loopback, and builds its lab from there: whatever the
// test process itself sends by mistake (a dial that is not made in one of
// the lab's namespaces) goes nowhere, never to the machine's own networks.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/guesttest"
	"github.com/clusterctl/clusterctl/internal/identity/identitytest"
	"github.com/clusterctl/clusterctl/internal/ports"
	"github.com/clusterctl/clusterctl/provider/ec2"
	"github.com/clusterctl/clusterctl/provider/ec2/mototest"
	"github.com/clusterctl/clusterctl/provider/openstack/openstacktest"
	"github.com/clusterctl/clusterctl/test/natlab"
)

const (
	natInnerEnv = "CLUSTERCTL_NAT_E2E_INNER"
	natBinEnv   = "CLUSTERCTL_NAT_E2E_BIN"
)

// natWorld builds clusterctl and clusterctl-agent, then runs the calling
// test again inside a fresh empty namespace and returns false; inside it
// returns true with the directory holding the binaries.
func natWorld(t *testing.T) (inner bool, bin string) {
	t.Helper()
	if os.Getenv(natInnerEnv) != "" {
		return true, os.Getenv(natBinEnv)
	}
	natlab.SkipUnlessRoot(t)
	root, _ := filepath.Abs("../..")
	bin = t.TempDir()
	for _, b := range []struct{ out, pkg string }{{"clusterctl", "./cmd/clusterctl"}, {"clusterctl-agent", "./cmd/clusterctl-agent"}} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, b.out), b.pkg)
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b.pkg, err, out)
		}
	}
	world := fmt.Sprintf("cctl-nat-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", world).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", world, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", world).Run() })
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", world, os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.v")
	cmd.Env = append(os.Environ(), natInnerEnv+"=1", natBinEnv+"="+bin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Log(out.String())
	if err != nil {
		t.Fatalf("inside namespace %s: %v", world, err)
	}
	return false, bin
}

// natAgentConfig is a node's agent config as the CLI would render it for
// the old design (no API section): the gossip key, the node's private
// address, seeds by private address, the state in dir.
func natAgentConfig(t *testing.T, dir, name string, key []byte, private netip.Addr, seeds ...string) string {
	t.Helper()
	id, err := agentconfig.NewIdentity(identitytest.CA("natlab"), name, "nonce-"+name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"identity": id,
		"cluster":  "natlab", "name": name, "nonce": "nonce-" + name, "provider": "ec2",
		"instance_id": "i-" + name, "key": key, "bind_addr": "0.0.0.0", "port": ports.Gossip,
		"advertise_addr": private.String(), "seeds": seeds,
		"hosts_file": filepath.Join(dir, "hosts"), "state_dir": filepath.Join(dir, "state"),
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "agent.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startNATAgent starts the real agent in namespace ns with config cfg,
// logging to dir/agent.log.
func startNATAgent(t *testing.T, lab *natlab.Lab, ns, bin, dir, cfg string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd := lab.Command(context.Background(), ns, filepath.Join(bin, "clusterctl-agent"), "-config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := lab.Start(cmd); err != nil {
		t.Fatal(err)
	}
}

// nsTransport is memberlist's TCP/UDP transport whose listeners were made
// in a lab namespace and whose outgoing TCP connections are made there too
// (memberlist dials them from its own goroutines).
type nsTransport struct {
	*memberlist.NetTransport
	ns string
}

func (n nsTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := natlab.Do(n.ns, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c, err
}

func (n nsTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return n.DialTimeout(a.Addr, timeout)
}

// TestNATOldObserverFails shows why the CLI no longer watches the cluster
// as a gossip member. Behind NAT such a member could join a node at its
// public address (the join is a TCP exchange the laptop opens) but never
// be a stable member, since the nodes name each other by private addresses
// the laptop cannot reach. And now, first of all, a member without an
// identity from the cluster's CA is refused at the door: node-1 never
// admits it (its log says so), so it never addresses it either. The
// laptop's member holds node-1 failed and never learns of node-2, while
// the two nodes see each other at once.
func TestNATOldObserverFails(t *testing.T) {
	inner, bin := natWorld(t)
	if !inner {
		return
	}
	lab := natlab.New(t)
	key := bytes.Repeat([]byte{7}, 32)
	dir1, dir2 := t.TempDir(), t.TempDir()
	priv1, pub1, ns1 := lab.AddNode("node-1")
	priv2, _, ns2 := lab.AddNode("node-2")
	startNATAgent(t, lab, ns1, bin, dir1, natAgentConfig(t, dir1, "node-1", key, priv1))

	// The old observer: a serf member in the laptop's namespace with the
	// cluster's key, as the CLI ran it (role observer, production timing).
	var tr *memberlist.NetTransport
	if err := natlab.Do(lab.Laptop, func() (err error) {
		tr, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"0.0.0.0"}, BindPort: ports.Gossip})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	tags := map[string]string{"cluster": "natlab", "name": "laptop-observer", "role": "observer"}
	keyring, err := memberlist.NewKeyring(nil, key)
	if err != nil {
		t.Fatal(err)
	}
	sc := serf.DefaultConfig()
	sc.NodeName, sc.Tags = "laptop-observer", tags
	sc.LogOutput = &bytes.Buffer{}
	sc.MemberlistConfig.Name = sc.NodeName
	sc.MemberlistConfig.Label = "natlab"
	sc.MemberlistConfig.Keyring = keyring
	sc.MemberlistConfig.GossipVerifyIncoming, sc.MemberlistConfig.GossipVerifyOutgoing = true, true
	sc.MemberlistConfig.Transport = nsTransport{NetTransport: tr, ns: lab.Laptop}
	sc.MemberlistConfig.AdvertiseAddr, sc.MemberlistConfig.AdvertisePort = natlab.LaptopAddr.String(), ports.Gossip
	sc.MemberlistConfig.LogOutput = sc.LogOutput
	s, err := serf.Create(sc)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()

	// The join reaches node-1 at its public address (retried while its
	// agent starts).
	target := netip.AddrPortFrom(pub1, ports.Gossip).String()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err = s.Join([]string{target}, true); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the laptop's member could not even join %s: %v", target, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("laptop member joined node-1 at %s", target)

	// A second node joins node-1 on the private network.
	startNATAgent(t, lab, ns2, bin, dir2, natAgentConfig(t, dir2, "node-2", key, priv2, netip.AddrPortFrom(priv1, ports.Gossip).String()))

	// Watch for 40 s, production timing: long enough for the nodes to see
	// each other many times over and for push/pull (every 30 s) to run.
	var (
		sawNode2, node1Failed, nodesSeeEachOther bool
		view                                     string
	)
	for end := time.Now().Add(40 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		var parts []string
		for _, m := range s.Members() {
			parts = append(parts, fmt.Sprintf("%s@%s:%s", m.Name, m.Addr, m.Status))
			switch {
			case m.Name == "node-2" && m.Status == serf.StatusAlive:
				sawNode2 = true
			case m.Name == "node-1" && m.Status == serf.StatusFailed:
				node1Failed = true
			}
		}
		slices.Sort(parts)
		view = strings.Join(parts, " ")
		h1, _ := os.ReadFile(filepath.Join(dir1, "hosts"))
		h2, _ := os.ReadFile(filepath.Join(dir2, "hosts"))
		if strings.Contains(string(h1), "node-2") && strings.Contains(string(h2), "node-1") {
			nodesSeeEachOther = true
		}
	}
	t.Logf("after 40 s the laptop's member sees: %s", view)

	// The control: the agents themselves gossip fine.
	if !nodesSeeEachOther {
		h1, _ := os.ReadFile(filepath.Join(dir1, "hosts"))
		l1, _ := os.ReadFile(filepath.Join(dir1, "agent.log"))
		t.Fatalf("node-1 and node-2 never listed each other in their hosts files; node-1's hosts:\n%s\nnode-1's log:\n%s", h1, l1)
	}
	// What the old design needed, and does not get here.
	if sawNode2 {
		t.Errorf("the laptop's member learned of node-2 joining: a member observer would work behind NAT")
	}
	if !node1Failed {
		t.Errorf("the laptop's member never held node-1 as failed (view: %s): it looked like a stable member", view)
	}
	if l1, _ := os.ReadFile(filepath.Join(dir1, "agent.log")); !strings.Contains(string(l1), "refused a gossip member") || !strings.Contains(string(l1), "laptop-observer") {
		t.Errorf("node-1 did not log refusing the laptop's member (it has no identity):\n%s", l1)
	}
	dropped, err := lab.DroppedFromNodes()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the cloud edge dropped %d packets the nodes sent towards the laptop (none: node-1 never admitted it)", dropped)
}

// natEC2 is TestNATLaptopEC2's world: moto on the laptop's loopback, the
// CLI in the laptop's namespace, and a harness that plays each instance
// moto reports as a node of the lab at the instance's own addresses.
type natEC2 struct {
	player
	lab    *natlab.Lab
	bin    string
	home   string
	dir    string
	config string
	http   *http.Client // from the laptop's namespace
	ec2    *awsec2.Client
	s3     *s3.Client
}

// TestNATLaptopEC2 is issue 9's end-to-end test for EC2: the real
// clusterctl runs on a laptop behind NAT (test/natlab) against moto on the
// laptop's loopback; every instance moto reports is played by a node
// namespace that holds the instance's private address, mapped 1:1 to the
// public address moto gave it, running the real agent from the user-data.
// The nodes can open nothing towards the laptop. A user sees up return
// with both nodes joined, status show them alive, down red leave red
// gracefully and down --all leave nothing.
func TestNATLaptopEC2(t *testing.T) {
	inner, bin := natWorld(t)
	if !inner {
		return
	}
	mototest.Require(t)
	mototest.IsolateAWSEnv(t)
	lab := natlab.New(t)
	w := &natEC2{player: newPlayer(t, "instance"), lab: lab, bin: bin, home: t.TempDir(), dir: t.TempDir(), http: lab.HTTPClient(lab.Laptop)}

	// moto on the laptop's loopback: the CLI talks to the AWS API itself,
	// and the harness reads the user-data from it.
	lo := netip.MustParseAddr("127.0.0.1")
	port, err := lab.FreePort(lab.Laptop, lo)
	if err != nil {
		t.Fatal(err)
	}
	argv := mototest.Require(t)
	moto := lab.Command(context.Background(), lab.Laptop, argv[0], append(argv[1:], "-H", lo.String(), "-p", strconv.Itoa(port))...)
	motoLog, _ := os.Create(filepath.Join(w.dir, "moto.log"))
	moto.Stdout, moto.Stderr = motoLog, motoLog
	if err := lab.StartService(lab.Laptop, netip.AddrPortFrom(lo, uint16(port)), 30*time.Second, moto); err != nil {
		t.Fatal(err)
	}
	motoURL := fmt.Sprintf("http://%s:%d", lo, port)
	var ami string
	w.ec2, w.s3, ami = motoClients(t, motoURL, w.http)
	// The cluster's config, as a user on a laptop writes it: no observer,
	// no api_from (detected through the what-is-my-IP fixture).
	w.config = filepath.Join(w.dir, "cluster.yaml")
	writeEC2Config(t, w.config, motoURL, ami, "")

	// Traps on the laptop's side: where a member observer would listen
	// (gossip, TCP and UDP) and the API port, on the laptop and on the home
	// router's public address. No node may ever reach one.
	trapped := natTraps(t, lab)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.playEC2(ctx, w.ec2, w.boot) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	out, err := w.cli(10*time.Minute, "up", "--provider", "ec2", "red", "blue", "-o", "json")
	w.checkFailures()
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	up := readUp(t, out)
	var names []string
	for _, n := range up.Nodes {
		names = append(names, n.Name)
		if n.Phase != "joined" || !strings.HasPrefix(n.InstanceID, "i-") {
			t.Errorf("up: node %+v, want joined with an instance id", n)
		}
	}
	if slices.Sort(names); !slices.Equal(names, []string{"blue", "red"}) {
		t.Fatalf("up made nodes %v, want blue and red: %s", names, out)
	}
	w.checkAPIRule()

	if st := w.status(); st["red"] != "alive" || st["blue"] != "alive" || len(st) != 2 {
		t.Errorf("status after up: %v, want red and blue alive", st)
	}

	if _, err := w.cli(3*time.Minute, "down", "red"); err != nil {
		t.Fatalf("down red: %v", err)
	}
	if st := w.status(); st["blue"] != "alive" || (st["red"] != "" && st["red"] != "left") {
		t.Errorf("status after down red: %v, want blue alive and red gone", st)
	}

	if _, err := w.cli(3*time.Minute, "down", "--all"); err != nil {
		t.Fatalf("down --all: %v", err)
	}
	checkEC2NothingLeft(t, w.ec2, w.s3)
	w.checkFailures()

	if n := trapped(); n != 0 {
		t.Errorf("the laptop's side was contacted %d times from outside", n)
	}
	dropped, err := lab.DroppedFromNodes()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the cloud edge dropped %d packets the nodes sent towards the laptop's side", dropped)
}

// natTraps listens on the laptop's side where nodes would have to reach a
// member observer or a callback (gossip TCP and UDP, the API port; on the
// laptop and on the home router's public address), and returns a function
// that counts what arrived from anywhere.
func natTraps(t *testing.T, lab *natlab.Lab) func() int {
	var (
		mu sync.Mutex
		n  int
	)
	hit := func(what string) {
		mu.Lock()
		n++
		mu.Unlock()
		t.Logf("trap: %s", what)
	}
	for _, at := range []struct {
		ns   string
		addr netip.Addr
	}{{lab.Laptop, natlab.LaptopAddr}, {lab.Router, natlab.RouterPublicAddr}} {
		for _, p := range []int{ports.Gossip, ports.API} {
			addr := netip.AddrPortFrom(at.addr, uint16(p)).String()
			ln, err := lab.Listen(at.ns, "tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					hit(fmt.Sprintf("TCP %s from %s", addr, c.RemoteAddr()))
					c.Close()
				}
			}()
		}
		addr := netip.AddrPortFrom(at.addr, ports.Gossip).String()
		pc, err := lab.ListenPacket(at.ns, "udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			buf := make([]byte, 2048)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				hit(fmt.Sprintf("UDP %s from %s", addr, from))
			}
		}()
	}
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// cli runs clusterctl in the laptop's namespace. Neither its output nor
// the state directory may show the secret key.
func (w *natEC2) cli(d time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := w.lab.Command(ctx, w.lab.Laptop, filepath.Join(w.bin, "clusterctl"), append([]string{"--config", w.config}, args...)...)
	cmd.Env = append(os.Environ(), "CLUSTERCTL_HOME="+w.home, "CLUSTERCTL_AGENT="+filepath.Join(w.bin, "clusterctl-agent"),
		"AWS_ACCESS_KEY_ID="+ec2KeyID, "AWS_SECRET_ACCESS_KEY="+ec2Secret,
		"CLUSTERCTL_PUBLIC_IP_URL="+w.lab.WhatIsMyIPURL())
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	w.t.Logf("clusterctl %s (%.1fs)\n%s%s", strings.Join(args, " "), time.Since(start).Seconds(), out.String(), errb.String())
	if strings.Contains(out.String()+errb.String(), ec2Secret) {
		w.t.Errorf("clusterctl %v printed the secret key", args)
	}
	_ = filepath.Walk(w.home, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(ec2Secret)) {
				w.t.Errorf("%s holds the secret key", p)
			}
		}
		return nil
	})
	if err != nil {
		return out.String(), fmt.Errorf("%w: %s", err, errb.String())
	}
	return out.String(), nil
}

// status runs `status -o json` and returns each node's gossip state.
func (w *natEC2) status() map[string]string {
	w.t.Helper()
	out, err := w.cli(time.Minute, "status", "-o", "json")
	if err != nil {
		w.t.Fatalf("status: %v", err)
	}
	return gossipByName(w.t, out)
}

// boot does what cloud-init and the instance would do with the user-data,
// in a lab node at the instance's addresses.
func (w *natEC2) boot(ctx context.Context, in types.Instance) {
	id := aws.ToString(in.InstanceId)
	w.mu.Lock()
	w.booted[id] = nil
	w.mu.Unlock()
	dir := filepath.Join(w.dir, id)
	_ = os.MkdirAll(dir, 0o700)

	private, err1 := netip.ParseAddr(aws.ToString(in.PrivateIpAddress))
	public, err2 := netip.ParseAddr(aws.ToString(in.PublicIpAddress))
	if err1 != nil || err2 != nil {
		w.fail("%s: moto gave private address %q and public address %q: %v %v", id, aws.ToString(in.PrivateIpAddress), aws.ToString(in.PublicIpAddress), err1, err2)
		return
	}
	ud, err := ec2UserData(ctx, w.ec2, id)
	if err != nil {
		w.fail("%s: %v", id, err)
		return
	}
	inst, err := guesttest.Unpack(w.http, ud, dir, id, nil)
	if err != nil {
		w.fail("%s: %v", id, err)
		return
	}

	ns, err := w.addNode(strings.ToLower(id), private, public)
	if err != nil {
		w.fail("%s: %v", id, err)
		return
	}
	logf, _ := os.Create(filepath.Join(dir, "agent.log"))
	cmd := w.lab.Command(context.Background(), ns, inst.Agent, "-config", inst.Config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := w.lab.Start(cmd); err != nil {
		w.fail("%s: %v", id, err)
		return
	}
	w.mu.Lock()
	w.booted[id] = cmd
	w.mu.Unlock()
	w.t.Logf("instance %s booted: agent in %s at %s, public %s", id, ns, private, public)
}

func (w *natEC2) addNode(name string, private, public netip.Addr) (string, error) {
	return w.lab.AddNodeAt(name, private, public)
}

// checkAPIRule: the cluster's security group opens the API port to the
// laptop's public address as the what-is-my-IP fixture saw it, and to
// nothing wider.
func (w *natEC2) checkAPIRule() {
	g, err := w.ec2.DescribeSecurityGroups(context.Background(), &awsec2.DescribeSecurityGroupsInput{Filters: []types.Filter{{Name: aws.String("tag:" + ec2.TagManagedBy), Values: []string{"clusterctl"}}}})
	if err != nil {
		w.t.Fatal(err)
	}
	want := netip.PrefixFrom(natlab.RouterPublicAddr, 32).String()
	var from []string
	for _, sg := range g.SecurityGroups {
		for _, p := range sg.IpPermissions {
			if aws.ToInt32(p.FromPort) <= ports.API && ports.API <= aws.ToInt32(p.ToPort) {
				for _, r := range p.IpRanges {
					from = append(from, aws.ToString(r.CidrIp))
				}
			}
		}
	}
	if !slices.Equal(from, []string{want}) {
		w.t.Errorf("the API port %d is open to %v, want only %s (the laptop's public address)", ports.API, from, want)
	}
}

// natOS is TestNATLaptopOpenStack's world: the fake OpenStack on the
// laptop's loopback, the CLI in the laptop's namespace, and a harness that
// plays each server with a floating IP as a node of the lab at the server's
// fixed address, mapped 1:1 to its floating IP.
type natOS struct {
	player
	lab    *natlab.Lab
	bin    string
	home   string
	dir    string
	config string
	cloud  *openstacktest.Cloud
	http   *http.Client // from the laptop's namespace
}

// natOSCluster is the cluster's name in TestNATLaptopOpenStack.
const natOSCluster = "natos"

// TestNATLaptopOpenStack is issue 9's end-to-end test for a second
// provider: the real clusterctl runs on a laptop behind NAT (test/natlab)
// against the fake OpenStack (provider/openstack/openstacktest) served on
// the laptop's loopback. The cluster network is the lab's VPC
// (172.31.0.0/16) and floating IPs come from the fake's external network
// "public" (203.0.113.0/24, documentation addresses the lab's edge maps).
// Every server that is ACTIVE with a floating IP is played by a node
// namespace holding the server's fixed address, mapped 1:1 to its floating
// IP, running the real agent from the user-data; the nodes can open nothing
// towards the laptop. A user sees up return with both nodes joined, the
// cluster's security group open the API and SSH ports to the home router's
// public address only, status show both alive, down red leave red
// gracefully and down --all leave nothing at the cloud.
func TestNATLaptopOpenStack(t *testing.T) {
	inner, bin := natWorld(t)
	if !inner {
		return
	}
	lab := natlab.New(t)
	w := &natOS{player: newPlayer(t, "server"), lab: lab, bin: bin, home: t.TempDir(), dir: t.TempDir(), http: lab.HTTPClient(lab.Laptop)}

	// The fake cloud listens on the laptop's loopback (its listener is
	// made in the laptop's namespace): the CLI reaches it, the nodes
	// cannot.
	if err := natlab.Do(lab.Laptop, func() error {
		w.cloud = openstacktest.New(false)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.cloud.Close)
	w.cloud.AddNetwork("cluster", natlab.VPCNet.String())

	// clouds.yaml and secure.yaml as a user keeps them; the cluster's
	// config lists no api_from (detected through the what-is-my-IP
	// fixture).
	cdir := t.TempDir()
	writeFile(t, filepath.Join(cdir, "clouds.yaml"), fmt.Sprintf(`clouds:
  natlab:
    auth:
      auth_url: %s
      username: %s
      project_name: %s
      user_domain_name: %s
      project_domain_name: %s
    region_name: %s
`, w.cloud.AuthURL(), openstacktest.UserName, openstacktest.ProjectName, openstacktest.DomainName, openstacktest.DomainName, openstacktest.Region))
	writeFile(t, filepath.Join(cdir, "secure.yaml"), fmt.Sprintf("clouds:\n  natlab:\n    auth:\n      password: %q\n", openstacktest.Password))
	w.config = filepath.Join(w.dir, "cluster.yaml")
	writeFile(t, w.config, fmt.Sprintf(`cluster: %s
provider: openstack
timeouts:
  create: 2m
  join: %s
openstack:
  cloud: natlab
  clouds_file: %s
  flavor: m1.small
  image: debian-12-genericcloud-amd64
  network: cluster
  floating_ip_pool: %s
  poll_interval: 100ms
`, natOSCluster, "90s", filepath.Join(cdir, "clouds.yaml"), openstacktest.NetworkPublic))

	trapped := natTraps(t, lab)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.playOpenStack(ctx, w.cloud, w.boot) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	out, _, err := w.cli(10*time.Minute, "up", "--provider", "openstack", "red", "blue", "-o", "json")
	w.checkFailures()
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	up := readUp(t, out)
	floating := map[string]string{} // fixed IP → floating IP
	for _, f := range w.cloud.FloatingIPs() {
		floating[f.FixedIP] = f.Address
	}
	var names []string
	for _, n := range up.Nodes {
		names = append(names, n.Name)
		if n.Phase != "joined" || n.InstanceID == "" {
			t.Errorf("up: node %+v, want joined with an instance id", n)
		}
		if a, err := netip.ParseAddr(n.Address); err != nil || !natlab.VPCNet.Contains(a) || floating[n.Address] == "" {
			t.Errorf("up: node %s at %q; want a fixed address in %s with a floating IP (floating IPs: %v)", n.Name, n.Address, natlab.VPCNet, floating)
		}
	}
	if slices.Sort(names); !slices.Equal(names, []string{"blue", "red"}) {
		t.Fatalf("up made nodes %v, want blue and red: %s", names, out)
	}
	w.checkRules()
	if st := w.status(); st["red"] != "alive" || st["blue"] != "alive" || len(st) != 2 {
		t.Errorf("status after up: %v, want red and blue alive", st)
	}

	// A graceful leave: down reaches red's agent at its floating IP, and
	// blue sees it leave; down says so when it does not.
	if _, errOut, err := w.cli(3*time.Minute, "down", "red"); err != nil {
		t.Fatalf("down red: %v", err)
	} else if strings.Contains(errOut, "without a graceful leave") || strings.Contains(errOut, "deleting anyway") || strings.Contains(errOut, "no other node could confirm") {
		t.Errorf("down red did not leave gracefully:\n%s", errOut)
	}
	if st := w.status(); st["blue"] != "alive" || (st["red"] != "" && st["red"] != "left") {
		t.Errorf("status after down red: %v, want blue alive and red gone", st)
	}
	for _, s := range w.cloud.Servers() {
		if s.Name == "red" {
			t.Errorf("server red %s is still there after down red", s.ID)
		}
	}

	if _, _, err := w.cli(3*time.Minute, "down", "--all"); err != nil {
		t.Fatalf("down --all: %v", err)
	}
	w.checkNothingLeft()
	w.checkFailures()

	if n := trapped(); n != 0 {
		t.Errorf("the laptop's side was contacted %d times from outside", n)
	}
	dropped, err := lab.DroppedFromNodes()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the cloud edge dropped %d packets the nodes sent towards the laptop's side", dropped)
}

// cli runs clusterctl in the laptop's namespace with no OS_ variable (only
// the config decides the cloud). Neither its output nor its state may show
// the password.
func (w *natOS) cli(d time.Duration, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := w.lab.Command(ctx, w.lab.Laptop, filepath.Join(w.bin, "clusterctl"), append([]string{"--config", w.config}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "CLUSTERCTL_HOME="+w.home, "CLUSTERCTL_AGENT="+filepath.Join(w.bin, "clusterctl-agent"),
		"CLUSTERCTL_PUBLIC_IP_URL="+w.lab.WhatIsMyIPURL())
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err = cmd.Run()
	w.t.Logf("clusterctl %s (%.1fs)\n%s%s", strings.Join(args, " "), time.Since(start).Seconds(), out.String(), errb.String())
	if strings.Contains(out.String()+errb.String(), openstacktest.Password) {
		w.t.Errorf("clusterctl %v printed the password", args)
	}
	_ = filepath.Walk(w.home, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(openstacktest.Password)) {
				w.t.Errorf("%s holds the password", p)
			}
		}
		return nil
	})
	if err != nil {
		return out.String(), errb.String(), fmt.Errorf("%w: %s", err, errb.String())
	}
	return out.String(), errb.String(), nil
}

// status runs `status -o json` and returns each node's gossip state.
func (w *natOS) status() map[string]string {
	w.t.Helper()
	out, _, err := w.cli(time.Minute, "status", "-o", "json")
	if err != nil {
		w.t.Fatalf("status: %v", err)
	}
	return gossipByName(w.t, out)
}

// boot does what cloud-init and the install script would do with the
// server's user-data, in a lab node at the server's fixed address mapped to
// its floating IP. A server without a floating IP on its port is not ready
// yet. It returns the running agent, or nil after recording why it could
// not boot.
func (w *natOS) boot(s openstacktest.Server) (*exec.Cmd, bool) {
	var floatingIP string
	for _, f := range w.cloud.FloatingIPs() {
		if f.PortID != "" && f.FixedIP == s.FixedIP {
			floatingIP = f.Address
		}
	}
	if floatingIP == "" {
		return nil, false
	}
	private, err1 := netip.ParseAddr(s.FixedIP)
	public, err2 := netip.ParseAddr(floatingIP)
	if err1 != nil || err2 != nil {
		w.fail("%s: fixed IP %q, floating IP %q: %v %v", s.Name, s.FixedIP, floatingIP, err1, err2)
		return nil, true
	}
	// The agent from the Swift temporary URL (no credentials); the
	// harness fetches it for the node, which has no way out. The node's
	// eth0 holds the fixed address, so the agent finds its address in
	// advertise_cidr itself.
	dir := filepath.Join(w.dir, s.Name+"-"+s.ID[:8])
	inst, err := guesttest.Unpack(w.http, s.UserData, dir, s.ID, func(cfg map[string]any) error {
		if c, err := netip.ParsePrefix(fmt.Sprint(cfg["advertise_cidr"])); err != nil || !c.Contains(private) {
			return fmt.Errorf("advertise_cidr %v does not hold the fixed address %s", cfg["advertise_cidr"], private)
		}
		return nil
	})
	if err != nil {
		w.fail("%s: %v", s.Name, err)
		return nil, true
	}
	ns, err := w.lab.AddNodeAt(s.Name+"-"+s.ID[:8], private, public)
	if err != nil {
		w.fail("%s: %v", s.Name, err)
		return nil, true
	}
	logf, _ := os.Create(filepath.Join(dir, "agent.log"))
	cmd := w.lab.Command(context.Background(), ns, inst.Agent, "-config", inst.Config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := w.lab.Start(cmd); err != nil {
		w.fail("%s: %v", s.Name, err)
		return nil, true
	}
	w.t.Logf("server %s (%s) booted: agent in %s at %s, floating IP %s", s.Name, s.ID, ns, private, public)
	return cmd, true
}

// checkRules: the cluster's security group opens the API port and SSH to
// the laptop's public address as the what-is-my-IP fixture saw it, and to
// nothing else (no other prefix, no group, not everyone).
func (w *natOS) checkRules() {
	want := []string{netip.PrefixFrom(natlab.RouterPublicAddr, 32).String()}
	var cluster []openstacktest.SecurityGroup
	for _, g := range w.cloud.SecurityGroups() {
		if g.Name != "default" {
			cluster = append(cluster, g)
		}
	}
	if len(cluster) != 1 {
		w.t.Fatalf("security groups besides default: %+v, want the cluster's alone", cluster)
	}
	for _, port := range []int{ports.API, 22} {
		var from []string
		for _, r := range cluster[0].Rules {
			covers := (r.PortMin == 0 && r.PortMax == 0) || (r.PortMin <= port && port <= r.PortMax)
			if r.Direction != "ingress" || (r.Protocol != "" && r.Protocol != "tcp") || !covers {
				continue
			}
			switch {
			case r.RemoteIPPrefix != "":
				from = append(from, r.RemoteIPPrefix)
			case r.RemoteGroupID != "":
				from = append(from, "group "+r.RemoteGroupID)
			default:
				from = append(from, "anyone")
			}
		}
		if !slices.Equal(from, want) {
			w.t.Errorf("TCP port %d is open to %v, want only %v (the laptop's public address)", port, from, want)
		}
	}
}

// checkNothingLeft: no server, floating IP, security group (but default)
// or Swift object at the cloud.
func (w *natOS) checkNothingLeft() {
	if s := w.cloud.Servers(); len(s) != 0 {
		w.t.Errorf("servers after down --all: %+v", s)
	}
	if f := w.cloud.FloatingIPs(); len(f) != 0 {
		w.t.Errorf("floating IPs after down --all: %+v", f)
	}
	for _, g := range w.cloud.SecurityGroups() {
		if g.Name != "default" {
			w.t.Errorf("security group %q left after down --all", g.Name)
		}
	}
	if o := w.cloud.Objects(); len(o) != 0 {
		w.t.Errorf("Swift objects left after down --all: %v", o)
	}
}

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
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/clusterctl/clusterctl/agent"
	"github.com/clusterctl/clusterctl/internal/ports"
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
	cfg := map[string]any{
		"cluster": "natlab", "name": name, "nonce": "nonce-" + name, "provider": "ec2",
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
// as a gossip member: behind NAT such a member joins a node at its public
// address (the join is a TCP exchange the laptop opens), but it is never a
// stable member. The node's state names the others by their private
// addresses, which the laptop cannot reach, and whatever the nodes send it
// is dropped at the cloud edge; so the laptop's member soon holds the node
// it joined as failed and never learns of a node that joins later, while
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
	tags, err := agent.Meta{Role: agent.RoleObserver}.SerfTags()
	if err != nil {
		t.Fatal(err)
	}
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
	dropped, err := lab.DroppedFromNodes()
	if err != nil {
		t.Fatal(err)
	}
	if dropped == 0 {
		t.Errorf("the cloud edge dropped nothing the nodes sent: they never tried to reach the laptop's member")
	}
	t.Logf("the cloud edge dropped %d packets the nodes sent towards the laptop", dropped)
}

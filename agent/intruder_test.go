package agent_test

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/netnstest"
)

var (
	intruderOnce sync.Once
	intruderBin  string
	intruderErr  error
)

// intruderBinary builds test/intruder, a plain serf member with the gossip
// key and label and no identity, next to the agent binary.
func intruderBinary(t *testing.T) string {
	t.Helper()
	intruderOnce.Do(func() {
		intruderBin = filepath.Join(filepath.Dir(agentBinary(t)), "intruder")
		if out, err := exec.Command("go", "build", "-o", intruderBin, "../test/intruder").CombinedOutput(); err != nil {
			intruderErr = err
			t.Logf("%s", out)
		}
	})
	if intruderErr != nil {
		t.Fatal(intruderErr)
	}
	return intruderBin
}

// TestIntrudersAreRefused runs two real agents, each in its own network
// namespace, and, from a third namespace, plain serf members that hold the
// gossip key and the label but no identity from the cluster's CA: one
// named like a service (db), one localhost advertised at red's address,
// one squatting blue's name with blue's nonce, one with red's stolen nonce
// under a new name, one whose name carries a snapshot line. They also run
// serf's key manager to plant a key. None of them reaches a hosts file,
// peers.json, the snapshot or a view; the keyrings do not change; blue is
// not shut down; and each refusal is logged.
func TestIntrudersAreRefused(t *testing.T) {
	netnstest.Require(t)
	n := netnstest.New(t)
	red := newProc(t, n.AddNode(), "red", nil)
	blue := newProc(t, n.AddNode(), "blue", nil)
	blue.cfg.Seeds = []string{red.node.Addr.String() + ":7946"}
	for _, p := range []*proc{red, blue} {
		p.cfg.HostsFile = filepath.Join(p.dir, "hosts")
		if err := os.WriteFile(p.cfg.HostsFile, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		p.start(t)
	}
	ps := []*proc{red, blue}
	waitViews(t, ps, []string{"red", "blue"}, "alive", 30*time.Second)

	evil := n.AddNode()
	redAddr := red.node.Addr.String()
	tags := func(name, nonce string) string {
		return "cluster=heal;name=" + name + ";role=node;nonce=" + nonce + ";hostname=" + name + "-looks-fine"
	}
	planted := base64.StdEncoding.EncodeToString([]byte("PLANTEDPLANTEDPLANTEDPLANTEDPLAN"))
	cmd := evil.Command(intruderBinary(t), "-bind", evil.Addr.String(), "-label", "heal",
		"-key", base64.StdEncoding.EncodeToString(testKey), "-join", redAddr+":7946", "-planted", planted, "-stay", "5s",
		"-member", "db|"+evil.Addr.String()+"|"+tags("db", "x"),
		"-member", "localhost|"+redAddr+"|"+tags("localhost", "y"),
		"-member", "blue|"+evil.Addr.String()+"|"+tags("blue", blue.cfg.Nonce),
		"-member", "evil2|"+evil.Addr.String()+"|"+tags("evil2", red.cfg.Nonce),
		"-member", "x\nalive: evil3 "+evil.Addr.String()+":7946|"+evil.Addr.String()+"|"+tags("x", "z"))
	out, err := cmd.CombinedOutput()
	t.Logf("intruder:\n%s", out)
	if err != nil {
		t.Fatalf("intruder: %v", err)
	}
	// The only answer to each key query is the intruder's own member.
	for _, q := range []string{"install-key", "use-key", "remove-key"} {
		if !strings.Contains(string(out), q+" answered=1 of") {
			t.Errorf("an agent answered the intruder's %s query", q)
		}
	}

	time.Sleep(2 * time.Second) // the agents' files follow within a second
	for _, p := range ps {
		for _, f := range []string{p.cfg.HostsFile, filepath.Join(p.cfg.StateDir, "peers.json"), filepath.Join(p.cfg.StateDir, "serf.snapshot")} {
			b, _ := os.ReadFile(f)
			for _, bad := range []string{"db", "evil", "looks-fine", evil.Addr.String()} {
				if strings.Contains(string(b), bad) {
					t.Errorf("%s's %s holds %q:\n%s", p.name, filepath.Base(f), bad, b)
				}
			}
			if strings.HasSuffix(f, "hosts") && strings.Count(string(b), "localhost") != 1 {
				t.Errorf("%s's hosts file maps localhost more than once:\n%s", p.name, b)
			}
		}
		keys, err := os.ReadFile(filepath.Join(p.cfg.StateDir, "keyring.json"))
		if err != nil || strings.Contains(string(keys), planted) || !strings.Contains(string(keys), base64.StdEncoding.EncodeToString(testKey)) {
			t.Errorf("%s's keyring file changed: %s (%v)", p.name, keys, err)
		}
		log, _ := os.ReadFile(p.log)
		if p == red && !strings.Contains(string(log), "refused a gossip member") {
			t.Errorf("red logged no refusal")
		}
		if strings.Contains(string(log), "shut itself down") {
			t.Errorf("%s's gossip shut down", p.name)
		}
		for name := range p.view() {
			if name != "red" && name != "blue" {
				t.Errorf("%s's view holds %q", p.name, name)
			}
		}
	}
	waitViews(t, ps, []string{"red", "blue"}, "alive", 10*time.Second)
}

package agent_test

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/pki"
	"github.com/clusterctl/clusterctl/internal/testkit"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// A connection flood that runs the agent out of file descriptors (its
// RLIMIT_NOFILE lowered to a few more than it holds) makes accept fail with
// EMFILE; once the flood stops, the API answers again.
func TestAPIAnswersAgainAfterRunningOutOfFiles(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.Create(t.TempDir(), "flood")
	if err != nil {
		t.Fatal(err)
	}
	node, err := ca.IssueNode("n1", []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.IssueCLI()
	if err != nil {
		t.Fatal(err)
	}
	apiPort := testkit.FreePort(t, "127.0.0.1")
	cfg := agentconfig.Config{
		Cluster: "flood", Name: "n1", Nonce: "n1-1", Provider: "test", InstanceID: "i-n1",
		Key: testKey, BindAddr: "127.0.0.1", Port: testkit.FreePort(t, "127.0.0.1"), AdvertiseAddr: "127.0.0.1",
		StateDir: filepath.Join(dir, "state"), Timing: processTiming(),
		API: agentconfig.APIConfig{BindAddr: "127.0.0.1", Port: apiPort, Cert: string(node.CertPEM), Key: string(node.KeyPEM), CA: string(node.CAPEM)},
	}
	if cfg.Identity, err = agentconfig.NewIdentity(ca, cfg.Name, cfg.Nonce); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(dir, "agent.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "agent.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(agentBinary(t), "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	agentLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }

	client, err := nodeapi.NewClient(cli, nodeapi.Endpoints(nodeapi.Endpoint{Name: "n1", Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(apiPort))}))
	if err != nil {
		t.Fatal(err)
	}
	answers := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := client.Members(ctx)
		return err
	}
	testkit.WaitFor(t, "the API to answer", 60*time.Second, func() bool { return answers() == nil })

	// A few descriptors more than the agent holds, so that a flood from
	// one address (within its 16 connections) exhausts them.
	fds, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "fd"))
	if err != nil {
		t.Fatal(err)
	}
	limit := uint64(len(fds) + 3)
	if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
		t.Fatal(err)
	}
	var flood []net.Conn
	for range 40 {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(apiPort)), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, c)
	}
	testkit.WaitFor(t, "accept to fail for want of descriptors", 30*time.Second, func() bool {
		return strings.Contains(agentLog(), "too many open files")
	})
	for _, c := range flood {
		c.Close()
	}
	testkit.WaitFor(t, "the API to answer after the flood", 60*time.Second, func() bool { return answers() == nil })
	if !strings.Contains(agentLog(), "node API: accepting again") {
		t.Errorf("the agent did not log that it accepts again:\n%s", agentLog())
	}
	t.Logf("limit %d descriptors (%d held at the start); the API answered again after a 40-connection flood", limit, len(fds))
}

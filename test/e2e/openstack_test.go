//go:build e2e

package e2e

// TestOpenStackLifecycle runs the real clusterctl binary against the fake
// OpenStack cloud (provider/openstack/openstacktest) served by this test
// process on loopback. A harness plays the part of the servers' cloud-init:
// for every server that turns ACTIVE it reads the user-data the fake Nova
// received, downloads the agent from the URL in it (the Swift temporary URL
// `up` published), checks its SHA-256, and starts the real clusterctl-agent
// with the agent.json from the user-data, bound to the server's fixed
// address. The fake's cluster network is 127.0.80.0/24, so every "server"
// is a loopback address and nothing leaves this machine. It needs no root.
//
// It checks what a user sees: `up` returns when both agents joined, status
// shows them alive at their fixed addresses, bad input exits 2 with a near
// match and creates nothing, `down` deletes the server (and its floating IP),
// `down --all` leaves nothing at the cloud, and no secret shows in output or
// state.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/guesttest"
	"github.com/clusterctl/clusterctl/internal/testkit"

	"github.com/clusterctl/clusterctl/provider/openstack/openstacktest"
)

const osClusterCIDR = "127.0.80.0/24"

type osEnv struct {
	t      *testing.T
	root   string
	bin    string
	home   string
	config string
	cloud  *openstacktest.Cloud
}

func osSetup(t *testing.T) *osEnv {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	e := &osEnv{t: t, root: root, bin: t.TempDir(), home: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, b := range []struct{ out, pkg string }{{"clusterctl", "./cmd/clusterctl"}, {"clusterctl-agent", "./cmd/clusterctl-agent"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(e.bin, b.out), b.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}

	e.cloud = openstacktest.New(false)
	t.Cleanup(e.cloud.Close)
	e.cloud.AddNetwork("cluster", osClusterCIDR)
	// The CLI runs on this machine's own network here, and dials each
	// node's floating IP first: keep them on loopback (nothing listens
	// there) rather than documentation addresses that would leave the
	// machine.
	e.cloud.SetPublicCIDR("127.0.81.0/24")

	// The password lives in secure.yaml, as it should.
	cdir := t.TempDir()
	clouds := fmt.Sprintf(`clouds:
  e2e:
    auth:
      auth_url: %s
      username: %s
      project_name: %s
      user_domain_name: %s
      project_domain_name: %s
    region_name: %s
`, e.cloud.AuthURL(), openstacktest.UserName, openstacktest.ProjectName, openstacktest.DomainName, openstacktest.DomainName, openstacktest.Region)
	secure := fmt.Sprintf("clouds:\n  e2e:\n    auth:\n      password: %q\n", openstacktest.Password)
	writeFile(t, filepath.Join(cdir, "clouds.yaml"), clouds)
	writeFile(t, filepath.Join(cdir, "secure.yaml"), secure)

	e.config = filepath.Join(t.TempDir(), "cluster.yaml")
	writeFile(t, e.config, fmt.Sprintf(`cluster: e2e
provider: openstack
gossip:
  port: %d
timeouts:
  create: 1m
  join: 1m
  leave: 10s
openstack:
  cloud: e2e
  clouds_file: %s
  flavor: m1.small
  image: debian-12-genericcloud-amd64
  network: cluster
  floating_ip_pool: public
  poll_interval: 100ms
  api_from: [127.0.0.1/32]  # listed, so nothing asks a real "what is my IP" endpoint
`, testkit.FreePort(t, "127.0.0.1"), filepath.Join(cdir, "clouds.yaml")))
	return e
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// cli runs clusterctl; it returns stdout, stderr and the exit code.
func (e *osEnv) cli(ctx context.Context, args ...string) (string, string, int) {
	cmd := exec.CommandContext(ctx, filepath.Join(e.bin, "clusterctl"), append([]string{"--config", e.config}, args...)...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OS_") { // only the config decides which cloud
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "CLUSTERCTL_HOME="+e.home, "CLUSTERCTL_AGENT="+filepath.Join(e.bin, "clusterctl-agent"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("clusterctl %v: %v", args, err)
	}
	e.t.Logf("clusterctl %s → exit %d\n%s", strings.Join(args, " "), code, errb.String())
	return out.String(), errb.String(), code
}

// ---- the harness that plays cloud-init -------------------------------------

type guestHarness struct {
	player
	dir string
}

// startHarness plays cloud's servers until the test ends.
func startHarness(ctx context.Context, t *testing.T, cloud *openstacktest.Cloud) *guestHarness {
	h := &guestHarness{player: newPlayer(t, "server"), dir: t.TempDir()}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.playOpenStack(ctx, cloud, h.boot)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		h.stopAll()
	})
	return h
}

// boot does what cloud-init and the install script would do on the server
// (guesttest.Unpack), then starts the agent on this machine at the server's fixed
// address: the cluster network is on loopback, so the harness, not the
// agent, picks the address from advertise_cidr, and the API listens there
// too (every played server shares this machine's loopback).
func (h *guestHarness) boot(s openstacktest.Server) (*exec.Cmd, bool) {
	dir := filepath.Join(h.dir, s.Name+"-"+s.ID[:8])
	inst, err := guesttest.Unpack(http.DefaultClient, s.UserData, dir, s.ID, func(cfg map[string]any) error {
		if cfg["advertise_cidr"] != osClusterCIDR {
			return fmt.Errorf("advertise_cidr = %v, want the cluster subnet %s", cfg["advertise_cidr"], osClusterCIDR)
		}
		delete(cfg, "advertise_cidr")
		cfg["advertise_addr"], cfg["bind_addr"] = s.FixedIP, s.FixedIP
		cfg["api"].(map[string]any)["bind_addr"] = s.FixedIP
		return nil
	})
	if err != nil {
		h.fail("%s: %v", s.Name, err)
		return nil, true
	}
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		h.fail("%s: %v", s.Name, err)
		return nil, true
	}
	cmd := exec.Command(inst.Agent, "-config", inst.Config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		h.fail("%s: start agent: %v", s.Name, err)
		return nil, true
	}
	return cmd, true
}

func (h *guestHarness) logs() string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(h.dir, "*", "agent.log"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		fmt.Fprintf(&b, "== %s\n%s\n", f, tailLines(string(data), 20))
	}
	return b.String()
}

func TestOpenStackLifecycle(t *testing.T) {
	e := osSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h := startHarness(ctx, t, e.cloud)
	secrets := []string{openstacktest.Password, "AdminPass-"}
	var outputs []string

	// Bad input: exit 2, a near match, nothing created at the cloud.
	bad := strings.Replace(readFile(t, e.config), "flavor: m1.small", "flavor: m1.smal", 1)
	good := readFile(t, e.config)
	writeFile(t, e.config, bad)
	out, errOut, code := e.cli(ctx, "up", "red")
	outputs = append(outputs, out, errOut)
	if code != 2 || !strings.Contains(errOut, `did you mean "m1.small"`) {
		t.Errorf("up with flavor m1.smal: exit %d, stderr %q; want exit 2 naming m1.small", code, errOut)
	}
	if n := len(e.cloud.Servers()); n != 0 {
		t.Fatalf("bad input created %d servers", n)
	}
	writeFile(t, e.config, good)

	// up returns when both agents joined.
	out, errOut, code = e.cli(ctx, "up", "red", "blue", "-o", "json")
	outputs = append(outputs, out, errOut)
	h.checkFailures()
	if code != 0 {
		t.Fatalf("up red blue: exit %d\n%s\nagents:\n%s", code, errOut, h.logs())
	}
	up := readUp(t, out)
	addr := map[string]string{}
	for _, n := range up.Nodes {
		if n.Phase != "joined" || !strings.HasPrefix(n.Address, "127.0.80.") || n.InstanceID == "" {
			t.Errorf("up: %+v, want joined at a fixed address in %s with an instance id", n, osClusterCIDR)
		}
		addr[n.Name] = n.Address
	}
	if len(addr) != 2 {
		t.Fatalf("up: %s", out)
	}
	if fips := e.cloud.FloatingIPs(); len(fips) != 2 {
		t.Errorf("floating IPs after up: %+v, want one per node", fips)
	}

	out, errOut, code = e.cli(ctx, "status", "-o", "json")
	outputs = append(outputs, out, errOut)
	var st struct {
		Nodes []struct {
			Name, Address, Gossip string
			ProviderState         string `json:"provider_state"`
		} `json:"nodes"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Nodes) != 2 {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	for _, n := range st.Nodes {
		if n.Gossip != "alive" || n.ProviderState != "running" || n.Address != addr[n.Name] {
			t.Errorf("status row %+v: want alive, running at %s", n, addr[n.Name])
		}
	}

	out, errOut, code = e.cli(ctx, "down", "blue")
	outputs = append(outputs, out, errOut)
	if code != 0 {
		t.Fatalf("down blue: exit %d", code)
	}
	servers := e.cloud.Servers()
	if len(servers) != 1 || servers[0].Name != "red" {
		t.Errorf("servers after down blue: %+v, want only red", servers)
	}
	if fips := e.cloud.FloatingIPs(); len(fips) != 1 {
		t.Errorf("floating IPs after down blue: %+v, want red's only", fips)
	}

	out, errOut, code = e.cli(ctx, "down", "--all")
	outputs = append(outputs, out, errOut)
	if code != 0 {
		t.Fatalf("down --all: exit %d", code)
	}
	if s := e.cloud.Servers(); len(s) != 0 {
		t.Errorf("servers after down --all: %+v", s)
	}
	if f := e.cloud.FloatingIPs(); len(f) != 0 {
		t.Errorf("floating IPs after down --all: %+v", f)
	}
	for _, g := range e.cloud.SecurityGroups() {
		if g.Name != "default" {
			t.Errorf("security group %q left after down --all", g.Name)
		}
	}
	if o := e.cloud.Objects(); len(o) != 0 {
		t.Errorf("Swift objects left after down --all: %v", o)
	}

	// No secret in anything clusterctl printed or kept.
	_ = filepath.Walk(e.home, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			data, _ := os.ReadFile(p)
			outputs = append(outputs, string(data))
		}
		return nil
	})
	for _, s := range outputs {
		for _, secret := range secrets {
			if strings.Contains(s, secret) {
				t.Errorf("a secret shows in clusterctl's output or state: %.200s", s)
			}
		}
	}
	h.checkFailures()
}

func readFile(t *testing.T, p string) string {
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

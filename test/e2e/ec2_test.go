//go:build e2e

package e2e

// TestEC2Agents is the EC2 provider's end-to-end test. The real clusterctl
// talks to moto's EC2/S3 emulator; a harness plays each booted instance:
// for every instance moto reports it reads the user-data back from moto,
// checks it with `cloud-init schema`, downloads the agent exactly as the
// user-data says (presigned URL from moto's S3, SHA-256 check), writes the
// agent config from the user-data's write_files and starts the real agent
// in a network namespace of its own that holds the instance's private
// address. So `clusterctl up --provider ec2 red blue` returns because those
// agents joined; status shows them alive; down --all leaves nothing.
//
// Everything runs inside namespaces the test makes: the test re-executes
// itself inside a "world" namespace holding moto (on its loopback), the
// CLI, and a bridge in the default VPC's range to which each instance's
// namespace is attached by a veth pair.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/guesttest"
	"github.com/clusterctl/clusterctl/internal/testkit"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/clusterctl/clusterctl/provider/ec2/mototest"
)

const (
	ec2InnerEnv  = "CLUSTERCTL_EC2_E2E_INNER"
	ec2Bridge    = "cctlec2br0"
	ec2Observer  = "172.31.255.254" // inside moto's default VPC 172.31.0.0/16
	ec2KeyID     = "AKIDCLUSTERCTLE2E001"
	ec2Secret    = "e2e-secret-not-to-be-printed-51c2"
	ec2Region    = "eu-west-1"
	ec2ClusterNm = "e2e-ec2"
)

func TestEC2Agents(t *testing.T) {
	if os.Getenv(ec2InnerEnv) == "" {
		ec2Outer(t)
		return
	}
	ec2Inner(t)
}

// ec2Outer builds the binaries, makes the world namespace and runs the test
// again inside it.
func ec2Outer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the EC2 e2e test needs root (network namespaces)")
	}
	mototest.Require(t)
	if _, err := exec.LookPath("cloud-init"); err != nil && testkit.ToolsRequired() {
		t.Fatal("cloud-init is missing (its schema check validates the user-data): apt-get install cloud-init")
	}
	root, _ := filepath.Abs("../..")
	bin := t.TempDir()
	for _, b := range []struct{ out, pkg string }{{"clusterctl", "./cmd/clusterctl"}, {"clusterctl-agent", "./cmd/clusterctl-agent"}} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, b.out), b.pkg)
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b.pkg, err, out)
		}
	}
	prefix := fmt.Sprintf("cctl-ec2-%d", os.Getpid())
	world := prefix + "-w"
	if out, err := exec.Command("ip", "netns", "add", world).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() {
		// Every namespace this test made (the world and one per instance).
		out, _ := exec.Command("ip", "netns", "list").Output()
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
				_ = exec.Command("ip", "netns", "delete", f[0]).Run()
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", world, os.Args[0], "-test.run", "^TestEC2Agents$", "-test.v")
	cmd.Env = append(os.Environ(), ec2InnerEnv+"=1", "CCTL_EC2_BIN="+bin, "CCTL_EC2_NS_PREFIX="+prefix)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Log(out.String())
	if err != nil {
		t.Fatalf("inside namespace %s: %v", world, err)
	}
}

type ec2World struct {
	player
	bin    string
	prefix string
	home   string
	config string
	moto   *mototest.Server
	ec2    *awsec2.Client
	s3     *s3.Client
	dir    string
	n      int
}

func ec2Sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v %s", args, err, out)
	}
}

func ec2Inner(t *testing.T) {
	w := &ec2World{player: newPlayer(t, "instance"), bin: os.Getenv("CCTL_EC2_BIN"), prefix: os.Getenv("CCTL_EC2_NS_PREFIX"), home: t.TempDir(), dir: t.TempDir()}
	ec2Sh(t, "ip", "link", "set", "lo", "up")
	ec2Sh(t, "ip", "link", "add", ec2Bridge, "type", "bridge")
	ec2Sh(t, "ip", "addr", "add", ec2Observer+"/16", "dev", ec2Bridge)
	ec2Sh(t, "ip", "link", "set", ec2Bridge, "up")

	mototest.IsolateAWSEnv(t)
	w.moto = mototest.Start(t)
	t.Cleanup(w.moto.Stop)
	var ami string
	w.ec2, w.s3, ami = motoClients(t, w.moto.URL, nil)
	w.config = filepath.Join(w.dir, "cluster.yaml")
	writeEC2Config(t, w.config, w.moto.URL, ami, "  api_from: [127.0.0.0/8]  # listed, so nothing asks a real \"what is my IP\" endpoint\n")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.playEC2(ctx, w.ec2, w.boot) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		w.stopAll()
	})

	// CLUSTERCTL_EC2_E2E_COUNT=N makes it `up --count N` (the benchmark of
	// docs/benchmarks.md); by default two named nodes.
	upArgs := []string{"up", "--provider", "ec2", "red", "blue", "-o", "json"}
	want := 2
	if c := os.Getenv("CLUSTERCTL_EC2_E2E_COUNT"); c != "" {
		fmt.Sscan(c, &want)
		upArgs = []string{"up", "--provider", "ec2", "--count", c, "-o", "json"}
	}
	start := time.Now()
	out, err := w.cli(10*time.Minute, upArgs...)
	elapsed := time.Since(start)
	w.checkFailures()
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	t.Logf("MEASURE up of %d node(s): %.1fs wall", want, elapsed.Seconds())
	up := readUp(t, out)
	if len(up.Nodes) != want {
		t.Fatalf("up made %d nodes, want %d: %s", len(up.Nodes), want, out)
	}
	for _, n := range up.Nodes {
		if n.Phase != "joined" || !strings.HasPrefix(n.InstanceID, "i-") || !strings.HasPrefix(n.Address, "172.31.") {
			t.Errorf("up: node %+v, want joined with an instance id and a private address", n)
		}
	}

	out, err = w.cli(time.Minute, "status", "-o", "json")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var st struct {
		Views []string `json:"views"`
		Nodes []struct {
			Name, Address, Phase, Gossip string
			ProviderState                string `json:"provider_state"`
			Stray                        bool
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status output: %v\n%s", err, out)
	}
	if len(st.Nodes) != want {
		t.Fatalf("status shows %d nodes: %s", len(st.Nodes), out)
	}
	// More than one: the first node's view lacked a node that up saw
	// joined, and status asked that node (read-your-writes).
	t.Logf("MEASURE status: gossip views of %v", st.Views)
	for _, n := range st.Nodes {
		if n.Gossip != "alive" || n.ProviderState != "running" || n.Stray {
			t.Errorf("status: %+v, want alive and running", n)
		}
	}

	if _, err := w.cli(3*time.Minute, "down", "--all"); err != nil {
		t.Fatalf("down --all: %v", err)
	}
	checkEC2NothingLeft(t, w.ec2, w.s3)
	w.checkFailures()
}

// cli runs clusterctl here (in the world namespace) with the test's AWS
// credentials in its environment. Neither output may show the secret.
func (w *ec2World) cli(d time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(w.bin, "clusterctl"), append([]string{"--config", w.config}, args...)...)
	cmd.Env = append(os.Environ(), "CLUSTERCTL_HOME="+w.home, "CLUSTERCTL_AGENT="+filepath.Join(w.bin, "clusterctl-agent"),
		"AWS_ACCESS_KEY_ID="+ec2KeyID, "AWS_SECRET_ACCESS_KEY="+ec2Secret)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	w.t.Logf("clusterctl %s\n%s%s", strings.Join(args, " "), out.String(), errb.String())
	if strings.Contains(out.String()+errb.String(), ec2Secret) {
		w.t.Errorf("clusterctl %v printed the secret key", args)
	}
	if err != nil {
		return out.String(), fmt.Errorf("%w: %s", err, errb.String())
	}
	// Nor may the state directory hold it.
	_ = filepath.Walk(w.home, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(ec2Secret)) {
				w.t.Errorf("%s holds the secret key", p)
			}
		}
		return nil
	})
	return out.String(), nil
}

// boot does what cloud-init and the instance would do with the user-data.
func (w *ec2World) boot(ctx context.Context, in types.Instance) {
	id := aws.ToString(in.InstanceId)
	w.mu.Lock()
	w.booted[id] = nil
	w.n++
	n := w.n
	w.mu.Unlock()
	dir := filepath.Join(w.dir, id)
	_ = os.MkdirAll(dir, 0o700)

	ud, err := ec2UserData(ctx, w.ec2, id)
	if err != nil {
		w.fail("%s: %v", id, err)
		return
	}
	udPath := filepath.Join(dir, "user-data")
	_ = os.WriteFile(udPath, ud, 0o600)
	if _, err := exec.LookPath("cloud-init"); err == nil {
		if out, err := exec.Command("cloud-init", "schema", "-c", udPath).CombinedOutput(); err != nil {
			w.fail("%s: cloud-init schema rejects the user-data: %v\n%s", id, err, out)
			return
		}
	} else {
		w.t.Logf("cloud-init not installed: schema check of %s skipped", id)
	}
	inst, err := guesttest.Unpack(http.DefaultClient, ud, dir, id, nil)
	if err != nil {
		w.fail("%s: %v", id, err)
		return
	}

	// The instance's network: its own namespace with its private address.
	ns := fmt.Sprintf("%s-i%d", w.prefix, n)
	veth := fmt.Sprintf("cctlv%d", n)
	addr := aws.ToString(in.PrivateIpAddress)
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"link", "set", veth, "master", ec2Bridge, "up"},
		{"-n", ns, "addr", "add", addr + "/16", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			w.fail("%s: ip %v: %v %s", id, args, err, out)
			return
		}
	}
	logf, _ := os.Create(filepath.Join(dir, "agent.log"))
	cmd := exec.Command("ip", "netns", "exec", ns, inst.Agent, "-config", inst.Config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		w.fail("%s: start agent: %v", id, err)
		return
	}
	w.mu.Lock()
	w.booted[id] = cmd
	w.mu.Unlock()
	w.t.Logf("instance %s booted: agent in namespace %s at %s", id, ns, addr)
}

// ec2JoinTimeout is timeouts.join: CLUSTERCTL_EC2_E2E_JOIN, else 90s.
func ec2JoinTimeout() string {
	if d := os.Getenv("CLUSTERCTL_EC2_E2E_JOIN"); d != "" {
		return d
	}
	return "90s"
}

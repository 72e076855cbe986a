//go:build e2e

// Package e2e boots a real cluster of QEMU VMs with the real clusterctl and
// clusterctl-agent binaries, inside a network namespace the test makes, and
// checks what a user would see: up returns when both agents joined, status
// shows them alive with the right addresses and hostnames, the guests'
// /etc/hosts map the nodes to their cluster addresses, down makes a node
// leave, and down --all leaves nothing behind. clusterctl ssh and cp reach
// the nodes with the host keys pinned when they were made, and refuse a node
// whose host key was replaced.
//
// Run with `make e2e` (needs root, qemu-system-x86, qemu-utils, mmdebstrap;
// `make deps` installs them). It takes several minutes under TCG.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	bridge   = "clusterbr0"
	hostCIDR = "192.168.56.1/24"
)

type env struct {
	t        *testing.T
	root     string // repository root
	bin      string // built binaries
	home     string // CLUSTERCTL_HOME
	ns       string
	config   string
	image    string
	cluster  string   // the config's cluster: name
	extraEnv []string // more environment for clusterctl (e.g. the fake VBoxManage)
	timeout  time.Duration
}

// setup is TestClusterLifecycle's environment: binaries, image, a
// namespace with bridge clusterbr0 and a qemu config.
func setup(t *testing.T) *env {
	e := newEnv(t, "e2e")
	e.netnsUp(fmt.Sprintf("cctl-e2e-%d", os.Getpid()), bridge, hostCIDR)

	e.config = filepath.Join(t.TempDir(), "cluster.yaml")
	cfg := fmt.Sprintf(`cluster: e2e
provider: qemu
timeouts:
  join: 12m
cloudinit:
  # Show, on the serial console, what the guest ended up with.
  extra: |
    runcmd:
      - [sh, -c, 'echo "E2E-HOSTNAME $(hostname)" > /dev/ttyS0; sed "s/^/E2E-HOSTS /" /etc/hosts > /dev/ttyS0']
      # The agent's unit as systemd loaded it: its exposure level.
      - [sh, -c, 'systemd-analyze security --no-pager clusterctl-agent.service 2>&1 | grep "Overall exposure level" | sed "s/^/E2E-SECURITY /" > /dev/ttyS0']
qemu:
  image: %s/disk.raw
  image_format: raw
  kernel: %s/vmlinuz
  initrd: %s/initrd.img
  accel: tcg
  bridge: %s
  cidr: 192.168.56.0/24
  memory: 1024
`, e.image, e.image, e.image, bridge)
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// newEnv checks root and the tools, builds clusterctl and clusterctl-agent
// and builds (or reuses) the Debian 12 test image. cluster is the name the
// test's config will give its cluster.
func newEnv(t *testing.T, cluster string) *env {
	if os.Geteuid() != 0 {
		t.Fatal("the e2e test needs root (network namespaces, taps, mmdebstrap); run it with sudo or as root")
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "mmdebstrap", "ip", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: run `make deps` (it installs qemu-system-x86 qemu-utils mmdebstrap iproute2 e2fsprogs)", tool)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, root: root, bin: t.TempDir(), home: t.TempDir(), cluster: cluster, timeout: 20 * time.Minute}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	e.run(ctx, nil, "go", "build", "-o", filepath.Join(e.bin, "clusterctl"), "./cmd/clusterctl")
	e.run(ctx, []string{"CGO_ENABLED=0"}, "go", "build", "-o", filepath.Join(e.bin, "clusterctl-agent"), "./cmd/clusterctl-agent")
	e.image = strings.TrimSpace(e.run(ctx, nil, "sh", filepath.Join(root, "test/e2e/build-image.sh")))
	t.Logf("image: %s", e.image)
	return e
}

// netnsUp makes network namespace ns with bridge br carrying addr
// (netns.sh). At cleanup it runs `down --all` (whatever the test left) and
// deletes the namespace, and with it every tap and bridge in it.
func (e *env) netnsUp(ns, br, addr string) {
	e.t.Helper()
	e.ns = ns
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		// Whatever the test left, take it down, then the namespace.
		if e.config != "" {
			_, _ = e.cli(ctx, "down", "--all")
		}
		_ = exec.Command("sh", filepath.Join(e.root, "test/e2e/netns.sh"), "down", ns).Run()
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e.run(ctx, nil, "sh", filepath.Join(e.root, "test/e2e/netns.sh"), "up", ns, br, addr)
}

// run runs a command in the repository root and returns its stdout; it
// fails the test on a non-zero exit.
func (e *env) run(ctx context.Context, envv []string, name string, args ...string) string {
	e.t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = e.root
	cmd.Env = append(os.Environ(), envv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("%s %v: %v\n%s", name, args, err, errb.String())
	}
	return out.String()
}

// command is clusterctl with args, to be run inside the test's network
// namespace with the test's CLUSTERCTL_HOME, agent binary and extraEnv.
func (e *env) command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"netns", "exec", e.ns, filepath.Join(e.bin, "clusterctl"), "--config", e.config}, args...)
	cmd := exec.CommandContext(ctx, "ip", full...)
	cmd.Env = append(os.Environ(), "CLUSTERCTL_HOME="+e.home, "CLUSTERCTL_AGENT="+filepath.Join(e.bin, "clusterctl-agent"))
	cmd.Env = append(cmd.Env, e.extraEnv...)
	return cmd
}

// cli runs clusterctl inside the test's network namespace. It returns
// stdout and the error (with stderr in it) instead of failing.
func (e *env) cli(ctx context.Context, args ...string) (string, error) {
	cmd := e.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	e.t.Logf("clusterctl %s\n%s", strings.Join(args, " "), errb.String())
	if err != nil {
		return out.String(), fmt.Errorf("clusterctl %v: %w\nstdout:\n%s\nstderr:\n%s", args, err, out.String(), errb.String())
	}
	return out.String(), nil
}

type upDoc struct {
	Schema string `json:"schema"`
	Nodes  []struct {
		Name, Address, Phase, Error string
		InstanceID                  string `json:"instance_id"`
	} `json:"nodes"`
}

type statusDoc struct {
	Schema string `json:"schema"`
	Nodes  []struct {
		Name, Address, Phase, Gossip, Hostname string
		ProviderState                          string `json:"provider_state"`
	} `json:"nodes"`
}

func (e *env) status(ctx context.Context) statusDoc {
	e.t.Helper()
	out, err := e.cli(ctx, "status", "-o", "json")
	if err != nil {
		e.t.Fatal(err)
	}
	var doc statusDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		e.t.Fatalf("status -o json is not JSON: %v\n%s", err, out)
	}
	return doc
}

func (e *env) console(name string) string {
	data, _ := os.ReadFile(filepath.Join(e.home, "clusters", e.cluster, "nodes", name, "console.log"))
	return string(data)
}

func TestClusterLifecycle(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	start := time.Now()
	out, err := e.cli(ctx, "up", "red", "blue", "-o", "json")
	if err != nil {
		for _, n := range []string{"red", "blue"} {
			t.Logf("console of %s:\n%s", n, tailLines(e.console(n), 60))
		}
		t.Fatal(err)
	}
	t.Logf("up red blue took %s", time.Since(start).Round(time.Second))
	var up upDoc
	if err := json.Unmarshal([]byte(out), &up); err != nil {
		t.Fatalf("up -o json: %v\n%s", err, out)
	}
	if up.Schema != "clusterctl/v1" || len(up.Nodes) != 2 {
		t.Fatalf("up result: %+v", up)
	}
	addr := map[string]string{}
	for _, n := range up.Nodes {
		if n.Phase != "joined" || !strings.HasPrefix(n.Address, "192.168.56.") {
			t.Errorf("up: node %+v, want joined with an address in 192.168.56.0/24", n)
		}
		addr[n.Name] = n.Address
	}

	st := e.status(ctx)
	if len(st.Nodes) != 2 {
		t.Fatalf("status: %+v", st.Nodes)
	}
	for _, n := range st.Nodes {
		if n.Gossip != "alive" || n.ProviderState != "running" || n.Address != addr[n.Name] || n.Hostname != n.Name {
			t.Errorf("status row %+v: want alive, running, address %s, hostname %s (as reported by the node's agent)", n, addr[n.Name], n.Name)
		}
	}

	// What the guests have: hostname and /etc/hosts, as printed on their
	// consoles by the extra runcmd.
	for _, name := range []string{"red", "blue"} {
		con := e.console(name)
		if !strings.Contains(con, "E2E-HOSTNAME "+name) {
			t.Errorf("%s's console does not show hostname %q:\n%s", name, name, tailLines(con, 40))
		}
		for peer, a := range addr {
			re := regexp.MustCompile(`E2E-HOSTS ` + regexp.QuoteMeta(a) + `\s.*\b` + peer + `\b`)
			if !re.MatchString(con) {
				t.Errorf("%s's /etc/hosts does not map %s to %s:\n%s", name, peer, a, grepLines(con, "E2E-HOSTS"))
			}
		}
		if regexp.MustCompile(`E2E-HOSTS 127\.0\.1\.1\s.*\b` + name + `\b`).MatchString(con) {
			t.Errorf("%s's /etc/hosts maps its own name to 127.0.1.1", name)
		}
	}

	for _, name := range []string{"red", "blue"} {
		e.checkLeastPrivilege(ctx, name)
		e.checkEnrolment(ctx, name, addr[name])
	}
	e.checkDayTwo(ctx)

	// The example application (examples/partitions) divides 12 partitions
	// between the nodes from members.json alone.
	parts := e.partitions()
	for _, name := range []string{"red", "blue"} {
		e.startPartitions(ctx, parts, name)
	}
	e.waitOwned(ctx, map[string]int{"red": 6, "blue": 6})

	e.checkSSH(ctx) // replaces blue's host key: no ssh to blue after this

	if _, err := e.cli(ctx, "down", "blue"); err != nil {
		t.Fatal(err)
	}
	took := e.waitOwned(ctx, map[string]int{"red": 12})
	t.Logf("REBALANCE: red owned all 12 partitions %s after `down blue` returned (at most; each look is an ssh round)", took.Round(time.Second))
	st = e.status(ctx)
	if len(st.Nodes) != 1 || st.Nodes[0].Name != "red" || st.Nodes[0].Gossip != "alive" {
		t.Errorf("status after down blue: %+v, want only red, alive", st.Nodes)
	}
	// red's agent, sandboxed, took blue out of red's /etc/hosts (through
	// the link to the file in the directory it owns).
	// The rewrite follows blue's leave event: wait for it (at most 60 s).
	wait := fmt.Sprintf("for i in $(seq 60); do grep -q '^%s ' /etc/hosts || break; sleep 1; done", addr["blue"])
	if out, err := e.cli(ctx, "ssh", "red", "--", wait+"; cat /etc/hosts; sudo journalctl -u clusterctl-agent --no-pager -o cat | grep 'update hosts file' || true"); err != nil {
		t.Error(err)
	} else if strings.Contains(out, addr["blue"]+" ") || strings.Contains(out, "update hosts file") {
		t.Errorf("red's /etc/hosts after down blue still lists blue, or the agent could not write it:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(e.home, "clusters", "e2e", "nodes", "blue")); !os.IsNotExist(err) {
		t.Errorf("blue's files are still there after down blue")
	}

	// blue again: a new node of the same name; 6 and 6 again.
	if _, err := e.cli(ctx, "up", "blue"); err != nil {
		t.Fatal(err)
	}
	e.startPartitions(ctx, parts, "blue")
	took = e.waitOwned(ctx, map[string]int{"red": 6, "blue": 6})
	t.Logf("REBALANCE: red and blue owned 6 partitions each %s after the new blue's application started", took.Round(time.Second))

	if _, err := e.cli(ctx, "down", "--all"); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("pgrep", "-f", e.home).Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("processes still running after down --all: %s", out)
	}
	if _, err := os.Stat(filepath.Join(e.home, "clusters", "e2e")); !os.IsNotExist(err) {
		entries, _ := filepath.Glob(filepath.Join(e.home, "clusters", "e2e", "*"))
		t.Errorf("files left after down --all: %v", entries)
	}
	if out, _ := exec.Command("ip", "-n", e.ns, "-o", "link", "show", "type", "tun").Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("tap devices left after down --all:\n%s", out)
	}
}

// checkSSH logs in to the nodes with clusterctl ssh and cp (host keys
// pinned at creation), then replaces blue's host key on blue itself and
// checks that clusterctl refuses blue from then on.
func (e *env) checkSSH(ctx context.Context) {
	t := e.t
	t.Helper()
	out, err := e.cli(ctx, "ssh", "red", "--", "hostname")
	if err != nil || out != "red\n" {
		t.Errorf("ssh red -- hostname printed %q (%v), want \"red\\n\"", out, err)
	}
	out, err = e.cli(ctx, "ssh", "--all", "--", "hostname")
	if err != nil || !strings.Contains(out, "red: red\n") || !strings.Contains(out, "blue: blue\n") {
		t.Errorf("ssh --all -- hostname printed %q (%v)", out, err)
	}
	if _, err := e.cli(ctx, "ssh", "red", "--", "exit", "7"); err == nil || !strings.Contains(err.Error(), "exit status 7") {
		t.Errorf("ssh red -- exit 7: %v, want exit status 7", err)
	}

	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	if err := os.WriteFile(in, []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli(ctx, "cp", in, "red:/tmp/in.txt"); err != nil {
		t.Error(err)
	}
	if out, err := e.cli(ctx, "ssh", "red", "--", "cat", "/tmp/in.txt"); err != nil || out != "from the host\n" {
		t.Errorf("the file copied to red holds %q (%v)", out, err)
	}
	back := filepath.Join(dir, "hostname")
	if _, err := e.cli(ctx, "cp", "red:/etc/hostname", back); err != nil {
		t.Error(err)
	}
	if data, _ := os.ReadFile(back); string(data) != "red\n" {
		t.Errorf("red's /etc/hostname copied out holds %q", data)
	}

	// blue gets a new host key on blue itself; clusterctl must refuse it.
	regen := `sudo sh -c 'rm -f /etc/ssh/ssh_host_*; ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key && systemctl restart ssh'`
	if _, err := e.cli(ctx, "ssh", "blue", "--", regen); err != nil {
		t.Fatalf("replace blue's host key: %v", err)
	}
	cmd := e.command(ctx, "ssh", "blue", "--", "hostname")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := -1
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 255 || stdout.Len() != 0 {
		t.Errorf("ssh to blue with a changed host key: exit %d, stdout %q, want 255 and nothing", code, stdout.String())
	}
	for _, want := range []string{"Host key verification failed.", `node "blue" did not present the host key clusterctl made for it`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr.String())
		}
	}
}

// maxExposure is the highest `systemd-analyze security` exposure level the
// agent's unit may have.
const maxExposure = 2.0

// exposureLine matches the E2E-SECURITY line the extra runcmd prints.
var exposureLine = regexp.MustCompile(`E2E-SECURITY .*Overall exposure level for clusterctl-agent\.service: ([0-9]+\.[0-9]+)`)

// checkLeastPrivilege checks on node name that the agent runs as its own
// user, with no capability, no new privileges and a seccomp filter; that
// its state is 0700/0600 and the agent's; that its config stays root's and
// 0600; that /etc/hosts is a link to the file the agent owns, which every
// user can read; and that systemd-analyze security scored the unit at most
// maxExposure (the line on the console).
func (e *env) checkLeastPrivilege(ctx context.Context, name string) {
	t := e.t
	t.Helper()
	m := exposureLine.FindStringSubmatch(e.console(name))
	if m == nil {
		t.Errorf("%s's console shows no systemd-analyze security result:\n%s", name, grepLines(e.console(name), "E2E-"))
	} else {
		score, _ := strconv.ParseFloat(m[1], 64)
		t.Logf("%s: systemd-analyze security clusterctl-agent: exposure %.1f", name, score)
		if score > maxExposure {
			t.Errorf("%s: the agent's unit has exposure %.1f, want %.1f or less", name, score, maxExposure)
		}
	}

	script := `pid=$(systemctl show -p MainPID --value clusterctl-agent)
stat -c 'PROC %U %G' /proc/$pid
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/$pid/status | sed 's/^/STATUS /'
find /var/lib/clusterctl-agent -printf 'STATE %y %m %u %p\n'
stat -c 'FILE %a %U %G %n' /etc/clusterctl/agent.json /var/lib/clusterctl-agent-hosts /var/lib/clusterctl-agent-hosts/hosts
stat -L -c 'FILE %a %U %G %n' /run/cloud-init/instance-data.json
echo "LINK $(readlink /etc/hosts)"
echo "AGENT-READS-CONFIG $(setpriv --reuid=clusterctl-agent --regid=clusterctl --clear-groups cat /etc/clusterctl/agent.json >/dev/null 2>&1 && echo yes || echo no)"`
	out, err := e.cli(ctx, "ssh", name, "--", "sudo sh -c "+shellQuote(script)+"; echo RESOLVE $(getent hosts "+name+")")
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	t.Logf("%s: the agent's privileges and files:\n%s", name, out)
	has := func(line string) {
		t.Helper()
		if !regexp.MustCompile(`(?m)^` + line + `$`).MatchString(out) {
			t.Errorf("%s: no line matching %q in:\n%s", name, line, out)
		}
	}
	has(`PROC clusterctl-agent clusterctl`)
	for _, c := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		has(`STATUS ` + c + `:\s+0{16}`)
	}
	has(`STATUS NoNewPrivs:\s+1`)
	has(`STATUS Seccomp:\s+2`)
	has(`STATE d 700 clusterctl-agent /var/lib/clusterctl-agent`)
	states := 0
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) != 5 || f[0] != "STATE" {
			continue
		}
		states++
		if want := map[string]string{"d": "700", "f": "600"}[f[1]]; f[2] != want || f[3] != "clusterctl-agent" {
			t.Errorf("%s: %s is type %s, mode %s, owner %s; want mode %s, owner clusterctl-agent", name, f[4], f[1], f[2], f[3], want)
		}
	}
	if states < 2 {
		t.Errorf("%s: the agent's state directory holds nothing:\n%s", name, out)
	}
	has(`FILE 600 root root /etc/clusterctl/agent.json`)
	has(`AGENT-READS-CONFIG no`)
	has(`FILE 755 clusterctl-agent clusterctl /var/lib/clusterctl-agent-hosts`)
	has(`FILE 644 clusterctl-agent clusterctl /var/lib/clusterctl-agent-hosts/hosts`)
	has(`FILE 644 root root /run/cloud-init/instance-data.json`)
	has(`LINK /var/lib/clusterctl-agent-hosts/hosts`)
	// The login user (not root) resolves the node's name through the link,
	// to one line: the agent does not repeat the node's own line.
	has(`RESOLVE 192\.168\.56\.[0-9]+ ` + name + `\.\S+ ` + name)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/clusterctl/clusterctl/internal/guesttest"
	"github.com/clusterctl/clusterctl/internal/sshkeys"
	"github.com/clusterctl/clusterctl/internal/sshtest"
	"github.com/clusterctl/clusterctl/internal/testkit"
	"github.com/clusterctl/clusterctl/provider"
)

// guest plays a booted node for the fake provider: the node's agent from
// its user-data (guesttest.Boot), and an sshd with the node's host key and
// the user-data's authorized keys, on the node's address.
type guest struct {
	t       *testing.T
	port    int
	mu      sync.Mutex
	servers map[string]*sshtest.Server
	stops   []func()
}

func (g *guest) boot(_ context.Context, id string, spec provider.NodeSpec) error {
	n, err := guesttest.Boot(spec.Seed.UserData, guesttest.Machine{ID: id, Name: spec.Name, Addr: spec.Address.String(), Dir: g.t.TempDir(), StateDir: filepath.Join(g.t.TempDir(), "state")})
	if err != nil {
		return err
	}
	s := sshtest.Start(g.t, spec.Address.String(), g.port, n.HostKey.Private, n.Authorized)
	g.mu.Lock()
	g.servers[spec.Name] = s
	g.stops = append(g.stops, n.Stop)
	g.mu.Unlock()
	return nil
}

func (g *guest) stopAll() {
	for _, stop := range g.stops {
		stop()
	}
}

func sshCluster(t *testing.T, cluster string) (home, config string, g *guest) {
	t.Helper()
	sshtest.SSHD(t)
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	g = &guest{t: t, port: testkit.FreePort(t, "127.77.0.10"), servers: map[string]*sshtest.Server{}}
	shared.OnCreate = g.boot
	t.Cleanup(func() { shared.OnCreate = nil; g.stopAll() })
	home, config = setup(t, fmt.Sprintf("cluster: %s\nssh: {user: %s, port: %d}\n", cluster, u.Username, g.port))
	return home, config, g
}

func TestSSHCpLogs(t *testing.T) {
	home, config, g := sshCluster(t, "sshflow")
	stdin = strings.NewReader("")
	if r := cli(t, home, config, "up", "red", "blue"); r.code != 0 {
		t.Fatalf("up: %+v", r)
	}

	r := cli(t, home, config, "ssh", "red", "--", "echo", "hello from red")
	if r.code != 0 || r.stdout != "hello from red\n" {
		t.Errorf("ssh red -- echo: %+v", r)
	}
	// Flags after the name belong to the remote command; its status passes through.
	if r := cli(t, home, config, "ssh", "red", "ls", "-d", "/", ";", "exit", "7"); r.code != 7 || r.stdout != "/\n" {
		t.Errorf("ssh red ls -d / ; exit 7: %+v", r)
	}

	r = cli(t, home, config, "ssh", "--all", "--", "echo", "up;", "exit", "3")
	if r.code != 3 {
		t.Errorf("ssh --all: exit %d, want 3: %+v", r.code, r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !contains(lines, "red: up") || !contains(lines, "blue: up") {
		t.Errorf("ssh --all output %q", r.stdout)
	}

	// cp in and out (the "node" is this machine, so its paths are ours).
	dir := t.TempDir()
	src := filepath.Join(dir, "in.txt")
	os.WriteFile(src, []byte("payload\n"), 0o644)
	if r := cli(t, home, config, "cp", src, "red:"+filepath.Join(dir, "on-red.txt")); r.code != 0 {
		t.Fatalf("cp in: %+v", r)
	}
	if r := cli(t, home, config, "cp", "red:"+filepath.Join(dir, "on-red.txt"), filepath.Join(dir, "back.txt")); r.code != 0 {
		t.Fatalf("cp out: %+v", r)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "back.txt")); string(data) != "payload\n" {
		t.Errorf("round trip gave %q", data)
	}
	os.MkdirAll(filepath.Join(dir, "tree", "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "tree", "sub", "f"), []byte("deep"), 0o644)
	if r := cli(t, home, config, "cp", "-r", filepath.Join(dir, "tree"), "blue:"+filepath.Join(dir, "tree2")); r.code != 0 {
		t.Fatalf("cp -r: %+v", r)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "tree2", "sub", "f")); string(data) != "deep" {
		t.Errorf("cp -r gave %q", data)
	}

	if r := cli(t, home, config, "logs", "red"); r.code != 0 || !strings.Contains(r.stdout, "fake console of red") {
		t.Errorf("logs red: %+v", r)
	}

	// red's machine is replaced by one with another host key: refused.
	g.servers["red"].Stop()
	other, _ := sshkeys.Generate("")
	kh, _ := os.ReadFile(filepath.Join(home, "clusters", "sshflow", "ssh", "id_ed25519.pub"))
	sshtest.Start(t, "127.77.0.10", g.port, other.Private, []string{strings.TrimSpace(string(kh))})
	r = cli(t, home, config, "ssh", "red", "--", "echo", "must not run")
	if r.code != 255 || r.stdout != "" {
		t.Errorf("ssh to a changed host key: %+v", r)
	}
	for _, want := range []string{"Host key verification failed.", `node "red" did not present the host key clusterctl made for it`, "hint: clusterctl pinned"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
		}
	}
	if r := cli(t, home, config, "cp", src, "red:/tmp/x"); r.code == 0 || !strings.Contains(r.stderr, "did not present the host key") {
		t.Errorf("cp to a changed host key: %+v", r)
	}

	if r := cli(t, home, config, "down", "--all"); r.code != 0 {
		t.Errorf("down --all: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(home, "clusters", "sshflow")); !os.IsNotExist(err) {
		t.Errorf("down --all left the keys: %v", err)
	}
}

func TestSSHBadInput(t *testing.T) {
	home, config, _ := sshCluster(t, "sshbad")
	stdin = strings.NewReader("")
	if r := cli(t, home, config, "up", "red"); r.code != 0 {
		t.Fatalf("up: %+v", r)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"ssh"}, "name the node"},
		{[]string{"ssh", "ghost"}, `no node "ghost"`},
		{[]string{"ssh", "--all"}, "--all needs a command"},
		{[]string{"ssh", "--all", "red", "--", "true"}, "--all was given with a node name"},
		{[]string{"cp", "a", "b"}, `neither "a" nor "b" names a node`},
		{[]string{"cp", "red:a", "red:b"}, "both"},
		{[]string{"cp", "a"}, "accepts 2 arg"},
		{[]string{"cp", "./red:a", "ghost:/tmp"}, `no node "ghost"`},
		{[]string{"logs", "ghost"}, `no node "ghost"`},
		{[]string{"logs", "--agent", "ghost"}, `no node "ghost"`},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := cli(t, home, config, tc.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "fix:") {
				t.Errorf("exit %d, want 2 with %q and a fix:\n%s", r.code, tc.want, r.stderr)
			}
		})
	}
	t.Run("no ssh on this machine", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		r := cli(t, home, config, "ssh", "red", "--", "true")
		if r.code != 2 || !strings.Contains(r.stderr, "OpenSSH client is not installed") || !strings.Contains(r.stderr, "apt-get install openssh-client") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("ssh: false", func(t *testing.T) {
		off := filepath.Join(t.TempDir(), "off.yaml")
		data, _ := os.ReadFile(config)
		os.WriteFile(off, []byte(strings.Replace(string(data), "ssh: {", "ssh: {enabled: false, ", 1)), 0o644)
		r := cli(t, home, off, "ssh", "red")
		if r.code != 2 || !strings.Contains(r.stderr, "ssh is turned off") || !strings.Contains(r.stderr, "fix: remove `ssh: false`") {
			t.Errorf("%+v", r)
		}
	})
	cli(t, home, config, "down", "--all")
}

func TestCpSides(t *testing.T) {
	node, src, dst, err := cpSides("./a:b", "red:/tmp/x")
	if err != nil || node != "red" || src.remote || src.path != "./a:b" || !dst.remote || dst.path != "/tmp/x" {
		t.Errorf("cpSides: %q %+v %+v %v", node, src, dst, err)
	}
	if _, _, _, err := cpSides("/etc/x:y", "/tmp"); err == nil {
		t.Error("a local path with ':' after '/' was taken for a node")
	}
}

func TestAgentJournalCommand(t *testing.T) {
	c := agentJournalCommand(true)
	if !strings.Contains(c, "journalctl --no-pager -u clusterctl-agent.service -f") || !strings.Contains(c, "sudo -n") {
		t.Errorf("%q", c)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

package sshclient

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/sshkeys"
	"github.com/clusterctl/clusterctl/internal/sshtest"
	"github.com/clusterctl/clusterctl/internal/testkit"
)

// node is an sshd on loopback with a host key made like clusterctl makes
// it, and a Target that reaches it with a fresh user key.
type node struct {
	t      Target
	server *sshtest.Server
	host   sshkeys.Pair
}

func client(t *testing.T) Client {
	t.Helper()
	c, err := Find()
	if err != nil {
		testkit.Missing(t, "%v", err)
	}
	return c
}

func startNodes(t *testing.T, names ...string) []node {
	t.Helper()
	dir := t.TempDir()
	user, err := sshkeys.Generate("test")
	if err != nil {
		t.Fatal(err)
	}
	identity := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(identity, user.Private, 0o600); err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(dir, "known_hosts")
	var nodes []node
	var hosts []sshkeys.KnownHost
	for i, name := range names {
		host, err := sshkeys.Generate("")
		if err != nil {
			t.Fatal(err)
		}
		addr := "127.78.0." + string(rune('1'+i))
		port := testkit.FreePort(t, addr)
		s := sshtest.Start(t, addr, port, host.Private, []string{user.Public})
		alias := sshkeys.HostKeyAlias("test", name)
		hosts = append(hosts, sshkeys.KnownHost{Alias: alias, Key: host.Public})
		nodes = append(nodes, node{
			t:      Target{Name: name, User: s.User, Address: addr, Port: port, Alias: alias, Identity: identity, KnownHosts: kh},
			server: s, host: host,
		})
	}
	data, err := sshkeys.KnownHosts(hosts)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kh, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return nodes
}

func TestRunPassesOutputAndExitStatus(t *testing.T) {
	c := client(t)
	n := startNodes(t, "red")[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code, err := c.Run(ctx, n.t, []string{"echo", "hello; exit 7"}, IO{Stdout: &out, Stderr: &errb})
	if err != nil || code != 7 || out.String() != "hello\n" {
		t.Fatalf("code %d, err %v, stdout %q, stderr %q", code, err, out.String(), errb.String())
	}
	// Standard input reaches the remote command.
	out.Reset()
	code, err = c.Run(ctx, n.t, []string{"cat"}, IO{Stdin: strings.NewReader("from stdin\n"), Stdout: &out, Stderr: &errb})
	if err != nil || code != 0 || out.String() != "from stdin\n" {
		t.Fatalf("cat: code %d, err %v, stdout %q, stderr %q", code, err, out.String(), errb.String())
	}
}

// A node that presents another host key than the one pinned for it is
// refused: ssh says so (exit 255), and Run explains it.
func TestRunRefusesAnotherHostKey(t *testing.T) {
	c := client(t)
	n := startNodes(t, "red")[0]
	n.server.Stop()
	impostor, _ := sshkeys.Generate("")
	user, _ := os.ReadFile(n.t.Identity)
	pair, _ := sshkeys.FromPrivate(user)
	sshtest.Start(t, n.t.Address, n.t.Port, impostor.Private, []string{pair.Public})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code, err := c.Run(ctx, n.t, []string{"echo", "must not run"}, IO{Stdout: &out, Stderr: &errb})
	var hk *HostKeyError
	if code != 255 || !errors.As(err, &hk) || out.Len() != 0 {
		t.Fatalf("code %d, err %v, stdout %q; want 255 and a HostKeyError", code, err, out.String())
	}
	if !strings.Contains(errb.String(), "Host key verification failed.") || !strings.Contains(errb.String(), "REMOTE HOST IDENTIFICATION HAS CHANGED") {
		t.Errorf("ssh's own refusal is not on stderr:\n%s", errb.String())
	}
	if !strings.Contains(hk.Error(), `node "red" did not present the host key clusterctl made`) {
		t.Errorf("explanation: %v", hk)
	}
	// scp is refused the same way.
	code, err = c.Copy(ctx, n.t, false, n.t.Remote("/etc/hostname"), filepath.Join(t.TempDir(), "x"), IO{Stderr: &errb})
	if code == 0 || !errors.As(err, &hk) {
		t.Errorf("scp to the impostor: code %d, err %v", code, err)
	}
}

// Any other failure of ssh itself is 255 without a host-key explanation.
func TestRunConnectionRefused(t *testing.T) {
	c := client(t)
	n := startNodes(t, "red")[0]
	n.server.Stop()
	var errb bytes.Buffer
	code, err := c.Run(context.Background(), n.t, []string{"true"}, IO{Stderr: &errb})
	if code != 255 || err != nil || !strings.Contains(errb.String(), "Connection refused") {
		t.Errorf("code %d, err %v, stderr %q", code, err, errb.String())
	}
}

func TestCopyInAndOut(t *testing.T) {
	c := client(t)
	n := startNodes(t, "red")[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	local := t.TempDir()
	remote := t.TempDir() // the "node" is this machine, so its paths are ours
	src := filepath.Join(local, "in.txt")
	if err := os.WriteFile(src, []byte("payload\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	if code, err := c.Copy(ctx, n.t, false, src, n.t.Remote(filepath.Join(remote, "copied.txt")), IO{Stderr: &errb}); code != 0 || err != nil {
		t.Fatalf("copy in: %d %v %s", code, err, errb.String())
	}
	if data, _ := os.ReadFile(filepath.Join(remote, "copied.txt")); string(data) != "payload\n" {
		t.Fatalf("copied file holds %q", data)
	}
	// A directory needs -r.
	tree := filepath.Join(remote, "tree")
	os.MkdirAll(filepath.Join(tree, "sub"), 0o755)
	os.WriteFile(filepath.Join(tree, "sub", "f"), []byte("deep"), 0o644)
	back := filepath.Join(local, "back")
	if code, _ := c.Copy(ctx, n.t, false, n.t.Remote(tree), back, IO{Stderr: &errb}); code == 0 {
		t.Error("copying a directory without -r succeeded")
	}
	if code, err := c.Copy(ctx, n.t, true, n.t.Remote(tree), back, IO{Stderr: &errb}); code != 0 || err != nil {
		t.Fatalf("copy out -r: %d %v %s", code, err, errb.String())
	}
	if data, _ := os.ReadFile(filepath.Join(back, "sub", "f")); string(data) != "deep" {
		t.Errorf("copied tree holds %q", data)
	}
}

func TestRunAllPrefixesAndWorstStatus(t *testing.T) {
	c := client(t)
	nodes := startNodes(t, "red", "blue", "green")
	var targets []Target
	for _, n := range nodes {
		targets = append(targets, n.t)
	}
	nodes[2].server.Stop() // green is down: ssh itself fails with 255
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := []string{`for i in 1 2 3; do echo line $i; done; echo oops >&2; [ "$(id -u)" = "$(id -u)" ] && printf partial; exit 3`}
	results := c.RunAll(ctx, targets, cmd, 2, &out, &errb)
	if w := Worst(results); w != 255 {
		t.Errorf("worst status %d, want 255 (green unreachable); results %+v", w, results)
	}
	if results[0].Code != 3 || results[1].Code != 3 || results[2].Code != 255 {
		t.Errorf("results %+v", results)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	count := map[string]int{}
	for _, l := range lines {
		name, rest, ok := strings.Cut(l, ": ")
		if !ok || (name != "red" && name != "blue") {
			t.Errorf("stdout line without a node prefix: %q", l)
		}
		if rest != "line 1" && rest != "line 2" && rest != "line 3" && rest != "partial" {
			t.Errorf("mixed or broken line %q", l)
		}
		count[name]++
	}
	if count["red"] != 4 || count["blue"] != 4 {
		t.Errorf("lines per node %v, want 4 each:\n%s", count, out.String())
	}
	for _, want := range []string{"red: oops\n", "blue: oops\n", "green: "} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errb.String())
		}
	}
	if Worst(results[:2]) != 3 || Worst(nil) != 0 {
		t.Error("Worst")
	}
}

func TestPrefixWriterKeepsLinesWhole(t *testing.T) {
	var mu sync.Mutex
	var out bytes.Buffer
	a := &PrefixWriter{W: &out, Prefix: "a: ", Mu: &mu}
	b := &PrefixWriter{W: &out, Prefix: "b: ", Mu: &mu}
	a.Write([]byte("one "))
	b.Write([]byte("x\ny"))
	a.Write([]byte("two\nthree"))
	a.Flush()
	b.Flush()
	want := "b: x\na: one two\na: three\nb: y\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestArgsEndOptionsBeforeAddress(t *testing.T) {
	tg := Target{Name: "red", User: "debian", Address: "fd00::5", Alias: "red.demo.clusterctl", Identity: "/k", KnownHosts: "/kh"}
	args := SSHArgs(tg, []string{"-v", "hostname"}, true)
	i := indexOf(args, "--")
	if i < 0 || args[i+1] != "fd00::5" || args[i+2] != "-v" || indexOf(args, "-n") > i {
		t.Errorf("ssh args %q", args)
	}
	for _, want := range []string{"StrictHostKeyChecking=yes", "HostKeyAlias=red.demo.clusterctl", "UserKnownHostsFile=/kh", "IdentitiesOnly=yes", "IdentityFile=/k", "User=debian", "Port=22"} {
		if indexOf(args, want) < 0 {
			t.Errorf("ssh args lack %s: %q", want, args)
		}
	}
	if got := tg.Remote("/tmp/x"); got != "[fd00::5]:/tmp/x" {
		t.Errorf("Remote = %q", got)
	}
	// ssh itself accepts the arguments (-G prints the resulting config).
	if p, err := exec.LookPath("ssh"); err == nil {
		// What follows the address is the remote command, never an option.
		g := append([]string{"-G"}, SSHArgs(tg, []string{"-oUser=evil", "-p", "2222"}, false)...)
		out, err := exec.Command(p, g...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "hostkeyalias red.demo.clusterctl") || !strings.Contains(string(out), "stricthostkeychecking true") ||
			!strings.Contains(string(out), "\nuser debian\n") || !strings.Contains(string(out), "\nport 22\n") ||
			!strings.Contains(string(out), "\nserveraliveinterval 15\n") || !strings.Contains(string(out), "\nserveralivecountmax 4\n") {
			t.Errorf("ssh -G: %v\n%s", err, out)
		}
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

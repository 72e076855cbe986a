package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/internal/guesttest"
	"github.com/clusterctl/clusterctl/internal/sshclient"
	"github.com/clusterctl/clusterctl/internal/sshkeys"
	"github.com/clusterctl/clusterctl/internal/sshtest"
	"github.com/clusterctl/clusterctl/internal/testkit"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/fake"
)

// sshFrom reads what cloud-init's cc_ssh would do from user-data: delete
// the image's host keys and make an ed25519 one (the node's own, never in
// user-data), and install the default user's authorized keys.
func sshFrom(t *testing.T, userData []byte) (authorized []string) {
	t.Helper()
	doc, err := guesttest.Parse(userData)
	if err != nil {
		t.Fatal(err)
	}
	if !doc.DeleteKeys || len(doc.GenKeyTypes) != 1 || doc.GenKeyTypes[0] != "ed25519" || doc.SSHKeys != nil || len(doc.Authorized) == 0 {
		t.Fatalf("user-data does not set ssh_deletekeys, ssh_genkeytypes [ed25519] and ssh_authorized_keys, or carries ssh_keys")
	}
	return doc.Authorized
}

// sshBooter boots fake nodes like booter does and also starts a real sshd
// on each node's loopback address with the keys from its user-data.
type sshBooter struct {
	*booter
	port    int
	servers map[string]*sshtest.Server
}

func (b *sshBooter) boot(ctx context.Context, id string, spec provider.NodeSpec) error {
	if err := b.booter.boot(ctx, id, spec); err != nil {
		return err
	}
	auth := sshFrom(b.t, spec.Seed.UserData)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.skip[spec.Name] {
		return nil // it never boots: no sshd either
	}
	b.servers[spec.Name] = sshtest.Start(b.t, spec.Address.String(), b.port, b.hostKeys[spec.Name].Private, auth)
	return nil
}

func sshSetup(t *testing.T, extra string) (*cluster.Manager, *fake.Provider, *sshBooter) {
	t.Helper()
	sshtest.SSHD(t)
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	p := fake.New()
	b := &sshBooter{booter: newBooter(t), port: testkit.FreePort(t, "127.77.0.10"), servers: map[string]*sshtest.Server{}}
	p.OnCreate = b.boot
	p.OnDelete = b.stop
	t.Cleanup(b.stopAll)
	m, _ := newManager(t, p, fmt.Sprintf("ssh: {user: %s, port: %d}\n%s", u.Username, b.port, extra))
	return m, p, b
}

func TestSSHPinnedHostKey(t *testing.T) {
	m, _, b := sshSetup(t, "")
	client, err := cluster.SSHClient()
	if err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red"}}); err != nil {
		t.Fatalf("up: %v", err)
	}

	// The key pair is in the state directory, the private half 0600.
	fi, err := os.Stat(m.Store.SSHKeyPath())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cluster key: %v %v", fi, err)
	}
	st, _ := m.Store.Load()
	red := st.Node("red")
	if !strings.HasPrefix(red.HostKey, "ssh-ed25519 ") {
		t.Fatalf("state holds no host key for red: %+v", red)
	}
	if data, _ := os.ReadFile(filepath.Join(m.Store.Dir, "state.json")); bytes.Contains(data, []byte("PRIVATE KEY")) {
		t.Error("a private key is in state.json")
	}

	targets, err := m.SSHTargets(ctx, []string{"red"}, false)
	if err != nil {
		t.Fatalf("SSHTargets: %v", err)
	}
	tg := targets[0]
	if tg.Address != red.Address || tg.Alias != "red.test.clusterctl" || tg.Port != b.port {
		t.Errorf("target %+v", tg)
	}
	kh, _ := os.ReadFile(m.Store.KnownHostsPath())
	if !strings.Contains(string(kh), "red.test.clusterctl "+red.HostKey+"\n") {
		t.Errorf("known_hosts does not pin red's key:\n%s", kh)
	}
	var out, errb bytes.Buffer
	code, err := client.Run(ctx, tg, []string{"echo", "in red"}, sshclient.IO{Stdout: &out, Stderr: &errb})
	if code != 0 || err != nil || out.String() != "in red\n" {
		t.Fatalf("ssh red: %d %v %q %q", code, err, out.String(), errb.String())
	}

	// Another machine at red's address, with a key of its own, is refused.
	b.servers["red"].Stop()
	other, _ := sshkeys.Generate("")
	auth := sshFrom(t, renderedUserData(t, m))
	sshtest.Start(t, red.Address, b.port, other.Private, auth)
	code, err = client.Run(ctx, tg, []string{"echo", "in red"}, sshclient.IO{Stdout: &out, Stderr: &errb})
	var hk *sshclient.HostKeyError
	if code != 255 || !errors.As(err, &hk) {
		t.Fatalf("impostor: code %d, err %v", code, err)
	}

	// down forgets the node and its key.
	if _, err := m.Down(ctx, cluster.DownRequest{Names: []string{"red"}}); err != nil {
		t.Fatal(err)
	}
	if kh, _ := os.ReadFile(m.Store.KnownHostsPath()); strings.Contains(string(kh), "red.test.clusterctl") {
		t.Errorf("known_hosts still has red after down:\n%s", kh)
	}
	if _, err := m.Down(ctx, cluster.DownRequest{All: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.Store.SSHKeyPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cluster key survived down --all: %v", err)
	}
}

// renderedUserData renders another node's user-data as render would (the cluster's
// login key is the same; the host key is a new one).
func renderedUserData(t *testing.T, m *cluster.Manager) []byte {
	t.Helper()
	dir := t.TempDir()
	if _, err := m.Render(context.Background(), "", "other", dir); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "user-data"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestSSHBadInput(t *testing.T) {
	m, _, b := sshSetup(t, "timeouts: {join: 2s}\n")
	b.skip["blue"] = true
	ctx := context.Background()
	if _, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red"}}); err != nil {
		t.Fatalf("up red: %v", err)
	}
	_, _ = m.Up(ctx, cluster.UpRequest{Names: []string{"blue"}}) // never joins
	cases := []struct {
		names []string
		all   bool
		want  string
	}{
		{[]string{"ghost"}, false, `no node "ghost"`},
		{[]string{"blue"}, false, `node "blue" has never joined`},
	}
	for _, c := range cases {
		_, err := m.SSHTargets(ctx, c.names, c.all)
		var in *usererr.InputError
		if !errors.As(err, &in) || !strings.Contains(err.Error(), c.want) || in.Fix == "" {
			t.Errorf("SSHTargets(%v): %v, want bad input saying %q", c.names, err, c.want)
		}
	}
	// --all takes the joined nodes only.
	targets, err := m.SSHTargets(ctx, nil, true)
	if err != nil || len(targets) != 1 || targets[0].Name != "red" {
		t.Errorf("--all: %+v %v", targets, err)
	}
	// A node without an address it can be reached at.
	if err := m.Store.Update(func(st *cluster.State) error { st.Node("red").Address = ""; return nil }); err != nil {
		t.Fatal(err)
	}
	var in *usererr.InputError
	if _, err := m.SSHTargets(ctx, []string{"red"}, false); !errors.As(err, &in) || !strings.Contains(err.Error(), `node "red" has no address clusterctl can reach`) {
		t.Errorf("node without address: %v", err)
	}
	// A node with no pinned key (made with ssh: false) is refused with a fix.
	if err := m.Store.Update(func(st *cluster.State) error { st.Node("red").HostKey = ""; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := m.SSHTargets(ctx, []string{"red"}, false); err == nil || !strings.Contains(err.Error(), "no host key pinned") {
		t.Errorf("node without host key: %v", err)
	}
	off := false
	m.Cfg.SSH.Enabled = &off
	if _, err := m.SSHTargets(ctx, []string{"red"}, false); !errors.Is(err, cluster.ErrSSHOff) {
		t.Errorf("ssh: false: %v", err)
	}
}

// With ssh: false nothing about SSH reaches the node or the state.
func TestSSHOffRendersNothing(t *testing.T) {
	p := fake.New()
	m, _ := newManager(t, p, "ssh: false\n")
	dir := t.TempDir()
	if _, err := m.Render(context.Background(), "", "red", dir); err != nil {
		t.Fatal(err)
	}
	ud, _ := os.ReadFile(filepath.Join(dir, "user-data"))
	if bytes.Contains(ud, []byte("ssh_")) {
		t.Errorf("user-data with ssh: false:\n%s", ud)
	}
}

func TestSSHConfigValues(t *testing.T) {
	for text, want := range map[string]string{
		"ssh: {user: Bad}\n":   `ssh.user "Bad" is not a user name`,
		"ssh: {port: 70000}\n": "ssh.port 70000 is out of range",
		"ssh: maybe\n":         "ssh must be true, false or a mapping",
		"ssh: {usr: x}\n":      `unknown key "usr"`,
	} {
		var cfg cluster.Config
		err := cluster.ParseConfig("cluster.yaml", []byte(text), &cfg)
		var in *usererr.InputError
		if !errors.As(err, &in) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want bad input saying %q", text, err, want)
		}
	}
	var cfg cluster.Config
	if err := cluster.ParseConfig("c", []byte("ssh: {user: ubuntu, port: 2222}\n"), &cfg); err != nil || cfg.SSH.LoginUser() != "ubuntu" || cfg.SSH.Port != 2222 || !cfg.SSH.On() {
		t.Errorf("mapping: %v %+v", err, cfg.SSH)
	}
	if cfg := (cluster.Config{}); cfg.SSH.LoginUser() != "debian" || !cfg.SSH.On() {
		t.Error("defaults: ssh on, user debian")
	}
}

package agent

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// TestKeyRotation rotates the gossip key across running agents, node by
// node as the CLI does (install everywhere, use everywhere, remove
// everywhere), and checks that each operation changes only the keyring of
// the agent it is asked of, that nobody drops out, that the keyring files
// follow, and that a node holding only the old key can no longer join.
func TestKeyRotation(t *testing.T) {
	ctx := testCtx(t)
	var agents []*runningAgent
	for i, name := range []string{"red", "blue", "green"} {
		cfg := testConfig(name)
		cfg.StateDir = filepath.Join(t.TempDir(), name)
		if i > 0 {
			cfg.Seeds = []string{agents[0].addr}
		}
		agents = append(agents, startAgent(t, cfg, testOptions()))
	}
	for _, a := range agents { // every agent sees all three members
		if _, err := a.tbl().wait(ctx, func(tb *memberTable) (Member, bool, error) {
			return Member{}, len(tb.members) == 3, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	newKey := []byte("fedcba9876543210fedcba9876543210")
	oldB64, newB64 := base64.StdEncoding.EncodeToString(testKey), base64.StdEncoding.EncodeToString(newKey)

	rep, err := agents[1].KeyInstall(ctx, newKey)
	if err != nil || rep.NumResp != 1 || rep.NumErr != 0 || len(rep.Keys) != 2 || rep.Primary != oldB64 {
		t.Fatalf("KeyInstall = %+v, %v", rep, err)
	}
	if rep, err := agents[0].KeyList(ctx); err != nil || len(rep.Keys) != 1 || rep.Keys[oldB64] != 1 {
		t.Fatalf("red's keys after blue's install = %+v, %v; want only the old key (one node at a time)", rep, err)
	}
	for _, a := range agents {
		if _, err := a.KeyInstall(ctx, newKey); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := agents[2].KeyRemove(ctx, testKey); err == nil {
		t.Error("removing the primary key succeeded")
	}
	for _, a := range agents {
		if rep, err := a.KeyUse(ctx, newKey); err != nil || rep.Primary != newB64 {
			t.Fatalf("KeyUse = %+v, %v", rep, err)
		}
	}
	for _, a := range agents {
		if rep, err := a.KeyRemove(ctx, testKey); err != nil || len(rep.Keys) != 1 || rep.Keys[newB64] != 1 {
			t.Fatalf("KeyRemove = %+v, %v", rep, err)
		}
	}
	// Nobody dropped out.
	if got := states(agents[0].tbl()); got != "blue=alive green=alive red=alive" {
		t.Errorf("members after the rotation: %s, want all alive", got)
	}
	// The keyring file follows (a restart uses it) and never shows the old key.
	for _, a := range agents {
		keys, err := readKeyring(filepath.Join(a.cfg.StateDir, keyringFile))
		if err != nil || len(keys) != 1 || string(keys[0]) != string(newKey) {
			t.Errorf("%s keyring file: %d keys, %v; want only the new key", a.cfg.Name, len(keys), err)
		}
		if fi, err := os.Stat(filepath.Join(a.cfg.StateDir, keyringFile)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s keyring file mode: %v %v", a.cfg.Name, fi.Mode(), err)
		}
	}
	// A node that holds only the old key cannot join.
	staleCfg := testConfig("stale")
	stale := startAgent(t, staleCfg, testOptions())
	g, _ := stale.gossipOrErr()
	if n, err := g.serf.Join([]string{agents[1].addr}, true); err == nil {
		t.Errorf("a node with only the old key joined (%d reached)", n)
	}
	time.Sleep(500 * time.Millisecond)
	list, _ := agents[1].tbl().snapshot(agentconfig.RoleNode)
	for _, m := range list {
		if m.Name == "stale" {
			t.Errorf("blue counts the stale-key node as a member (%s)", m.State)
		}
	}
	// A node that restarts with the old key in its config uses its keyring
	// file and rejoins.
	agents[2].stop(t)
	cfg := agents[2].cfg
	startAgent(t, cfg, testOptions())
	waitMember(ctx, t, agents[0].tbl(), "green", func(m Member) bool { return m.State == nodeapi.StatusAlive })
}

// TestGossipCannotChangeKeys: a sender that holds the gossip key runs
// serf's key manager (install, use, remove, list) against the agents, as a
// serf member would; no agent's keyring or keyring file changes, and the
// agents keep talking.
func TestGossipCannotChangeKeys(t *testing.T) {
	ctx := testCtx(t)
	var agents []*runningAgent
	for i, name := range []string{"red", "blue"} {
		cfg := testConfig(name)
		cfg.StateDir = filepath.Join(t.TempDir(), name)
		if i > 0 {
			cfg.Seeds = []string{agents[0].addr}
		}
		agents = append(agents, startAgent(t, cfg, testOptions()))
	}
	waitMember(ctx, t, agents[0].tbl(), "blue", func(m Member) bool { return m.State == nodeapi.StatusAlive })
	intruder := startIntruder(t, "mallory", "127.0.0.9", map[string]string{"cluster": "test", "name": "mallory", "role": "node", "nonce": "m"}, agents[0].addr)
	if n := len(intruder.Members()); n < 3 {
		t.Fatalf("the intruder learnt %d members; it needs the agents to address its queries", n)
	}
	planted := base64.StdEncoding.EncodeToString([]byte("PLANTEDPLANTEDPLANTEDPLANTEDPLAN"))
	km := intruder.KeyManager()
	if r, err := km.InstallKey(planted); err == nil || r.NumResp > 1 {
		t.Errorf("install-key over gossip: %d of %d answered (%v)", r.NumResp, r.NumNodes, err)
	}
	_, _ = km.UseKey(planted)
	_, _ = km.RemoveKey(base64.StdEncoding.EncodeToString(testKey))
	if r, err := km.ListKeys(); err == nil && r.NumResp > 1 {
		t.Errorf("list-keys over gossip answered by %d members", r.NumResp)
	}
	for _, a := range agents {
		rep, err := a.KeyList(ctx)
		if err != nil || len(rep.Keys) != 1 || rep.Keys[base64.StdEncoding.EncodeToString(testKey)] != 1 {
			t.Errorf("%s's keys after the intruder's key operations: %+v, %v", a.cfg.Name, rep, err)
		}
		keys, err := readKeyring(filepath.Join(a.cfg.StateDir, keyringFile))
		if err != nil || len(keys) != 1 || string(keys[0]) != string(testKey) {
			t.Errorf("%s's keyring file changed: %d keys, %v", a.cfg.Name, len(keys), err)
		}
	}
	if got := states(agents[0].tbl()); got != "blue=alive red=alive" {
		t.Errorf("red's view after the intruder: %s", got)
	}
}

// TestUnusableStateStartsFresh: a corrupt snapshot, or state of another
// cluster, is logged and set aside; the agent starts from its seeds.
func TestUnusableStateStartsFresh(t *testing.T) {
	ctx := testCtx(t)
	red := startAgent(t, testConfig("red"), testOptions())
	for _, tc := range []struct {
		name  string
		setup func(dir string)
	}{
		{"corrupt snapshot", func(dir string) {
			id := `{"cluster":"test","name":"blue","nonce":"blue-nonce-1"}`
			must(t, os.WriteFile(filepath.Join(dir, identityFile), []byte(id), 0o600))
			must(t, os.WriteFile(filepath.Join(dir, snapshotFile), []byte("\x00\xffgarbage\nalive: \nclock: x\n"+strings.Repeat("z", 5000)), 0o600))
			must(t, os.WriteFile(filepath.Join(dir, keyringFile), []byte("[not base64"), 0o600))
		}},
		{"snapshot is a directory", func(dir string) {
			id := `{"cluster":"test","name":"blue","nonce":"blue-nonce-1"}`
			must(t, os.WriteFile(filepath.Join(dir, identityFile), []byte(id), 0o600))
			must(t, os.MkdirAll(filepath.Join(dir, snapshotFile, "x"), 0o700))
		}},
		{"foreign state", func(dir string) {
			id := `{"cluster":"prod","name":"db1","nonce":"zzz"}`
			must(t, os.WriteFile(filepath.Join(dir, identityFile), []byte(id), 0o600))
			must(t, os.WriteFile(filepath.Join(dir, snapshotFile), []byte("alive: db2 127.0.0.1:1\n"), 0o600))
			must(t, os.WriteFile(filepath.Join(dir, keyringFile), []byte(`["`+base64.StdEncoding.EncodeToString([]byte("ffffffffffffffff"))+`"]`), 0o600))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			must(t, os.MkdirAll(dir, 0o700))
			tc.setup(dir)
			cfg := testConfig("blue")
			cfg.StateDir = dir
			cfg.Seeds = []string{red.addr}
			blue := startAgent(t, cfg, testOptions())
			if _, err := red.tbl().wait(ctx, func(tb *memberTable) (Member, bool, error) {
				return Member{}, tb.members["blue"].State == nodeapi.StatusAlive, nil
			}); err != nil {
				t.Fatalf("blue did not join from its seeds: %v", err)
			}
			blue.stop(t)
			if _, err := red.tbl().wait(ctx, func(tb *memberTable) (Member, bool, error) {
				return Member{}, tb.members["blue"].State == nodeapi.StatusFailed, nil
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/internal/guesttest"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/fake"
)

// shared is one fake provider for the whole test binary (the registry is
// global); tests use distinct cluster names.
var shared = fake.New()

func TestMain(m *testing.M) {
	provider.Register("fake", func(provider.Env) (provider.Provider, error) { return shared, nil })
	os.Exit(m.Run())
}

type result struct {
	code           int
	stdout, stderr string
}

// cli runs clusterctl in-process with its own home and config.
func cli(t *testing.T, home, config string, args ...string) result {
	t.Helper()
	t.Setenv("CLUSTERCTL_HOME", home)
	if config != "" {
		args = append([]string{"--config", config}, args...)
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return result{code, out.String(), errb.String()}
}

func setup(t *testing.T, cfg string) (home, config string) {
	t.Helper()
	dir := t.TempDir()
	agent := filepath.Join(dir, "clusterctl-agent")
	if err := os.WriteFile(agent, []byte("not really an agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	config = filepath.Join(dir, "cluster.yaml")
	text := "provider: fake\ngossip: {port: 17947}\nagent: {binary: " + agent + "}\n" + cfg
	if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "home"), config
}

func TestBadInputExitsTwoWithAFix(t *testing.T) {
	home, config := setup(t, "cluster: badinput\n")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"up", "--no-such-flag"}, "unknown flag"},
		{[]string{"up", "--provider", "nope", "red"}, `unknown provider "nope"`},
		{[]string{"up", "Red_1", "-x"}, "unknown shorthand flag"},
		{[]string{"up", "Red_1"}, `invalid node name "Red_1"`},
		{[]string{"up", "red", "red"}, `"red" is given twice`},
		{[]string{"down"}, "no node named"},
		{[]string{"down", "ghost"}, `no node "ghost"`},
		{[]string{"down", "--all", "red"}, "--all was given with node names"},
		{[]string{"status", "-o", "xml"}, `unknown output format "xml"`},
		{[]string{"status", "extra-arg"}, "unknown command"},
		{[]string{"render"}, "accepts 1 arg"},
		{[]string{"key", "rotate"}, `cluster "badinput" has no nodes`},
		{[]string{"key", "rotate", "extra"}, "unknown command"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := cli(t, home, config, tc.args...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2; stderr:\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr does not say %q:\n%s", tc.want, r.stderr)
			}
			if !strings.Contains(r.stderr, "fix:") {
				t.Errorf("stderr gives no fix:\n%s", r.stderr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(home, "clusters", "badinput")); !os.IsNotExist(err) {
		t.Error("bad input created the cluster's state directory")
	}
}

func TestConfigErrorShowsLine(t *testing.T) {
	home, config := setup(t, "nodes:\n  cpus: 2\n")
	r := cli(t, home, config, "status")
	if r.code != 2 || !strings.Contains(r.stderr, `line 4: unknown key "nodes"`) || !strings.Contains(r.stderr, `did you mean "node"`) {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

func TestVersionAndEmptyStatus(t *testing.T) {
	home, config := setup(t, "cluster: empty\n")
	if r := cli(t, home, config, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "clusterctl ") {
		t.Errorf("version: %+v", r)
	}
	if r := cli(t, home, config, "status"); r.code != 0 || !strings.Contains(r.stdout, `cluster "empty" has no nodes`) {
		t.Errorf("status: %+v", r)
	}
	r := cli(t, home, config, "status", "-o", "json")
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || doc["schema"] != "clusterctl/v1" {
		t.Errorf("status -o json: %v %q", err, r.stdout)
	}
}

// A node whose agent never joins: up names the phase, shows the console,
// exits 1 and keeps the node, so status sees it and down removes it. The
// gossip key appears in no output.
func TestJoinTimeoutFlow(t *testing.T) {
	home, config := setup(t, "cluster: timeout\n")
	r := cli(t, home, config, "up", "red", "--join-timeout", "1s")
	if r.code != 1 {
		t.Fatalf("up exit %d, want 1:\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"join: the agent did not join within 1s", "clusterctl down"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("up stderr does not say %q:\n%s", want, r.stderr)
		}
	}
	if !strings.Contains(r.stdout, "--- console of red") || !strings.Contains(r.stdout, "fake console of red") {
		t.Errorf("up did not show the console tail:\n%s", r.stdout)
	}
	st := cli(t, home, config, "status")
	if st.code != 0 || !strings.Contains(st.stdout, "red") || !strings.Contains(st.stdout, "failed") {
		t.Errorf("status after a failed up: %+v", st)
	}
	keyFile, err := os.ReadFile(filepath.Join(home, "clusters", "timeout", "gossip.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(string(keyFile)))
	dn := cli(t, home, config, "down", "red")
	if dn.code != 0 {
		t.Errorf("down: %+v", dn)
	}
	for _, out := range []string{r.stdout, r.stderr, st.stdout, st.stderr, dn.stdout, dn.stderr} {
		if strings.Contains(out, strings.TrimSpace(string(keyFile))) || bytes.Contains([]byte(out), key) {
			t.Fatal("the gossip key appears in clusterctl's output")
		}
	}
	if r := cli(t, home, config, "status"); !strings.Contains(r.stdout, "has no nodes") {
		t.Errorf("status after down: %+v", r)
	}
}

func TestRenderWritesSeedFiles(t *testing.T) {
	home, config := setup(t, "cluster: render\n")
	dir := filepath.Join(t.TempDir(), "out")
	r := cli(t, home, config, "render", "red", "--dir", dir)
	if r.code != 0 {
		t.Fatalf("render: %+v", r)
	}
	for _, f := range []string{"user-data", "meta-data", "network-config", "seed.iso"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Errorf("render did not write %s: %v", f, err)
			continue
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600 (it holds the gossip key)", f, fi.Mode().Perm())
		}
	}
	ud, _ := os.ReadFile(filepath.Join(dir, "user-data"))
	if doc, err := guesttest.Parse(ud); err != nil || doc.Hostname != "red" {
		t.Errorf("user-data (%v):\n%s", err, ud)
	}
	if _, err := os.Stat(filepath.Join(home, "clusters", "render", "state.json")); !os.IsNotExist(err) {
		t.Error("render recorded state; a dry run must not")
	}
}

// A hint that applies to several failed nodes is printed once, on a "hint:"
// line after their "error:" lines, not as an error of its own.
func TestUpFailureHintIsOnAHintLine(t *testing.T) {
	home, config := setup(t, "cluster: hintline\n")
	r := cli(t, home, config, "up", "red", "blue", "--join-timeout", "1s")
	if r.code != 1 {
		t.Fatalf("up exit %d, want 1:\n%s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	var errs, hints []string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "error: "):
			errs = append(errs, l)
		case strings.HasPrefix(l, "hint: "):
			hints = append(hints, l)
		}
	}
	for _, l := range errs {
		if strings.HasPrefix(l, "error: (") {
			t.Errorf("a hint is printed as an error: %q", l)
		}
	}
	if len(errs) != 2 || !strings.Contains(r.stderr, `error: node "red": join: the agent did not join within 1s`) ||
		!strings.Contains(r.stderr, `error: node "blue": join: the agent did not join within 1s`) {
		t.Errorf("want one error line per node:\n%s", r.stderr)
	}
	if len(hints) != 1 || lines[len(lines)-1] != hints[0] || !strings.Contains(hints[0], "clusterctl down NAME") {
		t.Errorf("want one hint line, last, naming `clusterctl down NAME`:\n%s", r.stderr)
	}
	if dn := cli(t, home, config, "down", "--all"); dn.code != 0 {
		t.Errorf("down --all: %+v", dn)
	}
}

// printError's layout for each shape of error the layers below return.
func TestPrintErrorLayout(t *testing.T) {
	a, b := errors.New("a failed"), errors.New("b failed")
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"plain", a, "error: a failed\n"},
		{"bad input", usererr.BadInput("do x", "bad %q", "v"), "error: bad \"v\"\n  fix: do x\n"},
		{"wrapped hint", fmt.Errorf("up: %w", usererr.WithHint(a, "try y")), "error: up: a failed\n  hint: try y\n"},
		{"multi-line message", errors.New("one\ntwo"), "error: one\n  two\n"},
		{"joined", errors.Join(usererr.BadInput("do x", "a"), usererr.WithHint(b, "try y")),
			"error: a\n  fix: do x\nerror: b failed\n  hint: try y\n"},
		{"hint around joined", usererr.WithHint(errors.Join(a, usererr.WithHint(b, "try y")), "for both"),
			"error: a failed\nerror: b failed\n  hint: try y\nhint: for both\n"},
		{"fix around joined", &usererr.InputError{Err: errors.Join(a, b), Fix: "fix both"},
			"error: a failed\nerror: b failed\nfix: fix both\n"},
		{"hint without text around joined", usererr.WithHint(errors.Join(a, b), ""),
			"error: a failed\nerror: b failed\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			printError(&buf, tc.err)
			if buf.String() != tc.want {
				t.Errorf("printed:\n%s\nwant:\n%s", buf.String(), tc.want)
			}
		})
	}
}

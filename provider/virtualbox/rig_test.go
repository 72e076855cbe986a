package virtualbox

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/virtualbox/internal/vboxtest"
)

// fakeBinary is the fake VBoxManage TestMain builds. It is built without
// the test's flags (-race makes every one of the many short calls slow).
var fakeBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vboxtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fakeBinary = filepath.Join(dir, "VBoxManage")
	build := exec.Command("go", "build", "-o", fakeBinary, "./internal/vboxtest/cmd/VBoxManage")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the fake VBoxManage:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// secret stands for the gossip key inside the user-data.
const secret = "gossip-key-c2VjcmV0LXNlY3JldC1zZWNyZXQ="

// rig is a provider wired to the fake VBoxManage in temporary directories.
type rig struct {
	t     testing.TB
	root  string // every path of the test is under it
	home  string // VBOX_USER_HOME of the fake
	state string // the cluster's state directory
	image string
	vbm   string // the VBoxManage symlink
	conf  string // networks.conf path (absent unless a test writes it)
	agent string
	p     *Provider
}

func newRig(t testing.TB, extraConfig string) *rig {
	t.Helper()
	root := t.TempDir()
	r := &rig{t: t, root: root, home: filepath.Join(root, "vbox-home"), state: filepath.Join(root, "state"),
		image: filepath.Join(root, "images", "base.vdi"), vbm: filepath.Join(root, "bin", "VBoxManage"),
		conf: filepath.Join(root, "etc-vbox", "networks.conf"), agent: filepath.Join(root, "agent")}
	for _, d := range []string{r.home, r.state, filepath.Dir(r.image), filepath.Dir(r.vbm), filepath.Dir(r.conf)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(fakeBinary, r.vbm); err != nil {
		t.Fatal(err)
	}
	if err := vboxtest.WriteVDI(r.image, "", 2<<30); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.agent, []byte("#!/bin/sh\necho agent\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VBOX_USER_HOME", r.home)
	t.Setenv(EnvVBoxManage, "")
	r.setFaults(vboxtest.Faults{})
	r.p = r.provider(extraConfig)
	return r
}

// provider makes a provider from a virtualbox: section (the image and
// VBoxManage keys are filled in) with the rig's host facts.
func (r *rig) provider(extraConfig string) *Provider {
	r.t.Helper()
	p, err := r.tryProvider(extraConfig)
	if err != nil {
		r.t.Fatalf("New: %v", err)
	}
	return p
}

func (r *rig) tryProvider(extraConfig string) (*Provider, error) {
	text := "powerdown_timeout: 200ms\n" + extraConfig
	if !strings.Contains(extraConfig, "image:") {
		text += "image: " + r.image + "\n"
	}
	if !strings.Contains(extraConfig, "vboxmanage:") {
		text += "vboxmanage: " + r.vbm + "\n"
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		r.t.Fatal(err)
	}
	p, err := New(provider.Env{Cluster: "lab", Dir: r.state, Config: &doc})
	if err != nil {
		return nil, err
	}
	p.goos = "linux"
	p.networksConf = r.conf
	p.routes = func() ([]hostRoute, error) { return nil, nil }
	p.pollInterval = 10 * time.Millisecond
	p.retryBackoff = 5 * time.Millisecond
	return p, nil
}

func (r *rig) setFaults(f vboxtest.Faults) {
	r.t.Helper()
	f.NetworksConf = r.conf
	if err := vboxtest.SetFaults(r.home, f); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) registry() *vboxtest.Registry {
	r.t.Helper()
	reg, err := vboxtest.Load(r.home)
	if err != nil {
		r.t.Fatal(err)
	}
	return reg
}

// vbox runs the fake VBoxManage directly, as a user at a shell would.
func (r *rig) vbox(args ...string) (string, error) {
	run := &runner{path: r.vbm, timeout: time.Minute}
	return run.run(context.Background(), args...)
}

func (r *rig) calls() [][]string {
	r.t.Helper()
	c, err := vboxtest.Calls(r.home)
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// transcript renders calls one per line with the rig's paths and UUIDs
// replaced, for golden files.
func (r *rig) transcript(calls [][]string) string {
	var b strings.Builder
	for _, c := range calls {
		line := "VBoxManage " + strings.Join(c, " ")
		line = strings.ReplaceAll(line, r.root, "$TMP")
		line = uuidRE.ReplaceAllString(line, "<uuid>")
		b.WriteString(line + "\n")
	}
	return b.String()
}

func (r *rig) spec(name string, i int) provider.NodeSpec {
	return provider.NodeSpec{
		Cluster: "lab", Name: name, Nonce: fmt.Sprintf("nonce-%s", name),
		Address:     netip.AddrFrom4([4]byte{192, 168, 56, byte(11 + i)}),
		MAC:         fmt.Sprintf("52:54:00:aa:00:%02x", 10+i),
		OutboundMAC: fmt.Sprintf("52:54:00:bb:00:%02x", 10+i),
		CPUs:        1,
		MemoryMiB:   512,
		Seed: provider.Seed{
			UserData:      []byte("#cloud-config\nwrite_files:\n  - path: /etc/clusterctl/agent.json\n    content: '{\"key\": \"" + secret + "\"}'\n"),
			MetaData:      []byte("instance-id: lab-" + name + "\nlocal-hostname: " + name + "\n"),
			NetworkConfig: []byte("version: 2\n"),
		},
		AgentBinary: r.agent,
		Dir:         filepath.Join(r.state, "nodes", name),
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// inputError asserts err is (or joins) an *InputError whose message
// contains msg, and whose fix contains fix; it returns that error.
func inputError(t *testing.T, err error, msg, fix string) *usererr.InputError {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want an input error containing %q", msg)
	}
	for _, e := range flatten(err) {
		var ie *usererr.InputError
		if errors.As(e, &ie) && strings.Contains(ie.Error(), msg) {
			if !strings.Contains(ie.Fix, fix) {
				t.Errorf("error %q: fix %q does not contain %q", ie.Error(), ie.Fix, fix)
			}
			return ie
		}
	}
	t.Fatalf("no input error containing %q in:\n%v", msg, err)
	return nil
}

// hintError asserts err carries a *HintError whose message contains msg
// and whose hint contains hint.
func hintError(t *testing.T, err error, msg, hint string) {
	t.Helper()
	var he *usererr.HintError
	if !errors.As(err, &he) {
		t.Fatalf("error %v: not a *usererr.HintError", err)
	}
	if !strings.Contains(err.Error(), msg) || !strings.Contains(he.Hint, hint) {
		t.Fatalf("error %q with hint %q: want message containing %q and hint containing %q", err, he.Hint, msg, hint)
	}
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// preflight does what up does before it makes anything: Preflight, then
// PrepareNetwork.
func preflight(ctx context.Context, p *Provider, specs []provider.NodeSpec) error {
	if err := p.Preflight(ctx, specs); err != nil {
		return err
	}
	return p.PrepareNetwork(ctx)
}

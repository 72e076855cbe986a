package cluster_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/internal/usererr"

	_ "github.com/clusterctl/clusterctl/provider/ec2"
	_ "github.com/clusterctl/clusterctl/provider/openstack"
	_ "github.com/clusterctl/clusterctl/provider/qemu"
	_ "github.com/clusterctl/clusterctl/provider/virtualbox"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigErrorsNameLineAndFix(t *testing.T) {
	cases := []struct {
		name, text string
		want       []string
	}{
		{"misspelled top key", "cluster: a\nprovidr: qemu\n", []string{`line 2: unknown key "providr"`, `did you mean "provider"`}},
		{"unknown nested key", "node:\n  cpus: 2\n  memroy: 512\n", []string{`line 3: unknown key "memroy" in node`, `"memory"`}},
		{"all problems at once", "clustr: a\nnode:\n  cpu: 1\n", []string{"line 1:", "line 3:"}},
		{"bad value", "node:\n  cpus: 0\n  memory: 64\n", []string{"node.memory 64 MiB is out of range"}},
		{"unknown provider", "provider: vmware\n", []string{`unknown provider "vmware"`}},
		{"bad cluster name", "cluster: My_Cluster\n", []string{`cluster name "My_Cluster" is not a valid DNS label`}},
		{"not yaml", "node: [unclosed\n", []string{"line"}},
		{"url without checksum", "agent:\n  source: url\n  url: https://example.invalid/agent\n", []string{"agent.sha256"}},
		{"missing template", "cloudinit:\n  template: nope.tmpl\n", []string{"cloudinit.template"}},
		{"the observer is gone", "gossip:\n  port: 7946\n  observer: 10.0.0.5\n", []string{"line 3: gossip.observer is no longer used"}},
		{"api port clash", "gossip: {port: 7000}\napi: {port: 7000}\n", []string{"api.port and gossip.port are both 7000"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cluster.LoadConfig(writeConfig(t, tc.text), true)
			var in *usererr.InputError
			if !errors.As(err, &in) {
				t.Fatalf("error %v: want an input error", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tc.name == "the observer is gone" && !strings.Contains(in.Fix, "port 7947") {
				t.Errorf("fix %q does not say that the CLI now dials the API port", in.Fix)
			}
		})
	}
}

func TestConfigDefaultsAndProviderSection(t *testing.T) {
	cfg, err := cluster.LoadConfig(writeConfig(t, "provider: qemu\nqemu:\n  image: x.raw\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster != "default" || cfg.Gossip.Port != 7946 || cfg.Node.MemoryMiB != 1024 || cfg.DomainFor(cfg.Cluster) != "default.internal" {
		t.Errorf("defaults: %+v", cfg)
	}
	if cfg.Providers["qemu"] == nil {
		t.Error("the qemu: section was not kept for the provider")
	}
	if _, err := cluster.LoadConfig(filepath.Join(t.TempDir(), "absent.yaml"), false); err != nil {
		t.Errorf("an absent default config must give the defaults: %v", err)
	}
	if _, err := cluster.LoadConfig(filepath.Join(t.TempDir(), "absent.yaml"), true); err == nil {
		t.Error("an absent --config file must be an error")
	}
}

// A config that repeats a key thousands of times is rejected at once as
// bad input naming the lines (it once took minutes to load: yaml.v3 checks
// duplicates pair by pair). The same input is in the fuzz corpus.
func TestRepeatedKeysAreBadInput(t *testing.T) {
	for _, doc := range []string{
		strings.Repeat("cluster: a\n", 3000),
		"node:\n  tags:\n" + strings.Repeat("    a: b\n", 3000),
		"qemu: {image: a}\nqemu: {image: b}\n",
	} {
		cfg := &cluster.Config{}
		err := cluster.ParseConfig("c.yaml", []byte(doc), cfg)
		var in *usererr.InputError
		if !errors.As(err, &in) || !strings.Contains(err.Error(), "already defined at line") {
			t.Errorf("config %.40q...: error %v, want an input error naming the duplicate", doc, err)
		}
	}
}

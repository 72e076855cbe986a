package virtualbox

import (
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/provider"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

type yamlNode struct{ Node *yaml.Node }

func (n *yamlNode) UnmarshalYAML(v *yaml.Node) error { n.Node = v; return nil }

func unmarshalYAML(b []byte, v any) error { return yaml.Unmarshal(b, v) }

func parse(t *testing.T, text string) (Config, error) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	return ParseConfig(provider.Env{Config: &doc, ConfigDir: "/cfg"})
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := parse(t, "image: disks/debian.vdi\n")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Image: "/cfg/disks/debian.vdi", Clone: CloneLinked, OSType: "Debian_64", Controller: "sata", HostOnly: "auto",
		CIDR: "192.168.56.0/24", Memory: 1024, CPUs: 1, PowerdownTimeout: 30 * time.Second, CommandTimeout: 2 * time.Minute}
	want.prefix, want.host = cfg.prefix, cfg.host
	if cfg != want {
		t.Errorf("got %+v\nwant %+v", cfg, want)
	}
	if cfg.Host().String() != "192.168.56.1" {
		t.Errorf("host %s, want 192.168.56.1", cfg.Host())
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ text, msg string }{
		{"image: a.vdi\nimgae: b\n", `line 2: unknown key "imgae"`},
		{"", "image is required"},
		{"image: a.vdi\nmemory: 100\n", "memory 100 MiB is out of range"},
		{"image: a.vdi\nmemory: 4194304\n", "memory 4194304 MiB is out of range"},
		{"image: a.vdi\ncpus: 65\n", "cpus 65 is out of range"},
		{"image: a.vdi\nclone: deep\n", `unknown clone "deep"`},
		{"image: a.vdi\ncontroller: ide\n", `unknown controller "ide"`},
		{"image: a.vdi\nhostonly: bridged\n", `unknown hostonly "bridged"`},
		{"image: a.vdi\ncidr: 192.168.56.1/24\n", "has host bits set"},
		{"image: a.vdi\ncidr: fd00::/64\n", "is not IPv4"},
		{"image: a.vdi\nhost_address: 192.168.57.1\n", "is not a host address of cidr"},
		{"image: a.vdi\nostype: 'Debian 64'\n", "bad ostype"},
		{"image: a.vdi\ncommand_timeout: 10ms\n", "command_timeout 10ms is too short"},
	} {
		_, err := parse(t, tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: got %v, want an error containing %q", tc.text, err, tc.msg)
			continue
		}
		for _, e := range flatten(err) {
			if _, ok := e.(*usererr.InputError); !ok {
				t.Errorf("%q: %T is not an *InputError: %v", tc.text, e, e)
			}
		}
	}
	// All problems at once.
	_, err := parse(t, "memory: 1\ncpus: 0\nclone: x\n")
	if n := len(flatten(err)); n < 3 {
		t.Errorf("got %d problems, want them all at once: %v", n, err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add("image: a.vdi\ncidr: 192.168.56.0/24\nmemory: 2048\n")
	f.Add("image: a.vdi\nhost_address: 192.168.56.9\nclone: full\n")
	f.Fuzz(func(t *testing.T, text string) {
		var doc yaml.Node
		if yaml.Unmarshal([]byte(text), &doc) != nil {
			return
		}
		cfg, err := ParseConfig(provider.Env{Config: &doc, ConfigDir: "/cfg"})
		if err != nil {
			return
		}
		if !cfg.Prefix().IsValid() || !cfg.Prefix().Contains(cfg.Host()) || cfg.Memory < MinMemoryMiB || cfg.CPUs < 1 {
			t.Fatalf("accepted an unusable config: %+v", cfg)
		}
	})
}

package openstack_test

import (
	"testing"

	"github.com/clusterctl/clusterctl/provider"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/provider/openstack"
)

// FuzzParseConfig: any section either parses or is rejected with an error;
// it never panics, and what parses has its required keys and sane bounds.
func FuzzParseConfig(f *testing.F) {
	f.Add("flavor: m1.small\nimage: debian\nnetwork: private\n")
	f.Add("cloud: x\nflavor: a\nimage: b\nnetwork: c\napi_from: [198.51.100.7/32, 10.0.0.0/8]\nparallel: 3\n")
	f.Add("flavour: 1\n")
	f.Add("flavor: [1, 2]\nimage: {a: b}\n")
	f.Add("poll_interval: -1s\nagent_url_ttl: 1s\n")
	f.Fuzz(func(t *testing.T, section string) {
		var node yaml.Node
		if yaml.Unmarshal([]byte(section), &node) != nil {
			return
		}
		cfg, err := openstack.ParseConfig(provider.Env{Config: &node, Cluster: "lab"})
		if err != nil {
			return
		}
		if cfg.Flavor == "" || cfg.Image == "" || cfg.Network == "" || cfg.Parallel < 1 || cfg.GossipPort < 1 || cfg.PollInterval < 0 {
			t.Fatalf("accepted an invalid config: %+v", cfg)
		}
	})
}

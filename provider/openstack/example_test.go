package openstack_test

import (
	"path/filepath"
	"testing"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/provider"
)

// TestExampleLoads loads the example cluster config the way the CLI does,
// including the provider's strict decoding of its section, with no network
// and no clouds.yaml (the factory must not need either).
//
// The file is meant to live at examples/openstack.yaml, where cluster's
// TestExamplesLoad also loads it once that test imports this provider.
func TestExampleLoads(t *testing.T) {
	t.Setenv("OS_CLIENT_CONFIG_FILE", filepath.Join(t.TempDir(), "absent.yaml"))
	for _, f := range []string{"testdata/example.yaml", "../../examples/openstack.yaml"} {
		matches, _ := filepath.Glob(f)
		for _, m := range matches {
			cfg, err := cluster.LoadConfig(m, true)
			if err != nil {
				t.Fatalf("%s: %v", m, err)
			}
			if cfg.Provider != "openstack" {
				t.Fatalf("%s: provider %q", m, cfg.Provider)
			}
			if _, err := provider.New("openstack", provider.Env{Cluster: cfg.Cluster, Dir: t.TempDir(), Config: cfg.Providers["openstack"], ConfigDir: filepath.Dir(m)}); err != nil {
				t.Fatalf("%s: the provider rejects its section: %v", m, err)
			}
		}
	}
}

package main

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/provider"
)

// TestExamplesLoad loads every example config the way this binary does,
// including the provider's own strict decoding of its section.
func TestExamplesLoad(t *testing.T) {
	// Provider factories must not need credentials or network to load.
	t.Setenv("OS_CLIENT_CONFIG_FILE", filepath.Join(t.TempDir(), "absent.yaml"))
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := cluster.LoadConfig(f, true)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Provider == "" {
				t.Fatal("example names no provider")
			}
			if slices.Contains(omittedProviders, cfg.Provider) {
				t.Skipf("built without provider %s", cfg.Provider)
			}
			_, err = provider.New(cfg.Provider, provider.Env{Cluster: cfg.Cluster, Dir: t.TempDir(), Config: cfg.Providers[cfg.Provider], ConfigDir: filepath.Dir(f)})
			if err != nil {
				t.Fatalf("provider %q rejects its section: %v", cfg.Provider, err)
			}
		})
	}
}

package cluster_test

import (
	"errors"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/internal/usererr"
)

// FuzzParseConfig: whatever the file holds, parsing never panics, a
// rejection is always an input error (exit 2) that names the file, and an
// accepted file decodes to the same values when parsed again.
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		"cluster: a\nprovider: qemu\n",
		"node:\n  cpus: 2\n  memory: 512\n  tags: {a: b}\n",
		"providr: qemu\n",
		"qemu:\n  image: x\n",
		"timeouts: {join: 5m}\n",
		"&a {cluster: *a}\n",
		"- a\n- b\n",
		"cloudinit:\n  extra: |\n    runcmd: [ls]\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := &cluster.Config{Providers: map[string]*yaml.Node{}}
		err := cluster.ParseConfig("fuzz.yaml", data, cfg)
		if err != nil {
			var in *usererr.InputError
			if !errors.As(err, &in) {
				t.Fatalf("rejection is not an input error: %v", err)
			}
			return
		}
		again := &cluster.Config{Providers: map[string]*yaml.Node{}}
		if err := cluster.ParseConfig("fuzz.yaml", data, again); err != nil {
			t.Fatalf("second parse failed: %v", err)
		}
		if cfg.Cluster != again.Cluster || cfg.Provider != again.Provider || cfg.Node.MemoryMiB != again.Node.MemoryMiB || cfg.CloudInit.Extra != again.CloudInit.Extra {
			t.Fatal("parsing the same file twice gave different values")
		}
	})
}

package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/clusterctl/clusterctl/cloudinit"
	"github.com/clusterctl/clusterctl/internal/atomicfile"
	"github.com/clusterctl/clusterctl/provider"
)

// Rendered lists what Render wrote.
type Rendered struct {
	Node  string   `json:"node"`
	Dir   string   `json:"dir"`
	Files []string `json:"files"`
	// NewKey is true when the cluster has no gossip key yet: the files hold
	// a throw-away key, and up will make the real one.
	NewKey bool `json:"new_key"`
	// Commands are what the provider would run for up, for providers that
	// can say (provider.DryRunner).
	Commands []string `json:"commands,omitempty"`
}

// Render is the dry run of up for one node: it renders what would be sent
// to the node and writes user-data, meta-data, network-config and, for
// providers that boot from a seed ISO, seed.iso into dir. It records
// nothing and asks the provider for nothing but its network.
func (m *Manager) Render(ctx context.Context, provName, name, dir string) (Rendered, error) {
	st, err := m.Store.Load()
	if err != nil {
		return Rendered{}, err
	}
	if provName, err = m.chooseProvider(st, provName); err != nil {
		return Rendered{}, err
	}
	p, err := m.provider(provName)
	if err != nil {
		return Rendered{}, err
	}
	pl := newPlanner(m, p, true)
	if err := pl.plan(ctx, st, UpRequest{Names: []string{name}}); err != nil {
		return Rendered{}, err
	}
	_, keyErr := m.Store.ReadKey()
	out := Rendered{Node: name, Dir: dir, NewKey: keyErr != nil}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return out, fmt.Errorf("create %q: %w", dir, err)
	}
	spec := pl.nodes[0].spec
	files := []struct {
		name string
		data []byte
	}{{"user-data", spec.Seed.UserData}, {"meta-data", spec.Seed.MetaData}, {"network-config", spec.Seed.NetworkConfig}}
	for _, f := range files {
		if f.data == nil {
			continue
		}
		path := filepath.Join(dir, f.name)
		if err := atomicfile.WriteFile(path, f.data, 0o600); err != nil {
			return out, err
		}
		out.Files = append(out.Files, path)
	}
	if spec.AgentBinary != "" {
		path := filepath.Join(dir, "seed.iso")
		if err := cloudinit.WriteSeedISO(path, cloudinit.Rendered(spec.Seed), spec.AgentBinary); err != nil {
			return out, fmt.Errorf("write seed ISO: %w", err)
		}
		out.Files = append(out.Files, path)
	}
	if dr, ok := p.(provider.DryRunner); ok {
		if out.Commands, err = dr.DryRun(ctx, spec); err != nil {
			return out, fmt.Errorf("dry run of %s: %w", p.Name(), err)
		}
	}
	return out, nil
}

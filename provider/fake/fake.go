// Package fake is an in-memory provider.Provider for tests of the layers above
// providers (package cluster, the CLI). It passes the same conformance suite
// as the real providers. Tests can make it "boot" a node (for example start a
// real agent from the rendered user-data) with the OnCreate hook, and can make
// it fail at chosen points.
package fake

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"

	"github.com/clusterctl/clusterctl/provider"
)

// Provider is the fake. The zero value is not usable; call New.
type Provider struct {
	mu    sync.Mutex
	nodes map[string]*node
	seq   int

	// Prefix and Host are what ClusterNetwork returns.
	Prefix netip.Prefix
	Host   netip.Addr

	// OnCreate, when set, is called after a node is recorded; an error from it
	// fails Create (the node stays, as with a real provider that failed
	// midway). It runs without the provider's lock held.
	OnCreate func(ctx context.Context, id string, spec provider.NodeSpec) error
	// OnDelete, when set, is called before a node is removed.
	OnDelete func(id string)
	// OnStop, when set, is called once Stop has marked a running node
	// stopped (the guest powers off); OnStart, when set, once Start has
	// marked it running again (it boots from the same spec). See power.go.
	OnStop  func(id string)
	OnStart func(ctx context.Context, id string, spec provider.NodeSpec) error
	// FailCreate, when set, makes Create fail before anything is made.
	FailCreate error
	// Calls records each method call, e.g. "Create red", "Delete fake-1".
	Calls []string

	// assign makes Create give each node an address in Prefix itself, as a
	// cloud does (set by NewCloud).
	assign bool
}

type node struct {
	inst provider.Instance
	spec provider.NodeSpec
	cl   string
}

// New returns an empty fake provider on 127.77.0.0/24 with host 127.77.0.1.
func New() *Provider {
	return &Provider{
		nodes:  map[string]*node{},
		Prefix: netip.MustParsePrefix("127.77.0.0/24"),
		Host:   netip.MustParseAddr("127.77.0.1"),
	}
}

// Name implements provider.Provider.
func (p *Provider) Name() string { return "fake" }

func (p *Provider) record(call string) {
	p.Calls = append(p.Calls, call)
}

// CallLog returns a copy of Calls, safe while other goroutines call p.
func (p *Provider) CallLog() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.Calls...)
}

// Create implements provider.Provider.
func (p *Provider) Create(ctx context.Context, spec provider.NodeSpec) (provider.Instance, error) {
	if err := ctx.Err(); err != nil {
		return provider.Instance{}, err
	}
	p.mu.Lock()
	p.record("Create " + spec.Name)
	if p.FailCreate != nil {
		p.mu.Unlock()
		return provider.Instance{}, p.FailCreate
	}
	p.seq++
	id := fmt.Sprintf("fake-%d", p.seq)
	inst := provider.Instance{ID: id, Name: spec.Name, State: provider.StateRunning}
	if spec.Address.IsValid() {
		inst.Address = spec.Address.String()
	} else if p.assign {
		inst.Address = p.freeAddr()
	}
	p.nodes[id] = &node{inst: inst, spec: spec, cl: spec.Cluster}
	hook := p.OnCreate
	p.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, id, spec); err != nil {
			return inst, fmt.Errorf("fake create %q: %w", spec.Name, err)
		}
	}
	return inst, nil
}

// freeAddr returns the first address of Prefix from .10 on that no node
// has. The caller holds p.mu.
func (p *Provider) freeAddr() string {
	used := map[string]bool{}
	for _, n := range p.nodes {
		used[n.inst.Address] = true
	}
	a := p.Prefix.Masked().Addr()
	for i := 0; i < 10; i++ {
		a = a.Next()
	}
	for ; p.Prefix.Contains(a); a = a.Next() {
		if !used[a.String()] && a != p.Host {
			return a.String()
		}
	}
	return ""
}

// Status implements provider.Provider.
func (p *Provider) Status(ctx context.Context, id string) (provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("Status " + id)
	n, ok := p.nodes[id]
	if !ok {
		return provider.Instance{ID: id, State: provider.StateNotFound}, nil
	}
	return n.inst, nil
}

// Delete implements provider.Provider.
func (p *Provider) Delete(ctx context.Context, id string) error {
	p.mu.Lock()
	p.record("Delete " + id)
	_, ok := p.nodes[id]
	delete(p.nodes, id)
	hook := p.OnDelete
	p.mu.Unlock()
	if ok && hook != nil {
		hook(id)
	}
	return nil
}

// List implements provider.Provider.
func (p *Provider) List(ctx context.Context, cluster string) ([]provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("List " + cluster)
	var out []provider.Instance
	for _, n := range p.nodes {
		if n.cl == cluster {
			out = append(out, n.inst)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ConsoleLog implements provider.ConsoleLogger.
func (p *Provider) ConsoleLog(ctx context.Context, id string) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.nodes[id]
	if !ok {
		return nil, fmt.Errorf("console of %q: %w", id, provider.ErrNotFound)
	}
	return []byte(fmt.Sprintf("fake console of %s\nuser-data %d bytes\n", n.spec.Name, len(n.spec.Seed.UserData))), nil
}

// ClusterNetwork implements provider.AddressChooser.
func (p *Provider) ClusterNetwork(ctx context.Context) (netip.Prefix, netip.Addr, error) {
	return p.Prefix, p.Host, nil
}

var (
	_ provider.Provider       = (*Provider)(nil)
	_ provider.ConsoleLogger  = (*Provider)(nil)
	_ provider.AddressChooser = (*Provider)(nil)
)

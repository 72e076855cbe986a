package fake

import (
	"context"
	"fmt"

	"github.com/clusterctl/clusterctl/provider"
)

// Stop implements provider.PowerManager: a running node becomes stopped
// (OnStop runs: its guest powers off); stopping a stopped node succeeds.
// Like the real services it is strict: a node that does not exist is
// provider.ErrNotFound, and one in another state (pending, error) cannot
// be stopped.
func (p *Provider) Stop(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	p.record("Stop " + id)
	n, ok := p.nodes[id]
	if !ok {
		p.mu.Unlock()
		return fmt.Errorf("fake stop %q: %w", id, provider.ErrNotFound)
	}
	switch n.inst.State {
	case provider.StateStopped:
		p.mu.Unlock()
		return nil
	case provider.StateRunning:
	default:
		p.mu.Unlock()
		return fmt.Errorf("fake stop %q: the node is %s, not running", id, n.inst.State)
	}
	n.inst.State = provider.StateStopped
	hook := p.OnStop
	p.mu.Unlock()
	if hook != nil {
		hook(id)
	}
	return nil
}

// Start implements provider.PowerManager: a stopped node runs again
// (OnStart runs with the spec it was created with: it boots from the same
// disk and seed); starting a running node succeeds. A node that does not
// exist is provider.ErrNotFound.
func (p *Provider) Start(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	p.record("Start " + id)
	n, ok := p.nodes[id]
	if !ok {
		p.mu.Unlock()
		return fmt.Errorf("fake start %q: %w", id, provider.ErrNotFound)
	}
	switch n.inst.State {
	case provider.StateRunning:
		p.mu.Unlock()
		return nil
	case provider.StateStopped:
	default:
		p.mu.Unlock()
		return fmt.Errorf("fake start %q: the node is %s, not stopped", id, n.inst.State)
	}
	n.inst.State = provider.StateRunning
	hook, spec := p.OnStart, n.spec
	p.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, id, spec); err != nil {
			return fmt.Errorf("fake start %q: %w", id, err)
		}
	}
	return nil
}

// Vanish makes the node id disappear without Delete's hook having a say
// beyond powering it off (OnStop): a machine lost outside clusterctl
// (terminated in the console, a host that died). Status then reports it
// not found.
func (p *Provider) Vanish(id string) {
	p.mu.Lock()
	_, ok := p.nodes[id]
	delete(p.nodes, id)
	hook := p.OnStop
	p.mu.Unlock()
	if ok && hook != nil {
		hook(id)
	}
}

var _ provider.PowerManager = (*Provider)(nil)

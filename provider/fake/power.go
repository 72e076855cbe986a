package fake

import "context"

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
		_ = hook(context.Background(), id)
	}
}

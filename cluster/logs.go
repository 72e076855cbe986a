package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

// ConsoleLog returns the console output of node name as its provider keeps
// it (provider.ConsoleLogger).
func (m *Manager) ConsoleLog(ctx context.Context, name string) ([]byte, error) {
	st, err := m.Store.Load()
	if err != nil {
		return nil, err
	}
	n := st.Node(name)
	if n == nil {
		return nil, usererr.BadInput("known nodes: "+knownNames(st), "no node %q in cluster %q", name, st.Cluster)
	}
	if n.InstanceID == "" {
		return nil, usererr.BadInput("see `clusterctl status`; remove it with `clusterctl down "+name+"`",
			"node %q has no machine at its provider yet (phase %s), so it has no console", name, n.Phase)
	}
	p, err := m.provider(n.Provider)
	if err != nil {
		return nil, err
	}
	cl, ok := p.(provider.ConsoleLogger)
	if !ok {
		return nil, usererr.BadInput("use `clusterctl logs --agent "+name+"` for the agent's journal over ssh", "provider %s cannot show a console log", n.Provider)
	}
	out, err := cl.ConsoleLog(ctx, n.InstanceID)
	if err != nil {
		return nil, fmt.Errorf("console log of %q: %w", name, err)
	}
	return out, nil
}

// FollowConsole writes the console log of node name to w, then every
// interval whatever is new, until ctx ends (which is not an error).
func (m *Manager) FollowConsole(ctx context.Context, name string, w io.Writer, interval time.Duration) error {
	var prev []byte
	for {
		cur, err := m.ConsoleLog(ctx, name)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := w.Write(newOutput(prev, cur)); err != nil {
			return err
		}
		prev = cur
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// overlapProbe is how much of the end of the previous log is looked for in
// the new one when the new one does not simply extend it.
const overlapProbe = 256

// newOutput returns what cur adds to prev. Some providers return only the
// last part of a console (EC2: 64 KiB), so cur may have lost its start: then
// the end of prev is looked for in cur and what follows it is new. When
// nothing matches (a rotated or reset log) all of cur is new.
func newOutput(prev, cur []byte) []byte {
	if bytes.HasPrefix(cur, prev) {
		return cur[len(prev):]
	}
	probe := prev
	if len(probe) > overlapProbe {
		probe = probe[len(probe)-overlapProbe:]
	}
	if len(probe) > 0 {
		if i := bytes.LastIndex(cur, probe); i >= 0 {
			return cur[i+len(probe):]
		}
	}
	return cur
}

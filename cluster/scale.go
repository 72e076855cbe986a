package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

// ScaleRequest is what `clusterctl scale` asks for.
type ScaleRequest struct {
	// Size is the number of nodes the cluster is to have: every node in
	// state counts, failed ones too (repair replaces those).
	Size int
	// Shrink allows removing the surplus when the cluster has more.
	Shrink bool
	// Provider is up's --provider for the nodes a first scale makes.
	Provider string
}

// maxNodes is the most nodes one cluster may be asked to have.
const maxNodes = 250

// Scale makes the cluster have req.Size nodes: it creates the missing ones
// with picked names, exactly as `up --count` does, and with Shrink removes
// the surplus, the newest first (by the time up recorded them), each
// gracefully as `down` does (leave, then delete). A cluster of the asked
// size is left alone, so scale is idempotent. It holds the command lock
// from the count to the last join or delete, so no other command changes
// the count in between. Without Shrink a surplus is bad input naming the
// nodes that --shrink would remove.
func (m *Manager) Scale(ctx context.Context, req ScaleRequest) ([]Result, error) {
	if req.Size < 0 || req.Size > maxNodes {
		return nil, usererr.BadInput(fmt.Sprintf("give a size between 0 and %d", maxNodes), "size %d is out of range", req.Size)
	}
	unlock, err := m.lockCommand(ctx, "scale")
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := m.Store.Load()
	if err != nil {
		return nil, err
	}
	have := len(st.Nodes)
	switch {
	case have < req.Size:
		m.Report.Note("", fmt.Sprintf("cluster %q has %d node(s); creating %d", m.Cluster, have, req.Size-have))
		return m.Up(ctx, UpRequest{Provider: req.Provider, Count: req.Size - have})
	case have > req.Size:
		surplus := newestNodes(st, have-req.Size)
		if !req.Shrink {
			return nil, usererr.BadInput(fmt.Sprintf("pass --shrink to remove the newest: %s", strings.Join(surplus, ", ")),
				"cluster %q has %d node(s), more than %d", m.Cluster, have, req.Size)
		}
		m.Report.Note("", fmt.Sprintf("cluster %q has %d node(s); removing the newest %d", m.Cluster, have, len(surplus)))
		return m.Down(ctx, DownRequest{Names: surplus})
	}
	m.Report.Note("", fmt.Sprintf("cluster %q has %d node(s) already: nothing to do", m.Cluster, have))
	return []Result{}, nil
}

// newestNodes names the k most recently created nodes of st, the newest
// first; of nodes recorded at the same instant, the one recorded later.
func newestNodes(st *State, k int) []string {
	idx := make([]int, len(st.Nodes))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		if c := st.Nodes[b].CreatedAt.Compare(st.Nodes[a].CreatedAt); c != 0 {
			return c
		}
		return b - a
	})
	names := make([]string, 0, k)
	for _, i := range idx[:k] {
		names = append(names, st.Nodes[i].Name)
	}
	return names
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

// An up interrupted after a node was made but before it enrolled (Ctrl-C,
// a lost connection, a join deadline) leaves the node in state with its
// bootstrap token. `clusterctl up NAME` of such a node resumes: it makes
// nothing, enrols the node over its API and waits for its join, as up
// would have. Its token must not have expired (else: down, then up).

// resumable returns the nodes names names that up can resume, or nil when
// names names none of them; naming both such nodes and others is bad
// input.
func resumable(st *State, names []string) ([]Node, error) {
	var resume []Node
	var others []string
	for _, name := range names {
		n := st.Node(name)
		if n != nil && n.InstanceID != "" && n.EnrolToken != nil && n.EnrolledAt.IsZero() && n.Phase != PhaseJoined {
			resume = append(resume, *n)
		} else {
			others = append(others, name)
		}
	}
	if len(resume) > 0 && len(others) > 0 {
		var r []string
		for _, n := range resume {
			r = append(r, n.Name)
		}
		return nil, usererr.BadInput("run `clusterctl up "+strings.Join(r, " ")+"` and `clusterctl up "+strings.Join(others, " ")+"` apart",
			"up resumes the enrolment of %s, made before; it cannot make %s in the same run", strings.Join(r, ", "), strings.Join(others, ", "))
	}
	return resume, nil
}

// resume enrols the nodes and waits for their joins.
func (m *Manager) resume(ctx context.Context, p provider.Provider, nodes []Node) ([]Result, error) {
	st, err := m.Store.Load()
	if err != nil {
		return nil, err
	}
	// A node may be ready alone only if no other node of the cluster ever
	// joined (it is the first node of a new cluster).
	alone := map[string]bool{}
	if len(nodes) == 1 && !anyJoined(st) {
		alone[nodes[0].Nonce] = true
	}
	creds, err := m.credentials()
	if err != nil {
		return nil, err
	}
	client, err := m.client(creds, nil)
	if err != nil {
		return nil, err
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	w := watch(wctx, client, alone)
	runs := make([]*nodeRun, len(nodes))
	done := make(chan struct{}, len(nodes))
	for i, n := range nodes {
		runs[i] = &nodeRun{pl: &plan{node: n}, start: m.now(), inst: provider.Instance{ID: n.InstanceID, Address: n.Address, PublicAddress: n.PublicAddress},
			res: Result{Name: n.Name, Address: n.Address, InstanceID: n.InstanceID}}
		m.setNode(n.Name, func(n *Node) { n.Phase, n.Error = PhaseBooting, "" })
		m.Report.Phase(n.Name, PhaseBooting, 0)
		go func(r *nodeRun) { m.join(ctx, p, w, r); done <- struct{}{} }(runs[i])
	}
	for range nodes {
		<-done
	}
	results := make([]Result, len(runs))
	var failed []error
	for i, r := range runs {
		results[i] = r.res
		if r.res.Error != "" {
			failed = append(failed, fmt.Errorf("node %q: %s", r.res.Name, r.res.Error))
		}
	}
	if len(failed) > 0 {
		return results, usererr.WithHint(errors.Join(failed...), "the nodes stay in state: run `clusterctl up NAME` again to resume, or remove them with `clusterctl down NAME`")
	}
	return results, nil
}

func anyJoined(st *State) bool {
	for _, n := range st.Nodes {
		if !n.JoinedAt.IsZero() {
			return true
		}
	}
	return false
}

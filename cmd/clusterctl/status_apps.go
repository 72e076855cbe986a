package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// withRole keeps the nodes of application role role (all when "").
func withRole(nodes []cluster.NodeStatus, role string) []cluster.NodeStatus {
	if role == "" {
		return nodes
	}
	out := []cluster.NodeStatus{}
	for _, n := range nodes {
		if n.Role == role {
			out = append(out, n)
		}
	}
	return out
}

// handlerFailures asks a node for its failed event handler runs; a node
// that does not answer is a note on stderr, not a failure of status.
func handlerFailures(ctx context.Context, g *globals, m *cluster.Manager) []nodeapi.HandlerFailure {
	_, fs, err := m.HandlerFailures(ctx)
	if err != nil {
		fmt.Fprintln(g.stderr, "note:", err)
	}
	return fs
}

func printHandlerFailures(g *globals, fs []nodeapi.HandlerFailure) {
	for _, f := range fs {
		fmt.Fprintf(g.stdout, "handler %s on %s failed twice for %s of %s at %s: %s\n",
			f.Run, f.Node, f.Event, strings.Join(f.Members, ","), f.At.Format(time.RFC3339), f.Error)
	}
}

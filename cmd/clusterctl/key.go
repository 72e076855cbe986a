package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/cluster"
)

func newKey(g *globals) *cobra.Command {
	key := &cobra.Command{
		Use:   "key",
		Short: "Manage the cluster's gossip encryption key",
		Args:  inputArgs(cobra.NoArgs),
	}
	var (
		out   string
		evict bool
	)
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Give the running cluster a new gossip key",
		Long: `rotate makes a new 32-byte gossip key and, through each node's own API (one
node at a time; nothing that comes over gossip can change a key), installs
it on every node, makes every node encrypt with it, and removes every other
key, so that afterwards each node holds exactly the new key. The cluster's
state keeps every key still installed on any node, the one new nodes get
first, and is updated after each step. The old keys are removed only when
every alive node took the new one. Nodes that did not take part are named
at the end (exit 1): run key rotate again when they are back, or remove them
with clusterctl down NAME. A node that holds only the old key cannot join
once it is removed. The key is never printed.

Gossip members that the state does not know (another name, or a recorded
name with another nonce) stop the rotation before anything changes, with
their names and addresses (exit 1). With --evict they get no new key and
are cut off from the cluster once the old key is gone.`,
		Args: inputArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := checkFormat(out)
			if err != nil {
				return err
			}
			m, err := g.manager(&lineReporter{w: g.stderr})
			if err != nil {
				return err
			}
			r, rerr := m.RotateKey(cmd.Context(), evict)
			if f != "table" {
				if err := emit(g.stdout, f, struct {
					Schema string `json:"schema"`
					cluster.KeyRotation
				}{SchemaVersion, r}); err != nil {
					return err
				}
				return rerr
			}
			if rerr == nil {
				fmt.Fprintf(g.stdout, "the gossip key of cluster %q was rotated on %d nodes; every other key is removed\n", m.Cluster, r.Members)
				for _, u := range r.Unknown {
					fmt.Fprintf(g.stdout, "evicted %s at %s: it got no new key\n", u.Name, u.Addr)
				}
			}
			return rerr
		},
	}
	rotate.Flags().StringVarP(&out, "output", "o", "table", "output format: table, json or yaml")
	rotate.Flags().BoolVar(&evict, "evict", false, "cut off gossip members the state does not know (they get no new key)")
	_ = rotate.RegisterFlagCompletionFunc("output", completeFormats)
	key.AddCommand(rotate)
	return key
}

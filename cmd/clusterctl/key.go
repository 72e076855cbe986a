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
	var out string
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Give the running cluster a new gossip key",
		Long: `rotate makes a new 32-byte gossip key, installs it on every member through
the agents' API, makes every member encrypt with it, and removes the old
key. The cluster's state keeps every key still installed on any node, the
one new nodes get first, and is updated after each step. The old key is
removed only when every alive member took the new one. Nodes that did not
take part are named at the end (exit 1): run key rotate again when they are
back, or remove them with clusterctl down NAME. A node that holds only the
old key cannot join once it is removed. The key is never printed.`,
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
			r, rerr := m.RotateKey(cmd.Context())
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
				fmt.Fprintf(g.stdout, "the gossip key of cluster %q was rotated on %d members; the old key is removed\n", m.Cluster, r.Members)
			}
			return rerr
		},
	}
	rotate.Flags().StringVarP(&out, "output", "o", "table", "output format: table, json or yaml")
	_ = rotate.RegisterFlagCompletionFunc("output", completeFormats)
	key.AddCommand(rotate)
	return key
}

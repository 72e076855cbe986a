package main

import (
	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/cluster"
)

func newDown(g *globals) *cobra.Command {
	var (
		all bool
		out string
	)
	cmd := &cobra.Command{
		Use:   "down NAME... | --all",
		Short: "Make nodes leave the cluster gracefully, then delete them",
		Long: `down asks each node's agent to leave the gossip cluster, waits for the leave
to be seen (timeouts.leave), deletes the node at its provider and forgets it.
With --all every node goes, and the cluster's state directory is removed.`,
		Example: `  clusterctl down blue
  clusterctl down --all`,
		ValidArgsFunction: completeNodes(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runNodes(out, func(m *cluster.Manager) ([]cluster.Result, error) {
				return m.Down(cmd.Context(), args, all)
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "remove every node of the cluster and its state")
	cmd.Flags().StringVarP(&out, "output", "o", "table", "output format: table, json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("output", completeFormats)
	return cmd
}

package main

import (
	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/cluster"
)

func newDown(g *globals) *cobra.Command {
	var (
		all  bool
		out  string
		prov string
	)
	cmd := &cobra.Command{
		Use:   "down NAME... | --all",
		Short: "Make nodes leave the cluster gracefully, then delete them",
		Long: `down asks each node's agent to leave the gossip cluster, waits for the leave
to be seen (timeouts.leave), deletes the node at its provider and forgets it.
Nodes are deleted a few at a time. With --all every node goes, and so does
every machine the provider lists for the cluster that clusterctl's state
does not know (strays, each named before it is deleted); then the
provider's cluster-wide resources (security group, bucket, container) are
removed, and the cluster's state directory. Without a state file, --all
looks at --provider (default: the config's provider).`,
		Example: `  clusterctl down blue
  clusterctl down --all`,
		ValidArgsFunction: completeNodes(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runNodes(out, func(m *cluster.Manager) ([]cluster.Result, error) {
				return m.Down(cmd.Context(), cluster.DownRequest{Names: args, All: all, Provider: prov})
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "remove every node of the cluster, its strays, its cluster-wide resources and its state")
	cmd.Flags().StringVarP(&prov, "provider", "p", "", "provider to look at for a cluster without state (default: the config's)")
	_ = cmd.RegisterFlagCompletionFunc("provider", completeProviders)
	cmd.Flags().StringVarP(&out, "output", "o", "table", "output format: table, json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("output", completeFormats)
	return cmd
}

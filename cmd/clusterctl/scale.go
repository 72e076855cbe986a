package main

import (
	"strconv"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/internal/usererr"
)

func newScale(g *globals) *cobra.Command {
	var (
		shrink bool
		prov   string
		out    string
	)
	cmd := &cobra.Command{
		Use:   "scale N",
		Short: "Make the cluster have N nodes",
		Long: `scale makes the cluster have N nodes (every node in state counts, failed
ones too). It creates the missing ones with picked names, as up --count
does, and waits for their joins. With --shrink it removes the surplus, the
newest first, each gracefully as down does (leave, then delete); without
it, a surplus is bad input naming the nodes --shrink would remove. A
cluster that has N nodes is left alone, so running scale twice changes
nothing the second time.`,
		Example: `  clusterctl scale 3
  clusterctl scale 2 --shrink`,
		Args: inputArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[0])
			if err != nil {
				return usererr.BadInput("give the number of nodes, like `clusterctl scale 3`", "size %q is not a number", args[0])
			}
			return g.runNodes(out, func(m *cluster.Manager) ([]cluster.Result, error) {
				return m.Scale(cmd.Context(), cluster.ScaleRequest{Size: n, Shrink: shrink, Provider: prov})
			})
		},
	}
	cmd.Flags().BoolVar(&shrink, "shrink", false, "remove the newest nodes when the cluster has more than N")
	cmd.Flags().StringVarP(&prov, "provider", "p", "", "provider to create nodes on (default: the cluster's, else the config's)")
	cmd.Flags().StringVarP(&out, "output", "o", "table", "output format: table, json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("provider", completeProviders)
	_ = cmd.RegisterFlagCompletionFunc("output", completeFormats)
	return cmd
}

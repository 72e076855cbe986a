package main

import (
	"github.com/spf13/cobra"
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
			f, err := checkFormat(out)
			if err != nil {
				return err
			}
			rep, done := reporter(g.stderr, false)
			m, err := g.manager(rep)
			if err != nil {
				done()
				return err
			}
			results, err := m.Down(cmd.Context(), args, all)
			done()
			if results != nil {
				if perr := printResults(g, f, m.Cluster, results); perr != nil && err == nil {
					err = perr
				}
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "remove every node of the cluster and its state")
	cmd.Flags().StringVarP(&out, "output", "o", "table", "output format: table, json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("output", completeFormats)
	return cmd
}

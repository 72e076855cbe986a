package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/cluster"
)

func newStart(g *globals) *cobra.Command {
	var (
		all         bool
		out         string
		joinTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "start NAME... | --all",
		Short: "Start stopped nodes and wait until their agents are back",
		Long: `start asks the provider to start each named node's stopped machine and
returns when a member of the cluster sees its agent alive again with the
same name and nonce, showing progress as up does. It records the address
the provider reports after the start (EC2 gives a started instance a new
public IPv4), so the node's API stays reachable. After stop --all, start
--all re-forms the cluster: each agent rejoins from what it remembered.`,
		Example: `  clusterctl start blue
  clusterctl start --all`,
		ValidArgsFunction: completeNodes(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runNodes(out, func(m *cluster.Manager) ([]cluster.Result, error) {
				if cmd.Flags().Changed("join-timeout") {
					m.Cfg.Timeouts.Join = joinTimeout
				}
				return m.Start(cmd.Context(), cluster.PowerRequest{Names: args, All: all})
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "start every node of the cluster")
	cmd.Flags().DurationVar(&joinTimeout, "join-timeout", cluster.DefaultTimeouts.Join, "deadline for a started node's agent to be back")
	cmd.Flags().StringVarP(&out, "output", "o", "table", "output format: table, json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("output", completeFormats)
	return cmd
}

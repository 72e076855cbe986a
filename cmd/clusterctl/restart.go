package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/cluster"
)

func newRestart(g *globals) *cobra.Command {
	var (
		out         string
		joinTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "restart NAME...",
		Short: "Stop nodes, then start them again",
		Long: `restart is stop, then start, of the named nodes under one hold of the
cluster's lock: it returns when each node's agent is back with the same
name and nonce.`,
		Example:           `  clusterctl restart blue`,
		Args:              inputArgs(cobra.MinimumNArgs(1)),
		ValidArgsFunction: completeNodes(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runNodes(out, func(m *cluster.Manager) ([]cluster.Result, error) {
				if cmd.Flags().Changed("join-timeout") {
					m.Cfg.Timeouts.Join = joinTimeout
				}
				return m.Restart(cmd.Context(), args)
			})
		},
	}
	cmd.Flags().DurationVar(&joinTimeout, "join-timeout", cluster.DefaultTimeouts.Join, "deadline for a started node's agent to be back")
	cmd.Flags().StringVarP(&out, "output", "o", "table", "output format: table, json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("output", completeFormats)
	return cmd
}

package main

import (
	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/cluster"
)

func newStop(g *globals) *cobra.Command {
	var (
		all bool
		out string
	)
	cmd := &cobra.Command{
		Use:   "stop NAME... | --all",
		Short: "Stop nodes' machines, keeping their disks and identities",
		Long: `stop asks the provider to stop each named node's machine (EC2
StopInstances, Nova os-stop, the VirtualBox ACPI power button, QEMU's ACPI
power-down) and returns once it is stopped. Stopping is not leaving: the
other nodes see the node fail and keep its /etc/hosts line, and it rejoins
by itself when started (clusterctl start). status shows it stopped. A
provider that cannot stop machines is bad input (exit 2).`,
		Example: `  clusterctl stop blue
  clusterctl stop --all`,
		ValidArgsFunction: completeNodes(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runNodes(out, func(m *cluster.Manager) ([]cluster.Result, error) {
				return m.Stop(cmd.Context(), cluster.PowerRequest{Names: args, All: all})
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "stop every node of the cluster")
	cmd.Flags().StringVarP(&out, "output", "o", "table", "output format: table, json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("output", completeFormats)
	return cmd
}

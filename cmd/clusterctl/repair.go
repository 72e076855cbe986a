package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/cluster"
)

func newRepair(g *globals) *cobra.Command {
	var (
		dryRun    bool
		failedFor time.Duration
		out       string
	)
	cmd := &cobra.Command{
		Use:   "repair [NAME...]",
		Short: "Re-create nodes whose machines are gone or whose agents failed",
		Long: `repair re-creates the named nodes (every node when none is named) that are
gone or broken: the provider reports the machine terminated, in error or
not found; or the machine runs but gossip has held the node failed for at
least --failed-for. The gossip view tells how a member is, not since when:
the time counts from when clusterctl status or repair first saw it failed
(recorded in the state). A stopped node is left for clusterctl start, and
nothing is replaced while the provider says running and gossip says
alive. A replacement keeps the node's name and gets a new nonce: what is
left of the old machine is deleted first, then the node is made as up
makes it, and repair waits for its join. --dry-run prints the decision for
each node and why, and changes nothing.`,
		Example: `  clusterctl repair --dry-run
  clusterctl repair blue --failed-for 2m`,
		ValidArgsFunction: completeNodes(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := checkFormat(out)
			if err != nil {
				return err
			}
			rep, done := reporter(g.stderr)
			m, err := g.manager(rep)
			if err != nil {
				done()
				return err
			}
			r, err := m.Repair(cmd.Context(), cluster.RepairRequest{Names: args, DryRun: dryRun, FailedFor: failedFor})
			done()
			if f != "table" {
				if perr := emit(g.stdout, f, struct {
					Schema  string `json:"schema"`
					Cluster string `json:"cluster"`
					DryRun  bool   `json:"dry_run"`
					cluster.RepairReport
				}{SchemaVersion, m.Cluster, dryRun, r}); perr != nil && err == nil {
					err = perr
				}
				return err
			}
			if len(r.Actions) > 0 {
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tACTION\tREASON")
				for _, a := range r.Actions {
					action := "keep"
					if a.Replace && dryRun {
						action = "would replace"
					} else if a.Replace {
						action = "replace"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Name, action, a.Reason)
				}
				if perr := tw.Flush(); perr != nil && err == nil {
					err = perr
				}
			}
			if len(r.Nodes) > 0 {
				fmt.Fprintln(g.stdout)
				if perr := printResults(g, f, m.Cluster, r.Nodes); perr != nil && err == nil {
					err = perr
				}
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be replaced and why; change nothing")
	cmd.Flags().DurationVar(&failedFor, "failed-for", cluster.DefaultFailedFor, "how long gossip must have held a running node failed before it is replaced")
	cmd.Flags().StringVarP(&out, "output", "o", "table", "output format: table, json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("output", completeFormats)
	return cmd
}

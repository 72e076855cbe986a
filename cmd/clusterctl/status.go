package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/nodeapi"
)

func newStatus(g *globals) *cobra.Command {
	var out, prov, role string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each node's provider state and gossip state in one table",
		Long: `status merges three views: clusterctl's state, the provider's view of each
machine, and the gossip view (alive, suspect, leaving, failed, left,
never-joined, not-seen, stale) that the first node whose API answers
reports; "unreachable" when no node's API (api.port, 7947) answers within
one connect timeout. A node that view does not report is asked about at
its own API and at a second member (a few at a time, one connect timeout
each) before it is called not-seen; a member any of them counts as joined
is alive. -v says whose views were shown. Machines the provider
lists for the cluster that the state does not know are shown as strays,
also when there is no state: then --provider (default: the config's
provider) says where to look; gossip members the state does not know are
shown with phase unknown and their address.`,
		Args: inputArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := checkFormat(out)
			if err != nil {
				return err
			}
			rep := &lineReporter{w: g.stderr}
			m, err := g.manager(rep)
			if err != nil {
				return err
			}
			r, err := m.Status(cmd.Context(), prov)
			if err != nil {
				return err
			}
			r.Nodes = withRole(r.Nodes, role)
			doc := statusDoc{Schema: SchemaVersion, StatusReport: r}
			if g.verbose {
				doc.HandlerFailures = handlerFailures(cmd.Context(), g, m)
			}
			if f != "table" {
				return emit(g.stdout, f, doc)
			}
			if err := printStatus(g, r); err != nil {
				return err
			}
			printHandlerFailures(g, doc.HandlerFailures)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "table", "output format: table, json or yaml")
	cmd.Flags().StringVar(&role, "role", "", "show only the nodes of this application role")
	cmd.Flags().StringVarP(&prov, "provider", "p", "", "provider to list the cluster's machines at when it has no state (default: the config's)")
	_ = cmd.RegisterFlagCompletionFunc("provider", completeProviders)
	_ = cmd.RegisterFlagCompletionFunc("output", completeFormats)
	return cmd
}

// statusDoc is the machine-readable form of status.
type statusDoc struct {
	Schema string `json:"schema"`
	cluster.StatusReport
	// HandlerFailures (with -v) are the failed event handler runs that the
	// answering node reports.
	HandlerFailures []nodeapi.HandlerFailure `json:"handler_failures,omitempty"`
}

func printStatus(g *globals, r cluster.StatusReport) error {
	if len(r.Nodes) == 0 {
		fmt.Fprintf(g.stdout, "cluster %q has no nodes\n", r.Cluster) // %q escapes
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tPROVIDER\tINSTANCE\tADDRESS\tPHASE\tMACHINE\tGOSSIP\tHOSTNAME\tDETAIL")
	for _, n := range r.Nodes {
		row(tw, n.Name, dash(n.Role), n.Provider, dash(n.InstanceID), dash(n.Address), string(n.Phase), n.ProviderState, string(n.Gossip), dash(n.Hostname), dash(n.Detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range r.Nodes {
		if n.Error != "" {
			fmt.Fprintf(g.stdout, "%s: %s\n", printable(n.Name), printable(n.Error))
		}
	}
	if g.verbose {
		fmt.Fprintln(g.stdout, viewLine(r.Views))
	}
	return nil
}

// viewLine says whose gossip view the GOSSIP column shows.
func viewLine(views []string) string {
	switch len(views) {
	case 0:
		return "gossip view: none (no node's API answered)"
	case 1:
		return "gossip view: " + views[0] + "'s"
	default:
		return "gossip view: " + views[0] + "'s, merged with the views of " + strings.Join(views[1:], ", ") + " (asked about the nodes " + views[0] + "'s did not report)"
	}
}

package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/cluster"
)

func newUp(g *globals) *cobra.Command {
	var (
		prov          string
		count         int
		role          string
		out           string
		createTimeout time.Duration
		joinTimeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "up [NAME...]",
		Short: "Create nodes and wait until their agents have joined the cluster",
		Long: `up creates the named nodes (or --count nodes with picked names: red, blue,
green, ...) and returns when each node's agent has joined the gossip cluster
with the nonce rendered for it. Progress goes to stderr; the result to stdout.`,
		Example: `  clusterctl up --provider qemu red blue
  clusterctl up --count 3 -o json
  clusterctl up --role worker red blue`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runNodes(out, func(m *cluster.Manager) ([]cluster.Result, error) {
				if cmd.Flags().Changed("create-timeout") {
					m.Cfg.Timeouts.Create = createTimeout
				}
				if cmd.Flags().Changed("join-timeout") {
					m.Cfg.Timeouts.Join = joinTimeout
				}
				return m.Up(cmd.Context(), cluster.UpRequest{Provider: prov, Names: args, Count: count, Role: role})
			})
		},
	}
	cmd.Flags().StringVarP(&prov, "provider", "p", "", "provider to create the nodes on (default: the cluster's, else the config's)")
	cmd.Flags().IntVarP(&count, "count", "n", 0, "how many nodes to create when no NAME is given (default 1)")
	cmd.Flags().StringVar(&role, "role", "", "the nodes' application role, a DNS label such as worker (default: node.role); see docs/applications.md")
	cmd.Flags().StringVarP(&out, "output", "o", "table", "output format: table, json or yaml")
	cmd.Flags().DurationVar(&createTimeout, "create-timeout", cluster.DefaultTimeouts.Create, "deadline for the provider to create a node")
	cmd.Flags().DurationVar(&joinTimeout, "join-timeout", cluster.DefaultTimeouts.Join, "deadline for a created node's agent to join")
	_ = cmd.RegisterFlagCompletionFunc("provider", completeProviders)
	_ = cmd.RegisterFlagCompletionFunc("output", completeFormats)
	return cmd
}

// resultDoc is the machine-readable result of up and down.
type resultDoc struct {
	Schema  string           `json:"schema"`
	Cluster string           `json:"cluster"`
	Nodes   []cluster.Result `json:"nodes"`
}

// runNodes is the body of up and down: progress to stderr while op runs,
// then the per-node results to stdout in the format asked for.
func (g *globals) runNodes(out string, op func(*cluster.Manager) ([]cluster.Result, error)) error {
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
	results, err := op(m)
	done()
	if results != nil {
		if perr := printResults(g, f, m.Cluster, results); perr != nil && err == nil {
			err = perr
		}
	}
	return err
}

func printResults(g *globals, f format, clusterName string, results []cluster.Result) error {
	if f != "table" {
		return emit(g.stdout, f, resultDoc{Schema: SchemaVersion, Cluster: clusterName, Nodes: results})
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tINSTANCE\tPHASE\tSECONDS")
	for _, r := range results {
		row(tw, r.Name, dash(r.Address), dash(r.InstanceID), string(r.Phase), fmt.Sprintf("%.1f", r.Seconds))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range results {
		if r.ConsoleTail != "" {
			lines := strings.Split(r.ConsoleTail, "\n")
			for i, l := range lines {
				lines[i] = printable(strings.TrimSuffix(l, "\r"))
			}
			fmt.Fprintf(g.stdout, "\n--- console of %s (last lines) ---\n%s\n--- end of console ---\n", printable(r.Name), strings.Join(lines, "\n"))
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

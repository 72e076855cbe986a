package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newRender(g *globals) *cobra.Command {
	var (
		prov string
		dir  string
		out  string
	)
	cmd := &cobra.Command{
		Use:   "render NAME",
		Short: "Dry run: write what up would send to a new node (user-data, meta-data, network-config, seed.iso)",
		Long: `render renders the cloud-init documents for a new node called NAME exactly as
up would, and writes them to --dir (mode 0600: the agent config in user-data
holds the cluster's gossip key). For seed-ISO providers it also writes seed.iso.
Nothing is recorded and nothing is created at the provider.`,
		Args: inputArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := checkFormat(out)
			if err != nil {
				return err
			}
			m, err := g.manager(nil)
			if err != nil {
				return err
			}
			r, err := m.Render(cmd.Context(), prov, args[0], dir)
			if err != nil {
				return err
			}
			if f != "table" {
				return emit(g.stdout, f, struct {
					Schema string `json:"schema"`
					any
				}{SchemaVersion, r})
			}
			for _, p := range r.Files {
				fmt.Fprintln(g.stdout, p)
			}
			if len(r.Commands) > 0 {
				fmt.Fprintln(g.stdout, "\n# what up would run:")
				for _, c := range r.Commands {
					fmt.Fprintln(g.stdout, c)
				}
			}
			if r.NewKey {
				fmt.Fprintln(g.stderr, "note: the cluster has no gossip key and CA yet; these files hold a throw-away key and node certificate, and up will make the real ones")
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&prov, "provider", "p", "", "provider to render for (default: the cluster's, else the config's)")
	cmd.Flags().StringVar(&dir, "dir", ".", "directory to write the files into")
	cmd.Flags().StringVarP(&out, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

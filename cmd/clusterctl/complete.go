package main

import (
	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/provider"
)

func completeProviders(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return provider.Names(), cobra.ShellCompDirectiveNoFileComp
}

func completeFormats(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return []string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp
}

// completeNodes completes the names of the cluster's nodes from its state.
func completeNodes(g *globals) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		m, err := g.manager(nil)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		st, err := m.Store.Load()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, n := range st.Nodes {
			names = append(names, n.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeFirstNode completes a node name as the first argument only (ssh,
// logs: what follows is a command or nothing).
func completeFirstNode(g *globals) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	nodes := completeNodes(g)
	return func(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveDefault
		}
		return nodes(cmd, args, prefix)
	}
}

// completeNodePaths offers "NAME:" for each node (cp), and local files.
func completeNodePaths(g *globals) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	nodes := completeNodes(g)
	return func(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
		if len(args) >= 2 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names, _ := nodes(cmd, args, prefix)
		out := make([]string, 0, len(names))
		for _, n := range names {
			out = append(out, n+":")
		}
		return out, cobra.ShellCompDirectiveNoSpace
	}
}

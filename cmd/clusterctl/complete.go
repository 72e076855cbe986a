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

package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newVersion(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print clusterctl's version",
		Args:  inputArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			rev := ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						rev = " (" + s.Value + ")"
					}
				}
			}
			_, err := fmt.Fprintf(g.stdout, "clusterctl %s%s %s/%s\n", version, rev, runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}

package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/internal/dnslabel"
	"github.com/clusterctl/clusterctl/internal/sshclient"
	"github.com/clusterctl/clusterctl/internal/usererr"
)

func newCp(g *globals) *cobra.Command {
	var recursive bool
	cmd := &cobra.Command{
		Use:   "cp [-r] SRC NAME:DST | cp [-r] NAME:SRC DST",
		Short: "Copy files to or from a node over SSH (scp)",
		Long: `cp copies between this machine and one node with scp, with the same key,
user, address and pinned host key as clusterctl ssh. Exactly one side names a
node as NAME:PATH (a relative PATH is under the user's home on the node). A
local path that contains ':' can be written as ./PATH.`,
		Example: `  clusterctl cp app.conf red:/tmp/app.conf
  clusterctl cp -r red:/var/log/journal ./red-journal`,
		Args:              inputArgs(cobra.ExactArgs(2)),
		ValidArgsFunction: completeNodePaths(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, src, dst, err := cpSides(args[0], args[1])
			if err != nil {
				return err
			}
			m, err := g.manager(nil)
			if err != nil {
				return err
			}
			client, err := cluster.SSHClient()
			if err != nil {
				return err
			}
			targets, err := m.SSHTargets(cmd.Context(), []string{name}, false)
			if err != nil {
				return err
			}
			t := targets[0]
			if src.remote {
				src.path = t.Remote(src.path)
			} else {
				dst.path = t.Remote(dst.path)
			}
			code, err := client.Copy(cmd.Context(), t, recursive, src.path, dst.path, sshclient.IO{Stdout: g.stdout, Stderr: g.stderr})
			return exitWith(code, explainSSH(err))
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "copy directories recursively")
	return cmd
}

type cpSide struct {
	remote bool
	node   string
	path   string
}

// parseSide reads NAME:PATH (NAME a valid node name, no '/' before the
// colon) as a node's path, anything else as a local path.
func parseSide(s string) cpSide {
	name, path, ok := strings.Cut(s, ":")
	if ok && dnslabel.Valid(name) {
		return cpSide{remote: true, node: name, path: path}
	}
	return cpSide{path: s}
}

// cpSides checks that exactly one side names a node.
func cpSides(a, b string) (node string, src, dst cpSide, err error) {
	src, dst = parseSide(a), parseSide(b)
	fix := "name the node on exactly one side: `clusterctl cp FILE NAME:PATH` or `clusterctl cp NAME:PATH FILE`"
	switch {
	case src.remote && dst.remote:
		return "", src, dst, usererr.BadInput(fix, "both %q and %q name a node; cp copies between this machine and one node", a, b)
	case !src.remote && !dst.remote:
		return "", src, dst, usererr.BadInput(fix, "neither %q nor %q names a node (NAME:PATH)", a, b)
	case src.remote:
		return src.node, src, dst, nil
	}
	return dst.node, src, dst, nil
}

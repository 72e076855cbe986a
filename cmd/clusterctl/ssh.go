package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/internal/sshclient"
	"github.com/clusterctl/clusterctl/internal/usererr"
)

// sshParallel bounds how many nodes `ssh --all` reaches at once.
const sshParallel = 8

// statusError ends the CLI with code after printing err (when not nil):
// the exit status of a remote command passes through it.
type statusError struct {
	code int
	err  error
}

func (e *statusError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *statusError) Unwrap() error { return e.err }

// stdin is what a remote command reads; a variable so tests can feed it.
var stdin io.Reader = os.Stdin

const hostKeyHint = "clusterctl pinned this node's host key when it made the node and never trusts another one. " +
	"If the node was made again outside clusterctl, or its key was replaced on purpose, make it again with `clusterctl down NAME` and `clusterctl up NAME`"

func newSSH(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "ssh NAME [-- COMMAND...] | --all -- COMMAND...",
		Short: "Log in to a node, or run a command on one or every node, over SSH",
		Long: `ssh runs this machine's OpenSSH client with the cluster's key (made by up, in
the state directory) as the image's default user (ssh.user), against the host
key clusterctl made for the node before it booted: a machine presenting any
other key is refused. It connects to the node's cluster address on local
providers and to its public address on clouds.

Without a command it opens a login shell. With one, the command's exit status
is clusterctl's. With --all the command runs on every joined node (8 at a
time), each output line prefixed with the node's name; the exit status is the
highest one (255: ssh itself failed).`,
		Example: `  clusterctl ssh red
  clusterctl ssh red -- systemctl status clusterctl-agent
  clusterctl ssh --all -- uptime`,
		ValidArgsFunction: completeFirstNode(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, command, err := sshArgs(cmd, args, all)
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
			if all {
				targets, err := m.SSHTargets(cmd.Context(), nil, true)
				if err != nil {
					return err
				}
				results := client.RunAll(cmd.Context(), targets, command, sshParallel, g.stdout, g.stderr)
				var errs []error
				for _, r := range results {
					if r.Err != nil {
						errs = append(errs, explainSSH(r.Err))
					}
				}
				return exitWith(sshclient.Worst(results), errors.Join(errs...))
			}
			targets, err := m.SSHTargets(cmd.Context(), []string{name}, false)
			if err != nil {
				return err
			}
			code, err := client.Run(cmd.Context(), targets[0], command, sshclient.IO{Stdin: stdin, Stdout: g.stdout, Stderr: g.stderr})
			return exitWith(code, explainSSH(err))
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "run the command on every joined node")
	cmd.Flags().SetInterspersed(false) // flags after NAME belong to the command
	return cmd
}

// sshArgs splits NAME and the command, and checks they fit --all.
func sshArgs(cmd *cobra.Command, args []string, all bool) (string, []string, error) {
	usage := "see `clusterctl ssh --help`"
	if all {
		if dash := cmd.ArgsLenAtDash(); dash > 0 || (dash < 0 && len(args) > 0) {
			return "", nil, usererr.BadInput("use `clusterctl ssh --all -- COMMAND`", "--all was given with a node name")
		}
		if len(args) == 0 {
			return "", nil, usererr.BadInput("use `clusterctl ssh --all -- COMMAND`", "--all needs a command to run")
		}
		return "", args, nil
	}
	if len(args) == 0 || cmd.ArgsLenAtDash() == 0 {
		return "", nil, usererr.BadInput(usage, "name the node to log in to")
	}
	command := args[1:]
	// Flag parsing stops at NAME, so a "--" after it is still here.
	if len(command) > 0 && command[0] == "--" {
		command = command[1:]
	}
	return args[0], command, nil
}

// explainSSH turns ssh's host-key refusal into an error with a hint.
func explainSSH(err error) error {
	var hk *sshclient.HostKeyError
	if errors.As(err, &hk) {
		return usererr.WithHint(err, hostKeyHint)
	}
	return err
}

// exitWith ends the command with code, showing err when there is one.
func exitWith(code int, err error) error {
	if code == 0 && err == nil {
		return nil
	}
	return &statusError{code: code, err: err}
}

package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/cloudinit"
	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/internal/sshclient"
)

// followInterval is how often logs --follow asks the provider again.
const followInterval = 2 * time.Second

func newLogs(g *globals) *cobra.Command {
	var follow, agentLog bool
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a node's console log, or its agent's journal (--agent)",
		Long: `logs prints the node's console log as its provider keeps it (QEMU and
VirtualBox: the serial log; EC2 and OpenStack: the console output API). With
--follow it keeps printing what is new until interrupted. With --agent it
prints the journal of clusterctl-agent.service over ssh instead.`,
		Example: `  clusterctl logs red
  clusterctl logs red --agent --follow`,
		Args:              inputArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: completeFirstNode(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := g.manager(nil)
			if err != nil {
				return err
			}
			if agentLog {
				return agentJournal(cmd, m, args[0], follow, g)
			}
			if follow {
				return m.FollowConsole(cmd.Context(), args[0], g.stdout, followInterval)
			}
			out, err := m.ConsoleLog(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			_, err = g.stdout.Write(out)
			return err
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output")
	cmd.Flags().BoolVar(&agentLog, "agent", false, "print the agent's journal (over ssh) instead of the console")
	return cmd
}

// agentJournalCommand is the remote command of logs --agent: journalctl
// through sudo when the user may (cloud images' default user may), else
// as the user (members of adm read the system journal).
func agentJournalCommand(follow bool) string {
	j := "journalctl --no-pager -u " + cloudinit.AgentUnitName
	if follow {
		j += " -f"
	}
	return "if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then exec sudo -n " + j + "; else exec " + j + "; fi"
}

func agentJournal(cmd *cobra.Command, m *cluster.Manager, name string, follow bool, g *globals) error {
	client, err := cluster.SSHClient()
	if err != nil {
		return err
	}
	targets, err := m.SSHTargets(cmd.Context(), []string{name}, false)
	if err != nil {
		return err
	}
	code, err := client.Run(cmd.Context(), targets[0], []string{agentJournalCommand(follow)}, sshclient.IO{Stdout: g.stdout, Stderr: g.stderr})
	return exitWith(code, explainSSH(err))
}

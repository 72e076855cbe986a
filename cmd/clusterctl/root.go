package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/internal/usererr"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1 // the operation failed
	exitInput  = 2 // bad input: nothing was done
)

// globals are the flags every command has.
type globals struct {
	cluster string
	config  string
	verbose bool
	profile string
	region  string
	// lockTimeout is --lock-timeout; command the running command's path
	// ("clusterctl up"), named in the cluster's lock while it holds it.
	lockTimeout time.Duration
	command     string
	stdout      io.Writer
	stderr      io.Writer
}

// defaultConfig is the config file read when --config is not given.
const defaultConfig = "cluster.yaml"

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "clusterctl",
		Short: "Provision cluster nodes and know they are ready when their agent joins the gossip cluster",
		Long: `clusterctl makes cluster nodes on a provider (qemu, virtualbox, ec2,
openstack) with cloud-init, and returns when each node's agent has joined the
cluster's encrypted gossip membership — never by polling SSH.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.PersistentFlags().StringVar(&g.cluster, "cluster", "", "cluster name (default: the config's cluster:, else \"default\")")
	root.PersistentFlags().StringVar(&g.config, "config", "", "cluster config file (default: ./cluster.yaml if it exists, or $CLUSTERCTL_CONFIG)")
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "log details to stderr")
	root.PersistentFlags().StringVar(&g.profile, "profile", "", "cloud credentials profile (ec2: shared config profile); overrides the config")
	root.PersistentFlags().StringVar(&g.region, "region", "", "cloud region (ec2, openstack); overrides the config")
	root.PersistentFlags().DurationVar(&g.lockTimeout, "lock-timeout", cluster.DefaultLockTimeout,
		"how long a command that changes the cluster (up, down, stop, start, restart, scale, repair, key rotate) waits for another one on it; 0 fails at once")
	root.PersistentPreRun = func(cmd *cobra.Command, _ []string) { g.command = cmd.CommandPath() }
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usererr.BadInput("see `"+c.CommandPath()+" --help`", "%w", err)
	})
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.AddCommand(newUp(g), newDown(g), newStatus(g), newRender(g), newKey(g), newVersion(g))
	root.AddCommand(newSSH(g), newCp(g), newLogs(g))
	root.AddCommand(newStop(g), newStart(g), newRestart(g), newScale(g), newRepair(g))
	return root
}

// run executes the CLI and returns the exit status. Errors are shown to the
// user here and nowhere else.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var status *statusError // a remote command's exit status (ssh.go)
	if errors.As(err, &status) {
		if status.err != nil {
			printError(stderr, status.err)
		}
		return status.code
	}
	if strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") {
		err = usererr.BadInput("see `clusterctl --help`", "%w", err)
	}
	printError(stderr, err)
	var in *usererr.InputError
	if errors.As(err, &in) {
		return exitInput
	}
	return exitFailed
}

// printError writes err for a person: one "error:" line per problem, each
// followed by what to do about it when that is known ("  fix:" for bad
// input, "  hint:" for a failure). A fix or hint that applies to several
// problems at once (an InputError or HintError around joined errors) follows
// them on a line of its own.
func printError(w io.Writer, err error) {
	for _, p := range problems(err) {
		if p.err == nil {
			fmt.Fprintf(w, "%s\n", p.note)
			continue
		}
		fmt.Fprintf(w, "error: %s\n", indent(p.err.Error()))
		var in *usererr.InputError
		var h *usererr.HintError
		switch {
		case errors.As(p.err, &in) && in.Fix != "":
			fmt.Fprintf(w, "  fix: %s\n", indent(in.Fix))
		case errors.As(p.err, &h) && h.Hint != "":
			fmt.Fprintf(w, "  hint: %s\n", indent(h.Hint))
		}
	}
}

// problem is one line group of printError's output: an error, or (err nil)
// a fix or hint for the problems before it.
type problem struct {
	err  error
	note string
}

// problems flattens joined errors, also when they sit directly inside an
// InputError or HintError, whose fix or hint then follows them all.
func problems(err error) []problem {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []problem
		for _, e := range j.Unwrap() {
			out = append(out, problems(e)...)
		}
		return out
	}
	var inner error
	var note string
	switch e := err.(type) {
	case *usererr.InputError:
		inner, note = e.Err, "fix: "+e.Fix
		if e.Fix == "" {
			note = ""
		}
	case *usererr.HintError:
		inner, note = e.Err, "hint: "+e.Hint
		if e.Hint == "" {
			note = ""
		}
	}
	if _, joined := inner.(interface{ Unwrap() []error }); joined {
		out := problems(inner)
		if note != "" {
			out = append(out, problem{note: indent(note)})
		}
		return out
	}
	return []problem{{err: err}}
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n  ") }

// manager loads the config and makes the cluster manager for a command.
func (g *globals) manager(r cluster.Reporter) (*cluster.Manager, error) {
	path, must := g.config, true
	if path == "" {
		if env := os.Getenv("CLUSTERCTL_CONFIG"); env != "" {
			path = env
		} else {
			path, must = defaultConfig, false
		}
	}
	cfg, err := cluster.LoadConfig(path, must)
	if err != nil {
		return nil, err
	}
	home, err := cluster.Home()
	if err != nil {
		return nil, err
	}
	m, err := cluster.NewManager(cfg, home, g.cluster, r, g.logger())
	if err != nil {
		return nil, err
	}
	m.Profile, m.Region = g.profile, g.region
	if g.lockTimeout < 0 {
		return nil, usererr.BadInput("give --lock-timeout a duration of 0 or more, like 5m (0: fail at once)", "--lock-timeout %s is negative", g.lockTimeout)
	}
	m.LockTimeout, m.Command = g.lockTimeout, g.command
	return m, nil
}

func (g *globals) logger() *slog.Logger {
	if !g.verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// inputArgs marks argument-count errors as bad input (exit status 2).
func inputArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usererr.BadInput("see `"+cmd.CommandPath()+" --help`", "%w", err)
		}
		return nil
	}
}

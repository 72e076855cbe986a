package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/clusterctl/clusterctl/agent"
	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// appCommands are the subcommands for the node's applications: they read
// the local agent's view over its socket.
var appCommands = map[string]func(args []string, stdout io.Writer) error{
	"members": membersCmd,
	"seeds":   seedsCmd,
}

// runApp runs an application subcommand and returns its exit status: 2
// for bad input (with the fix), 1 for a failure.
func runApp(cmd func([]string, io.Writer) error, args []string, stdout, stderr io.Writer) int {
	err := cmd(args, stdout)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "clusterctl-agent:", err)
	var ie *usererr.InputError
	if errors.As(err, &ie) {
		fmt.Fprintln(stderr, "fix:", ie.Fix)
		return 2
	}
	return 1
}

// socketTimeout bounds a question to the local agent.
const socketTimeout = 5 * time.Second

func newFlags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	socket := fs.String("socket", filepath.Join(agentconfig.DefaultRunDir, agent.SocketFile), "the local agent's socket")
	return fs, socket
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usererr.BadInput("see clusterctl-agent "+fs.Name()+" -h", "%w", err)
	}
	if fs.NArg() > 0 {
		return usererr.BadInput("give only flags", "unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func query(path string) (agent.LocalView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), socketTimeout)
	defer cancel()
	return agent.QueryLocal(ctx, path)
}

var statuses = []string{string(nodeapi.StatusAlive), string(nodeapi.StatusSuspect), string(nodeapi.StatusLeaving), string(nodeapi.StatusLeft), string(nodeapi.StatusFailed)}

// membersCmd: clusterctl-agent members [--role R] [--status S] [-o table|json]
func membersCmd(args []string, stdout io.Writer) error {
	fs, socket := newFlags("members")
	role := fs.String("role", "", "only members with this application role")
	status := fs.String("status", "", "only members in this state: "+strings.Join(statuses, ", "))
	out := fs.String("o", "table", "output: table or json")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *status != "" && !slices.Contains(statuses, *status) {
		return usererr.BadInput("use one of "+strings.Join(statuses, ", "), "--status %q is not a member state", *status)
	}
	if *out != "table" && *out != "json" {
		return usererr.BadInput("use -o table or -o json", "output %q is not known", *out)
	}
	v, err := query(*socket)
	if err != nil {
		return err
	}
	v.Members = v.Filter(*role, *status)
	if *out == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tROLE\tSTATUS\tTAGS")
	for _, m := range v.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Name, m.Address, dash(m.Role), m.Status, dash(formatTags(m.Tags)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range v.HandlerFailures {
		fmt.Fprintf(stdout, "handler %s failed on %s of %s at %s: %s\n", f.Run, f.Event, strings.Join(f.Members, ","), f.At.Format(time.RFC3339), f.Error)
	}
	return nil
}

// seedsCmd: clusterctl-agent seeds [--role R] [--count K] [--format F]
func seedsCmd(args []string, stdout io.Writer) error {
	fs, socket := newFlags("seeds")
	role := fs.String("role", "", "only members with this application role")
	count := fs.Int("count", 3, "how many seeds at most (0: every alive member)")
	format := fs.String("format", agent.SeedsPlain, "output: "+strings.Join(agent.SeedFormats, ", "))
	port := fs.Int("port", 25520, "the application's port on each seed")
	system := fs.String("system", "ClusterSystem", "the Akka actor system's name (--format akka)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if !slices.Contains(agent.SeedFormats, *format) {
		return usererr.BadInput("use --format "+strings.Join(agent.SeedFormats, ", --format "), "seed format %q is not known", *format)
	}
	if *count < 0 {
		return usererr.BadInput("use --count 0 (all) or more", "--count %d is negative", *count)
	}
	if *port < 1 || *port > 65535 {
		return usererr.BadInput("use a port between 1 and 65535", "--port %d is out of range", *port)
	}
	v, err := query(*socket)
	if err != nil {
		return err
	}
	seeds := v.Seeds(*role, *count, *port)
	if len(seeds) == 0 {
		return fmt.Errorf("no alive member with role %q yet; retry once the node has joined", *role)
	}
	return agent.WriteSeeds(stdout, *format, *system, seeds)
}

func formatTags(t map[string]string) string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		keys[i] = k + "=" + t[k]
	}
	return strings.Join(keys, ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

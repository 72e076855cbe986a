// Command clusterctl-agent is the agent that runs on every clusterctl node:
// it joins the cluster's gossip ring, keeps /etc/hosts up to date and
// serves the CLI's mutually authenticated API (package nodeapi). On SIGTERM
// it stops without leaving (systemd restarts and reboots bring it back, and
// it rejoins from its snapshot); it leaves for good only when asked to
// (clusterctl down). See package agent.
//
// On the node, `clusterctl-agent members` and `clusterctl-agent seeds` ask
// the running agent over its local socket (apps.go, docs/applications.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/clusterctl/clusterctl/agent"
	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) > 1 {
		if cmd, ok := appCommands[os.Args[1]]; ok {
			os.Exit(runApp(cmd, os.Args[2:], os.Stdout, os.Stderr))
		}
	}
	configPath := flag.String("config", agentconfig.DefaultConfigPath, "agent config file (JSON)")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("clusterctl-agent", version)
		return
	}
	if err := run(*configPath); err != nil {
		// One line: config validation reports every problem, joined.
		fmt.Fprintln(os.Stderr, "clusterctl-agent:", strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
}

func run(configPath string) error {
	// What the agent and its libraries create is its own: serf creates its
	// snapshot 0644 and rewrites it 0755 when it compacts it. (Files
	// meant to be readable, /etc/hosts, get their mode explicitly.)
	syscall.Umask(0o077)
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := agentconfig.LoadConfig(configPath)
	if err != nil {
		return err
	}
	a, err := agent.New(cfg, logger)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logger.Info("clusterctl-agent starting", "version", version, "config", cfg)
	if !cfg.API.Enabled() {
		return a.Run(ctx)
	}
	// The API listens before gossip starts, so the CLI can follow a first
	// node from its very start; it keeps serving until Run has returned
	// (a leave asked through it completes first).
	ln, err := net.Listen("tcp", cfg.API.Addr())
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	apiCtx, stopAPI := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- nodeapi.Serve(apiCtx, ln, cfg.API.Credentials(cfg.Cluster), a, logger) }()
	runErr := a.Run(ctx)
	stopAPI()
	if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
		logger.Warn("api stopped", "err", err)
	}
	return runErr
}

// Command clusterctl-agent is the agent that runs on every clusterctl node:
// it joins the cluster's gossip ring and keeps /etc/hosts up to date. On
// SIGTERM it stops without leaving (systemd restarts and reboots bring it
// back, and it rejoins from its snapshot); it leaves for good only when
// asked to (clusterctl down). See package agent.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/clusterctl/clusterctl/agent"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	configPath := flag.String("config", agent.DefaultConfigPath, "agent config file (JSON)")
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
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := agent.LoadConfig(configPath)
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
	return a.Run(ctx)
}

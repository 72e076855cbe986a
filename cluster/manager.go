package cluster

import (
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/clusterctl/clusterctl/internal/dnslabel"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

// Reporter receives progress as a command runs. The CLI turns it into live
// lines on a terminal or plain lines in a pipe.
type Reporter interface {
	// Phase says that node entered phase after elapsed time since its start.
	Phase(node string, phase Phase, elapsed time.Duration)
	// Note is a free-form remark about node ("" for the cluster).
	Note(node, msg string)
}

// Manager runs the commands for one cluster.
type Manager struct {
	Cfg     *Config
	Store   *Store
	Cluster string
	Report  Reporter
	Log     *slog.Logger
	// NewProvider makes a provider by name; provider.New when nil.
	NewProvider func(name string, env provider.Env) (provider.Provider, error)
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Profile and Region are the --profile and --region flags, passed to
	// providers through provider.Env.
	Profile, Region string
	// LockTimeout is how long a mutating command waits for another one on
	// the same cluster (0: it fails at once); DefaultLockTimeout from
	// NewManager. Command names the command in the lock's holder file
	// ("clusterctl up"); "clusterctl <op>" when empty.
	LockTimeout time.Duration
	Command     string

	locked bool // this manager holds the command lock (see lockCommand)
}

// NewManager returns a manager for the cluster named cluster (the config's
// cluster when empty) with its state under home.
func NewManager(cfg *Config, home, cluster string, r Reporter, log *slog.Logger) (*Manager, error) {
	if cluster == "" {
		cluster = cfg.Cluster
	}
	if !dnslabel.Valid(cluster) {
		return nil, usererr.BadInput("use lower-case letters, digits and '-', at most 63 characters", "cluster name %q is not a valid DNS label", cluster)
	}
	if r == nil {
		r = nopReporter{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{Cfg: cfg, Store: OpenStore(home, cluster), Cluster: cluster, Report: r, Log: log, LockTimeout: DefaultLockTimeout}, nil
}

type nopReporter struct{}

func (nopReporter) Phase(string, Phase, time.Duration) {}
func (nopReporter) Note(string, string)                {}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Manager) provider(name string) (provider.Provider, error) {
	env := provider.Env{Cluster: m.Cluster, Dir: m.Store.Dir, Config: m.Cfg.Providers[name],
		GossipPort: m.Cfg.Gossip.Port, SSH: m.Cfg.SSH.On(), Profile: m.Profile, Region: m.Region}
	if m.Cfg.Path != "" {
		env.ConfigDir = filepath.Dir(m.Cfg.Path)
	}
	if m.NewProvider != nil {
		return m.NewProvider(name, env)
	}
	return provider.New(name, env)
}

// agentBinary finds the linux agent binary local providers put on the seed.
func (m *Manager) agentBinary() (string, error) {
	fix := "build it with `make build` (it lands in bin/clusterctl-agent next to clusterctl), or set agent.binary in the config or CLUSTERCTL_AGENT"
	if p := m.Cfg.Agent.Binary; p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", usererr.BadInput(fix, "agent binary: %w", err)
		}
		return p, nil
	}
	if p := os.Getenv("CLUSTERCTL_AGENT"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", usererr.BadInput(fix, "agent binary from CLUSTERCTL_AGENT: %w", err)
		}
		return p, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "clusterctl-agent")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("clusterctl-agent"); err == nil {
		return p, nil
	}
	return "", usererr.BadInput(fix, "the agent binary clusterctl-agent was not found")
}

// gossipAddr is the host:port an agent at addr gossips on (IPv6 in brackets).
func gossipAddr(addr string, port int) string {
	return net.JoinHostPort(addr, strconv.Itoa(port))
}

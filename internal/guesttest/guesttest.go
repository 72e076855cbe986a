// Package guesttest is for tests only: it plays a booted node from the
// user-data clusterctl rendered for it, so that every test that needs "a
// node that booted" reads that user-data the one same way. Non-test code
// never imports it.
//
//   - Parse reads a cloud-config user-data as cloud-init would (the files
//     it writes, the commands it runs, the hostname and the SSH settings), and
//     UserData.AgentConfig and UserData.AgentInstall pick out what the
//     agent needs.
//   - Boot runs the node's real agent, with its API, in this process on
//     the node's address: the agent config from the user-data, /etc/hosts
//     as the user-data wrote it, the SSH host key sshd makes at first boot,
//     and the node's own state directory.
//   - Unpack is the same guest for a test that runs the agent binary
//     (test/e2e): it downloads the agent as the install command says,
//     checks its SHA-256, and writes the files the binary starts with.
//   - Secrets says what long-lived secret a user-data holds, if any: what
//     a read of user-data through a cloud's API must never find.
package guesttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/agent"
	"github.com/clusterctl/clusterctl/cloudinit"
	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/sshkeys"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// UserData is what a played guest reads of a cloud-config user-data.
type UserData struct {
	Hostname   string `yaml:"hostname"`
	WriteFiles []struct {
		Path    string `yaml:"path"`
		Content string `yaml:"content"`
	} `yaml:"write_files"`
	Runcmd []any `yaml:"runcmd"`
	// What cloud-init's cc_ssh does: delete the image's host keys, make
	// host keys of these types, install these (never present in ours)
	// and the default user's authorized keys.
	DeleteKeys  bool     `yaml:"ssh_deletekeys"`
	GenKeyTypes []string `yaml:"ssh_genkeytypes"`
	SSHKeys     any      `yaml:"ssh_keys"`
	Authorized  []string `yaml:"ssh_authorized_keys"`
}

// Parse reads ud, which must be a cloud-config (cloud-init ignores
// anything else as a config).
func Parse(ud []byte) (UserData, error) {
	if !bytes.HasPrefix(ud, []byte("#cloud-config\n")) {
		return UserData{}, fmt.Errorf("user-data does not start with #cloud-config: %.40q", ud)
	}
	var u UserData
	if err := yaml.Unmarshal(ud, &u); err != nil {
		return UserData{}, fmt.Errorf("user-data YAML: %w", err)
	}
	return u, nil
}

// File is the content the user-data writes to path, and whether it
// writes it.
func (u UserData) File(path string) (string, bool) {
	for _, f := range u.WriteFiles {
		if f.Path == path {
			return f.Content, true
		}
	}
	return "", false
}

// AgentConfig is the agent config the user-data writes, as written.
func (u UserData) AgentConfig() (agentconfig.Config, error) {
	text, ok := u.File(cloudinit.AgentConfigPath)
	if !ok {
		return agentconfig.Config{}, fmt.Errorf("user-data writes no %s", cloudinit.AgentConfigPath)
	}
	var c agentconfig.Config
	if err := json.Unmarshal([]byte(text), &c); err != nil {
		return agentconfig.Config{}, fmt.Errorf("%s from write_files: %w", cloudinit.AgentConfigPath, err)
	}
	return c, nil
}

// Hosts is the /etc/hosts the user-data writes; a bare localhost line
// when it writes none.
func (u UserData) Hosts() string {
	if h, _ := u.File(cloudinit.HostsPath); h != "" {
		return h
	}
	return "127.0.0.1 localhost\n"
}

// errNoAPI: the agent config has no api section.
var errNoAPI = errors.New("the rendered agent config has no api section: the CLI could not reach the agent")

// AgentInstall is the install command's source of the agent: kind ("url"
// or "preinstalled") and, for a URL, the URL and the agent's SHA-256.
func (u UserData) AgentInstall() (kind, url, sha256 string, err error) {
	for _, c := range u.Runcmd {
		argv, _ := c.([]any)
		if len(argv) < 5 || argv[3] != "clusterctl-agent-install" {
			continue
		}
		kind = fmt.Sprint(argv[4])
		if kind == "url" && len(argv) == 7 {
			return kind, fmt.Sprint(argv[5]), fmt.Sprint(argv[6]), nil
		}
		return kind, "", "", nil
	}
	return "", "", "", errors.New("no agent install command in runcmd")
}

// Machine is where a guest boots.
type Machine struct {
	// ID is the provider's instance id, Name the node's name.
	ID, Name string
	// Addr is the node's address: the agent gossips and serves its API there.
	Addr string
	// Dir holds the node's files (/etc/hosts, the SSH host key).
	Dir string
	// StateDir is the node's disk for the agent's state; a machine that
	// boots again passes the same one.
	StateDir string
	// API, when not nil, is what the node's API serves in place of the
	// agent itself (a test's filter over its view).
	API func(*agent.Agent) nodeapi.Membership
	// Logf, when not nil, is told why an agent stopped by itself with an
	// error (why a join never came).
	Logf func(format string, args ...any)
}

// Node is a guest that Boot started.
type Node struct {
	// Config is the agent config as the agent runs with it.
	Config agentconfig.Config
	// Hosts is the node's /etc/hosts.
	Hosts string
	// HostKey is the SSH host key the node made at first boot; its agent
	// sends the public half when it enrols.
	HostKey sshkeys.Pair
	// Authorized are the user-data's ssh_authorized_keys.
	Authorized []string

	cancel context.CancelFunc
	exited chan struct{}
	err    error
}

// Boot does what cloud-init and the agent's unit would do on m with the
// rendered user-data ud, and starts the agent: it serves its API on
// m.Addr before gossip starts, and until Run has returned.
func Boot(ud []byte, m Machine) (*Node, error) {
	u, err := Parse(ud)
	if err != nil {
		return nil, err
	}
	cfg, err := u.AgentConfig()
	if err != nil {
		return nil, err
	}
	if !cfg.API.Enabled() {
		return nil, errNoAPI
	}
	n := &Node{Authorized: u.Authorized, Hosts: filepath.Join(m.Dir, "hosts"), exited: make(chan struct{})}
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(n.Hosts, []byte(u.Hosts()), 0o644); err != nil {
		return nil, err
	}
	cfg.AdvertiseCIDR, cfg.AdvertiseAddr, cfg.BindAddr, cfg.API.BindAddr = "", m.Addr, m.Addr, m.Addr
	cfg.InstanceID, cfg.HostsFile, cfg.StateDir = m.ID, n.Hosts, m.StateDir
	if n.HostKey, err = sshkeys.Generate("host"); err != nil {
		return nil, err
	}
	if cfg.Enrol != nil {
		cfg.Enrol.SSHHostKey = filepath.Join(m.Dir, "ssh_host_ed25519_key.pub")
		if err := os.WriteFile(cfg.Enrol.SSHHostKey, []byte(n.HostKey.Public+" root@"+m.Name+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	n.Config = cfg
	a, err := agent.New(cfg, nil)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(m.Addr, strconv.Itoa(cfg.API.Port)))
	if err != nil {
		return nil, err
	}
	var view nodeapi.Membership = a
	if m.API != nil {
		view = m.API(a)
	}
	apiCtx, stopAPI := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = nodeapi.Serve(apiCtx, ln, cfg.API.Credentials(cfg.Cluster), view, nil)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() {
		err := a.Run(ctx)
		if err != nil && ctx.Err() == nil && m.Logf != nil {
			m.Logf("agent of %s stopped: %v", m.Name, err)
		}
		stopAPI()
		<-served
		n.err = err
		close(n.exited)
	}()
	return n, nil
}

// Exited is closed once the agent's Run has returned and its API stopped.
func (n *Node) Exited() <-chan struct{} { return n.exited }

// Err is what the agent's Run returned; nil before Exited is closed.
func (n *Node) Err() error {
	select {
	case <-n.exited:
		return n.err
	default:
		return nil
	}
}

// Stop powers the node off: it ends the agent and waits until it has.
func (n *Node) Stop() {
	n.cancel()
	<-n.exited
}

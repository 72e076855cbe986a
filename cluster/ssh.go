package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/cloudinit"
	"github.com/clusterctl/clusterctl/internal/atomicfile"
	"github.com/clusterctl/clusterctl/internal/sshclient"
	"github.com/clusterctl/clusterctl/internal/sshkeys"
	"github.com/clusterctl/clusterctl/internal/usererr"
)

// SSHConfig is the config's ssh: key. `ssh: false` turns clusterctl's SSH
// setup off; a mapping sets the login user and port.
type SSHConfig struct {
	// Enabled is true when unset.
	Enabled *bool `yaml:"enabled"`
	// User is the image's default user, the one cloud-init gives the
	// cluster's key (cloud-init's distro default_user). Default "debian"
	// (Debian cloud images and the e2e image); "ubuntu" on Ubuntu images.
	User string `yaml:"user"`
	// Port is the port sshd listens on in the image. Default 22.
	Port int `yaml:"port"`
}

// DefaultSSHUser is the default user of Debian's cloud images.
const DefaultSSHUser = "debian"

var sshUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// UnmarshalYAML takes `ssh: true|false` or a mapping, and checks values.
func (c *SSHConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var on bool
		if err := n.Decode(&on); err != nil {
			return fmt.Errorf("line %d: ssh must be true, false or a mapping (user:, port:, enabled:)", n.Line)
		}
		c.Enabled = &on
		return nil
	}
	type plain SSHConfig
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	if p.User != "" && !sshUserRE.MatchString(p.User) {
		return fmt.Errorf("line %d: ssh.user %q is not a user name (lower-case letters, digits, '_' and '-', starting with a letter or '_')", n.Line, p.User)
	}
	if p.Port < 0 || p.Port > 65535 {
		return fmt.Errorf("line %d: ssh.port %d is out of range (1 to 65535)", n.Line, p.Port)
	}
	*c = SSHConfig(p)
	return nil
}

// On reports whether clusterctl sets up SSH on new nodes.
func (c SSHConfig) On() bool { return c.Enabled == nil || *c.Enabled }

// LoginUser is the configured user, or DefaultSSHUser.
func (c SSHConfig) LoginUser() string {
	if c.User == "" {
		return DefaultSSHUser
	}
	return c.User
}

// SSHDir holds the cluster's SSH key pair and the known_hosts file.
func (s *Store) SSHDir() string { return filepath.Join(s.Dir, "ssh") }

// SSHKeyPath is the cluster's private SSH key (0600); its public half is
// next to it with ".pub".
func (s *Store) SSHKeyPath() string { return filepath.Join(s.SSHDir(), "id_ed25519") }

// KnownHostsPath is the known_hosts file clusterctl writes from the state.
func (s *Store) KnownHostsPath() string { return filepath.Join(s.SSHDir(), "known_hosts") }

// sshUserKey is the cluster's SSH key pair as up uses it.
type sshUserKey struct {
	sshkeys.Pair
	isNew bool // made by this up: record writes it
}

// sshUserKey returns the cluster's key (a new one when it has none), or
// nil when SSH is off.
func (m *Manager) sshUserKey() (*sshUserKey, error) {
	if !m.Cfg.SSH.On() {
		return nil, nil
	}
	path := m.Store.SSHKeyPath()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		p, err := sshkeys.Generate("clusterctl/" + m.Cluster)
		if err != nil {
			return nil, err
		}
		return &sshUserKey{Pair: p, isNew: true}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the cluster's SSH key: %w", err)
	}
	p, err := sshkeys.FromPrivate(data)
	if err != nil {
		return nil, usererr.BadInput("restore the file clusterctl made, or remove it (nodes made with it then refuse the new key)",
			"the cluster's SSH key %s: %w", path, err)
	}
	return &sshUserKey{Pair: p}, nil
}

// nodeSSH makes the node's host key, records its public half and the login
// user in pl.node, and returns what cloud-init gets (nil when SSH is off).
func (m *Manager) nodeSSH(pl *plan, key *sshUserKey) (*cloudinit.SSH, error) {
	if key == nil {
		return nil, nil
	}
	pl.ssh = key
	// The node makes its own host key; its agent sends the public half
	// when it enrols, and that is what known_hosts pins (enrol.go).
	pl.node.SSHUser = m.Cfg.SSH.LoginUser()
	return &cloudinit.SSH{AuthorizedKeys: []string{key.Public + " clusterctl/" + m.Cluster}}, nil
}

// saveSSHKey writes a new cluster key, under the state lock (from record).
func (m *Manager) saveSSHKey(plans []plan) error {
	if len(plans) == 0 || plans[0].ssh == nil || !plans[0].ssh.isNew {
		return nil
	}
	key := plans[0].ssh
	path := m.Store.SSHKeyPath()
	if existing, err := os.ReadFile(path); err == nil {
		if !bytes.Equal(existing, key.Private) {
			return errors.New("another clusterctl created this cluster's SSH key at the same time; run the command again")
		}
		return nil
	}
	if err := os.MkdirAll(m.Store.SSHDir(), 0o700); err != nil {
		return fmt.Errorf("create %q: %w", m.Store.SSHDir(), err)
	}
	if err := atomicfile.WriteFile(path+".pub", []byte(key.Public+" clusterctl/"+m.Cluster+"\n"), 0o644); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, key.Private, 0o600)
}

// writeKnownHosts rewrites the managed known_hosts file from st: one line
// per node with a pinned host key, under the node's alias.
func (m *Manager) writeKnownHosts(st *State) error {
	var hosts []sshkeys.KnownHost
	for _, n := range st.Nodes {
		if n.HostKey != "" {
			hosts = append(hosts, sshkeys.KnownHost{Alias: sshkeys.HostKeyAlias(m.Cluster, n.Name), Key: n.HostKey})
		}
	}
	if len(hosts) == 0 {
		err := os.Remove(m.Store.KnownHostsPath())
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove known_hosts: %w", err)
		}
		return nil
	}
	data, err := sshkeys.KnownHosts(hosts)
	if err != nil {
		return fmt.Errorf("known_hosts of cluster %q: %w", m.Cluster, err)
	}
	return atomicfile.WriteFile(m.Store.KnownHostsPath(), data, 0o600)
}

// SSHClient finds the OpenSSH client; its absence is bad input.
func SSHClient() (sshclient.Client, error) {
	c, err := sshclient.Find()
	if err != nil {
		return c, usererr.BadInput("install the OpenSSH client (Debian/Ubuntu: apt-get install openssh-client) and make sure ssh and scp are in PATH", "%w", err)
	}
	return c, nil
}

// ErrSSHOff is the bad input of ssh, cp and logs --agent when the config
// says ssh: false.
var ErrSSHOff = usererr.BadInput("remove `ssh: false` from the config (or set `ssh: {enabled: true}`); nodes made while it was off have no key and must be made again (`clusterctl down NAME`, then `clusterctl up NAME`)",
	"ssh is turned off in the config (ssh: false)")

// SSHTargets returns how to reach each named node over SSH, or every node
// that has joined when all is set. It rewrites the managed known_hosts file
// from the state first. Every problem with the request is bad input.
func (m *Manager) SSHTargets(ctx context.Context, names []string, all bool) ([]sshclient.Target, error) {
	if !m.Cfg.SSH.On() {
		return nil, ErrSSHOff
	}
	st, err := m.Store.Load()
	if err != nil {
		return nil, err
	}
	nodes, err := sshNodes(st, names, all)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(m.Store.SSHKeyPath()); err != nil {
		return nil, usererr.BadInput("the key is made by `clusterctl up` and cannot be made again for running nodes: make the nodes again (`clusterctl down NAME`, `clusterctl up NAME`)",
			"the cluster's SSH key %s is missing", m.Store.SSHKeyPath())
	}
	if err := m.writeKnownHosts(st); err != nil {
		return nil, err
	}
	targets := make([]sshclient.Target, 0, len(nodes))
	for _, n := range nodes {
		addr, err := m.sshAddress(ctx, n)
		if err != nil {
			return nil, err
		}
		user := n.SSHUser
		if user == "" {
			user = m.Cfg.SSH.LoginUser()
		}
		targets = append(targets, sshclient.Target{
			Name: n.Name, User: user, Address: addr, Port: m.Cfg.SSH.Port,
			Alias: sshkeys.HostKeyAlias(m.Cluster, n.Name), Identity: m.Store.SSHKeyPath(), KnownHosts: m.Store.KnownHostsPath(),
		})
	}
	return targets, nil
}

// sshNodes picks the nodes for ssh: the named ones, each of which must have
// joined and have a pinned host key, or with all every joined node.
func sshNodes(st *State, names []string, all bool) ([]Node, error) {
	var out []Node
	if all {
		for _, n := range st.Nodes {
			if !n.JoinedAt.IsZero() && n.Phase != PhaseLeaving {
				out = append(out, n)
			}
		}
		if len(out) == 0 {
			return nil, usererr.BadInput("bring nodes up with `clusterctl up`; `clusterctl status` shows where they are", "no node of cluster %q has joined", st.Cluster)
		}
	}
	var errs []error
	for _, name := range names {
		n := st.Node(name)
		switch {
		case n == nil:
			errs = append(errs, usererr.BadInput("known nodes: "+knownNames(st), "no node %q in cluster %q", name, st.Cluster))
			continue
		case n.JoinedAt.IsZero():
			errs = append(errs, usererr.BadInput("wait until `clusterctl up` reports it joined; `clusterctl status` and `clusterctl logs "+name+"` show why it has not",
				"node %q has never joined the cluster (phase %s), so it may not run sshd with its key yet", name, n.Phase))
			continue
		}
		out = append(out, *n)
	}
	for _, n := range out {
		if n.HostKey == "" && n.SSHUser != "" && n.EnrolledAt.IsZero() {
			errs = append(errs, usererr.BadInput("wait for `clusterctl up "+n.Name+"` to finish (or run it again: it resumes the enrolment)",
				"node %q has not enrolled yet: its SSH host key, which the node makes itself, is not known and pinned", n.Name))
		} else if n.HostKey == "" {
			errs = append(errs, usererr.BadInput("make the node again with ssh on: `clusterctl down "+n.Name+"`, then `clusterctl up "+n.Name+"`",
				"node %q has no host key pinned by clusterctl (it was made with ssh: false or by an older clusterctl)", n.Name))
		}
	}
	return out, errors.Join(errs...)
}

// sshAddress is where ssh connects: the cluster address on providers where
// clusterctl chose it (local networks), else the public address the
// provider reports, else the recorded (private) address.
func (m *Manager) sshAddress(ctx context.Context, n Node) (string, error) {
	if n.MAC == "" && n.InstanceID != "" {
		p, err := m.provider(n.Provider)
		if err != nil {
			return "", err
		}
		inst, err := p.Status(ctx, n.InstanceID)
		if err != nil {
			return "", fmt.Errorf("ask %s for the address of node %q: %w", n.Provider, n.Name, err)
		}
		if inst.PublicAddress != "" {
			return inst.PublicAddress, nil
		}
		if n.Address == "" {
			n.Address = inst.Address
		}
	}
	if _, err := netip.ParseAddr(n.Address); err != nil {
		return "", usererr.BadInput("see `clusterctl status`: the provider reports no address for it; `clusterctl logs "+n.Name+"` shows its console",
			"node %q has no address clusterctl can reach", n.Name)
	}
	return n.Address, nil
}

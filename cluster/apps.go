package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/dnslabel"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/nodeapi"
	"github.com/clusterctl/clusterctl/provider"
)

// HandlerConfig is one event handler of cluster.yaml's handlers: the
// agent on every node runs Run (a file on the node: write it with
// cloudinit.extra's write_files or bake it into the image) on the events
// On for the members of application role Role ("" for all). See
// docs/applications.md.
type HandlerConfig struct {
	On      []string      `yaml:"on"`
	Role    string        `yaml:"role"`
	Run     string        `yaml:"run"`
	Timeout time.Duration `yaml:"timeout"`
}

func (h HandlerConfig) agentConfig() agentconfig.HandlerConfig {
	return agentconfig.HandlerConfig{On: h.On, Role: h.Role, Run: h.Run, Timeout: agentconfig.Duration(h.Timeout)}
}

// agentHandlers are the handlers as the agent's config has them.
func (c *Config) agentHandlers() []agentconfig.HandlerConfig {
	var out []agentconfig.HandlerConfig
	for _, h := range c.Handlers {
		out = append(out, h.agentConfig())
	}
	return out
}

// checkRole refuses an application role that is not a DNS label (what
// names what: where the role came from, "node.role" or "--role").
func checkRole(what, role string) error {
	if role == "" || dnslabel.Valid(role) {
		return nil
	}
	return usererr.BadInput("use lower-case letters, digits and '-', at most 63 characters (worker, master, ...)", "%s %q is not a valid DNS label", what, role)
}

// instanceIDReserve is the room kept for the instance id, which is known
// only once the machine exists: a UUID (OpenStack, VirtualBox), longer
// than EC2's ids.
const instanceIDReserve = 36

// nominalName is the node name the config's budget is checked with before
// any name is known: as long as the longest name up picks.
const nominalName = "magenta"

// checkMetaBudget refuses a node whose serf tags (role and user tags
// included) would not fit memberlist's meta with the agent's identity tag:
// the agent's own check (agentconfig.Meta.CheckBudget), with the values the CLI
// knows before anything is made.
func (c *Config) checkMetaBudget(name, prov, role string) error {
	m := agentconfig.Meta{
		Cluster: c.Cluster, Name: name, Nonce: strings.Repeat("0", 32), Provider: prov,
		InstanceID: strings.Repeat("i", instanceIDReserve), Hostname: name,
		Role: agentconfig.RoleNode, AppRole: role, Tags: c.Node.Tags,
	}
	if err := m.CheckBudget(); err != nil {
		return usererr.BadInput("shorten or drop node.tags (each node's tags, role and identity share memberlist's 512 bytes)", "%w", err)
	}
	return nil
}

// validateApps checks node.role, handlers and the tag budget.
func (c *Config) validateApps() []error {
	var errs []error
	if err := checkRole("node.role", c.Node.Role); err != nil {
		errs = append(errs, err)
	}
	for i, h := range c.Handlers {
		if err := h.agentConfig().Validate(); err != nil {
			errs = append(errs, usererr.BadInput(
				fmt.Sprintf("give each handler on: [%s], an optional role, and run: an absolute path on the node", strings.Join(agentconfig.HandlerEvents, ", ")),
				"handlers[%d]: %w", i, err))
		}
	}
	if len(errs) == 0 {
		prov := c.Provider
		if prov == "" {
			prov = longestProvider()
		}
		if err := c.checkMetaBudget(nominalName, prov, c.Node.Role); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func longestProvider() string {
	long := ""
	for _, n := range provider.Names() {
		if len(n) > len(long) {
			long = n
		}
	}
	return long
}

// appInfo is n's application role and user tags: what its member
// publishes when the view has its incarnation, else what the state
// recorded (the role) and the config gives every node (the tags).
func (m *Manager) appInfo(n Node, members memberView) (string, map[string]string) {
	if mem, ok := members.of(n.Name, n.Nonce); ok {
		meta := agentconfig.MetaFromTags(mem.Tags)
		return meta.AppRole, meta.Tags
	}
	return n.Role, m.tags()
}

// HandlerFailures asks the first node API that answers for its latest
// failed event handler runs (status -v).
func (m *Manager) HandlerFailures(ctx context.Context) (string, []nodeapi.HandlerFailure, error) {
	if len(m.endpoints(nil)()) == 0 {
		return "", nil, nil
	}
	creds, err := m.credentials()
	if err != nil {
		return "", nil, err
	}
	c, err := m.client(creds, nil)
	if err != nil {
		return "", nil, err
	}
	c.ConnectTimeout = statusConnectTimeout
	snap, err := c.Members(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("handler failures: %w", err)
	}
	return snap.Node, snap.HandlerFailures, nil
}

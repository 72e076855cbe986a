package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/internal/dnslabel"
	"github.com/clusterctl/clusterctl/internal/ports"
	"github.com/clusterctl/clusterctl/internal/strictyaml"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

// Config is the cluster config file (cluster.yaml). Every key is optional;
// provider sections (qemu:, virtualbox:, ...) are kept as YAML and decoded
// strictly by the provider itself.
type Config struct {
	// Cluster is the cluster's name; --cluster overrides it. Default "default".
	Cluster string `yaml:"cluster"`
	// Provider is the provider `up` uses when --provider is not given.
	Provider string `yaml:"provider"`
	// Domain is the DNS domain of node FQDNs. Default "<cluster>.internal".
	Domain string `yaml:"domain"`

	Node      NodeConfig      `yaml:"node"`
	Gossip    GossipConfig    `yaml:"gossip"`
	API       APIConfig       `yaml:"api"`
	Agent     AgentConfig     `yaml:"agent"`
	CloudInit CloudInitConfig `yaml:"cloudinit"`
	Timeouts  Timeouts        `yaml:"timeouts"`
	SSH       SSHConfig       `yaml:"ssh"` // see ssh.go
	// Handlers are the event handlers rendered into every node's agent
	// config (apps.go).
	Handlers []HandlerConfig `yaml:"handlers"`

	// Providers holds each provider's own section, by provider name.
	Providers map[string]*yaml.Node `yaml:"-"`
	// Path is the file the config came from ("" when none was read).
	Path string `yaml:"-"`
}

// NodeConfig are the defaults for every node.
type NodeConfig struct {
	CPUs      int               `yaml:"cpus"`
	MemoryMiB int               `yaml:"memory"`
	Tags      map[string]string `yaml:"tags"`
	// Role is the application role (worker, master, ...) of the nodes up
	// makes (up --role overrides it): a DNS label, the app_role tag.
	Role string `yaml:"role"`
}

// GossipConfig configures the memberlist cluster.
type GossipConfig struct {
	// Port is the agents' gossip port (TCP and UDP). Default ports.Gossip.
	Port int `yaml:"port"`
}

// APIConfig configures the agents' API, the one port the CLI dials.
type APIConfig struct {
	// Port is the agents' API port (TCP). Default ports.API.
	Port int `yaml:"port"`
}

// AgentConfig says where the node gets its agent binary from.
type AgentConfig struct {
	// Binary is the linux/amd64 agent binary the CLI ships to local VMs.
	// Default: clusterctl-agent next to the clusterctl executable, then PATH.
	Binary string `yaml:"binary"`
	// Source is how the node gets the agent: "seed" (on the seed ISO, the
	// default for local providers), "url", or "preinstalled".
	Source string `yaml:"source"`
	URL    string `yaml:"url"`
	SHA256 string `yaml:"sha256"`
}

// CloudInitConfig lets the user add to or replace what is sent to a node.
type CloudInitConfig struct {
	// Extra is a cloud-config document merged into the user-data.
	Extra string `yaml:"extra"`
	// Template is a file that replaces the default user-data template.
	Template string `yaml:"template"`
}

// Timeouts are the per-phase deadlines of up and down.
type Timeouts struct {
	Create time.Duration `yaml:"create"`
	Join   time.Duration `yaml:"join"`
	Leave  time.Duration `yaml:"leave"`
	// Bootstrap is how long a new node's bootstrap token is accepted: the
	// node must enrol within it (default 1h).
	Bootstrap time.Duration `yaml:"bootstrap"`
}

// Defaults used when the config does not say.
const (
	DefaultCluster   = "default"
	DefaultCPUs      = 1
	DefaultMemoryMiB = 1024
)

// DefaultTimeouts are the phase deadlines when neither config nor flags set them.
var DefaultTimeouts = Timeouts{Create: 2 * time.Minute, Join: 10 * time.Minute, Leave: 30 * time.Second, Bootstrap: time.Hour}

// LoadConfig reads the config file at path. An empty path, or a path that
// does not exist when mustExist is false, gives the defaults.
func LoadConfig(path string, mustExist bool) (*Config, error) {
	cfg := &Config{Providers: map[string]*yaml.Node{}}
	if path == "" {
		cfg.applyDefaults()
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !mustExist {
		cfg.applyDefaults()
		return cfg, nil
	}
	if err != nil {
		return nil, usererr.BadInput("check the --config path", "read config: %w", err)
	}
	if err := ParseConfig(path, data, cfg); err != nil {
		return nil, err
	}
	cfg.Path = path
	cfg.resolvePaths(filepath.Dir(path))
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// ParseConfig decodes data strictly into cfg: unknown keys, misspelled keys
// and type errors are reported all at once with their line numbers.
func ParseConfig(name string, data []byte, cfg *Config) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return usererr.BadInput("fix the YAML syntax", "%s: %w", name, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return usererr.BadInput("the config file must be a YAML mapping (key: value)", "%s: line %d: not a mapping", name, root.Line)
	}
	if err := strictyaml.Duplicates(root); err != nil {
		return usererr.BadInput("give each key once", "%s: %w", name, err)
	}
	if err := removedKeys(name, root); err != nil {
		return err
	}
	// Split off provider sections; the rest is decoded strictly.
	rest := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: root.Line, Column: root.Column}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if _, ok := provider.Lookup(k.Value); ok {
			cfg.Providers[k.Value] = v
			continue
		}
		rest.Content = append(rest.Content, k, v)
	}
	if err := strictyaml.Decode(rest, cfg); err != nil {
		return &usererr.InputError{
			Err: fmt.Errorf("%s: %w", name, err),
			Fix: fmt.Sprintf("see the config reference in README.md; provider sections are named after the provider (%s)", strings.Join(provider.Names(), ", ")),
		}
	}
	return nil
}

func (c *Config) resolvePaths(base string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	c.Agent.Binary = abs(c.Agent.Binary)
	c.CloudInit.Template = abs(c.CloudInit.Template)
}

func (c *Config) applyDefaults() {
	if c.Cluster == "" {
		c.Cluster = DefaultCluster
	}
	if c.Gossip.Port == 0 {
		c.Gossip.Port = ports.Gossip
	}
	if c.API.Port == 0 {
		c.API.Port = ports.API
	}
	if c.Node.CPUs == 0 {
		c.Node.CPUs = DefaultCPUs
	}
	if c.Node.MemoryMiB == 0 {
		c.Node.MemoryMiB = DefaultMemoryMiB
	}
	if c.Timeouts.Create == 0 {
		c.Timeouts.Create = DefaultTimeouts.Create
	}
	if c.Timeouts.Join == 0 {
		c.Timeouts.Join = DefaultTimeouts.Join
	}
	if c.Timeouts.Bootstrap == 0 {
		c.Timeouts.Bootstrap = DefaultTimeouts.Bootstrap
	}
	if c.Timeouts.Leave == 0 {
		c.Timeouts.Leave = DefaultTimeouts.Leave
	}
	if c.Providers == nil {
		c.Providers = map[string]*yaml.Node{}
	}
}

// DomainFor returns the configured domain, or "<cluster>.internal".
func (c *Config) DomainFor(cluster string) string {
	if c.Domain != "" {
		return c.Domain
	}
	return cluster + ".internal"
}

// Validate checks values and returns every problem at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(fix, format string, a ...any) { errs = append(errs, usererr.BadInput(fix, format, a...)) }
	if !dnslabel.Valid(c.Cluster) {
		bad("use lower-case letters, digits and '-', at most 63 characters", "cluster name %q is not a valid DNS label", c.Cluster)
	}
	if c.Provider != "" {
		if _, ok := provider.Lookup(c.Provider); !ok {
			bad("use one of: "+strings.Join(provider.Names(), ", "), "unknown provider %q in config", c.Provider)
		}
	}
	if c.Gossip.Port < 1 || c.Gossip.Port > 65535 {
		bad("use a port between 1 and 65535", "gossip.port %d is out of range", c.Gossip.Port)
	}
	if c.API.Port < 1 || c.API.Port > 65535 {
		bad("use a port between 1 and 65535", "api.port %d is out of range", c.API.Port)
	} else if c.API.Port == c.Gossip.Port {
		bad("give api.port and gossip.port different values", "api.port and gossip.port are both %d", c.API.Port)
	}
	if c.Node.CPUs < 1 || c.Node.CPUs > 64 {
		bad("use 1 to 64", "node.cpus %d is out of range", c.Node.CPUs)
	}
	if c.Node.MemoryMiB < 256 || c.Node.MemoryMiB > 262144 {
		bad("use 256 to 262144 (MiB)", "node.memory %d MiB is out of range", c.Node.MemoryMiB)
	}
	switch c.Agent.Source {
	case "", "seed", "preinstalled":
	case "url":
		if c.Agent.URL == "" || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(c.Agent.SHA256) {
			bad("set agent.url and agent.sha256 (64 hex digits)", "agent.source is \"url\" but agent.url or agent.sha256 is missing or malformed")
		}
	default:
		bad(`use "seed", "url" or "preinstalled"`, "agent.source %q is not known", c.Agent.Source)
	}
	for k := range c.Node.Tags {
		if k == "" {
			bad("give every tag a name", "node.tags has an empty key")
		}
	}
	errs = append(errs, c.validateApps()...)
	if c.CloudInit.Template != "" {
		if _, err := os.Stat(c.CloudInit.Template); err != nil {
			bad("point cloudinit.template at an existing file", "cloudinit.template: %w", err)
		}
	}
	for name, d := range map[string]time.Duration{"create": c.Timeouts.Create, "join": c.Timeouts.Join, "leave": c.Timeouts.Leave, "bootstrap": c.Timeouts.Bootstrap} {
		if d < 0 {
			bad("use a positive duration such as 5m", "timeouts.%s is negative", name)
		}
	}
	return errors.Join(errs...)
}

// removedKeys refuses keys that older versions knew, with what replaced
// them (the strict decoder alone would only call them unknown).
func removedKeys(name string, root *yaml.Node) error {
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value != "gossip" || v.Kind != yaml.MappingNode {
			continue
		}
		for j := 0; j+1 < len(v.Content); j += 2 {
			if v.Content[j].Value == "observer" {
				return usererr.BadInput(fmt.Sprintf("remove gossip.observer: the CLI now dials the nodes' API (TCP port %d, api.port) instead of joining the gossip as an observer, so the nodes never connect to this machine", ports.API),
					"%s: line %d: gossip.observer is no longer used", name, v.Content[j].Line)
			}
		}
	}
	return nil
}

package openstack

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/provider"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/internal/ports"
	"github.com/clusterctl/clusterctl/internal/publicip"
	"github.com/clusterctl/clusterctl/internal/strictyaml"
	"github.com/clusterctl/clusterctl/internal/usererr"
)

// Defaults of the configuration keys.
const (
	DefaultGossipPort   = ports.Gossip
	DefaultParallel     = 4
	DefaultPollInterval = 3 * time.Second
	DefaultAgentURLTTL  = 24 * time.Hour
	// ComputeMicroversion is the Nova API microversion clusterctl asks for
	// (2.47 embeds the flavor in server details; every release since Pike has it).
	ComputeMicroversion = "2.47"
)

// Config is the "openstack:" section of the cluster config. No secret
// belongs here: passwords and application credential secrets stay in
// clouds.yaml, secure.yaml or OS_* variables. See the package documentation.
type Config struct {
	Cloud      string `yaml:"cloud"`
	CloudsFile string `yaml:"clouds_file"`
	Region     string `yaml:"region"`
	Interface  string `yaml:"interface"`
	CACert     string `yaml:"cacert"`
	Insecure   *bool  `yaml:"insecure"`

	Flavor         string `yaml:"flavor"`
	Image          string `yaml:"image"`
	Network        string `yaml:"network"`
	KeyName        string `yaml:"key_name"`
	FloatingIPPool string `yaml:"floating_ip_pool"`
	ConfigDrive    bool   `yaml:"config_drive"`

	SecurityGroup string   `yaml:"security_group"`
	GossipPort    int      `yaml:"-"` // gossip.port, from provider.Env
	APIPort       int      `yaml:"-"` // the agents' API port, from provider.Env
	APIFrom       []string `yaml:"api_from"`

	AgentContainer string        `yaml:"agent_container"`
	AgentURLTTL    time.Duration `yaml:"agent_url_ttl"`

	Parallel     int           `yaml:"parallel"`
	PollInterval time.Duration `yaml:"poll_interval"`

	// apiFrom is APIFrom parsed; empty means "detect this machine's
	// public address" (Preflight).
	apiFrom []netip.Prefix
}

const fixConfig = `edit the "openstack:" section of the cluster config`

// apiFromKey names the allow-list of the API and SSH ports in messages.
const apiFromKey = "openstack.api_from"

// ParseConfig decodes the provider's section strictly, fills in defaults
// and validates it; every problem is reported at once. It reads no file
// and uses no network. env.Cluster names the cluster (for default names);
// env.ConfigDir resolves relative paths.
func ParseConfig(env provider.Env) (Config, error) {
	node, cluster, configDir := env.Config, env.Cluster, env.ConfigDir
	var cfg Config
	if err := strictyaml.Decode(node, &cfg); err != nil {
		fix := fixConfig
		if hasKey(node, "gossip_from") {
			fix = "remove openstack.gossip_from: the nodes no longer reach clusterctl (it dials them); openstack.api_from lists who may reach the nodes' API and SSH ports, and defaults to this machine's public address"
		}
		return Config{}, &usererr.InputError{Err: fmt.Errorf("openstack config: %w", err), Fix: fix}
	}
	if cfg.SecurityGroup == "" {
		cfg.SecurityGroup = "clusterctl-" + cluster
	}
	if cfg.AgentContainer == "" {
		cfg.AgentContainer = "clusterctl-" + cluster
	}
	provider.Default(&cfg.GossipPort, ports.Gossip)
	provider.Default(&cfg.APIPort, ports.API)
	provider.Default(&cfg.Parallel, DefaultParallel)
	provider.Default(&cfg.PollInterval, DefaultPollInterval)
	provider.Default(&cfg.AgentURLTTL, DefaultAgentURLTTL)
	for _, p := range []*string{&cfg.CloudsFile, &cfg.CACert} {
		if *p != "" && !filepath.IsAbs(*p) && configDir != "" {
			*p = filepath.Join(configDir, *p)
		}
	}

	pr := provider.NewProblems("openstack", configDir)
	for key, v := range map[string]string{"flavor": cfg.Flavor, "image": cfg.Image, "network": cfg.Network} {
		if strings.TrimSpace(v) == "" {
			pr.Bad(fmt.Sprintf("set %q: to a name or id (`openstack %s list` shows them)", key, key), "%s is required", key)
		}
	}
	switch cfg.Interface {
	case "", "public", "internal", "admin", "publicURL", "internalURL", "adminURL":
	default:
		pr.Bad(`use interface: public, internal or admin`, "unknown interface %q", cfg.Interface)
	}
	apiFrom, err := publicip.ParseCIDRs(apiFromKey, cfg.APIFrom)
	if err != nil {
		pr.Add(err)
	}
	cfg.apiFrom = apiFrom
	if cfg.Parallel < 1 || cfg.Parallel > 64 {
		pr.Bad(`set parallel: between 1 and 64`, "parallel %d is out of range", cfg.Parallel)
	}
	if cfg.PollInterval < 0 || cfg.PollInterval > time.Minute {
		pr.Bad(`set poll_interval: to a duration like 3s`, "poll_interval %s is out of range", cfg.PollInterval)
	}
	if cfg.AgentURLTTL < time.Minute {
		pr.Bad(`set agent_url_ttl: to at least the time a node takes to boot, e.g. 24h`, "agent_url_ttl %s is too short", cfg.AgentURLTTL)
	}
	if cfg.SecurityGroup == "default" {
		pr.Bad(`use a group of clusterctl's own; it is created and deleted with the cluster`, `security_group "default" cannot be used`)
	}
	return cfg, pr.Err()
}

// hasKey reports whether the mapping node (or the document holding one)
// has key at its top level.
func hasKey(node *yaml.Node, key string) bool {
	if node != nil && node.Kind == yaml.DocumentNode && len(node.Content) == 1 {
		node = node.Content[0]
	}
	if node == nil || node.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		if node.Content[i].Value == key {
			return true
		}
	}
	return false
}

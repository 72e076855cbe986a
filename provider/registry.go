package provider

import (
	"fmt"
	"sort"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/internal/ports"
	"github.com/clusterctl/clusterctl/internal/usererr"
)

// Env is what a provider factory receives.
type Env struct {
	// Cluster is the cluster's name.
	Cluster string
	// Dir is the cluster's state directory; providers keep cluster-wide
	// files under it (per-node files go to NodeSpec.Dir).
	Dir string
	// Config is the provider's own section of the cluster config file (the
	// value of the top-level key named like the provider), or nil. Decode it
	// with strictyaml.Decode so unknown keys are errors with line numbers.
	Config *yaml.Node
	// ConfigDir is the directory of the cluster config file; relative paths
	// in the provider's section are relative to it ("" = working directory).
	ConfigDir string
	// GossipPort is the cluster's gossip port (gossip.port), for providers
	// that open it in a firewall between nodes. 0 means ports.Gossip.
	GossipPort int
	// APIPort is the port of the agents' mutually authenticated API, the
	// one port the CLI dials (at a node's PublicAddress on clouds), for
	// providers that open it in a firewall. 0 means ports.API.
	APIPort int
	// SSH says whether clusterctl opens SSH (TCP 22) to the nodes, to the
	// same sources as the API port (the config's ssh: switch).
	SSH bool
	// Profile and Region are the --profile and --region flags; they override
	// the provider's config keys of the same meaning ("" = not given).
	Profile, Region string
}

// Port returns GossipPort, or ports.Gossip when it is 0.
func (e Env) Port() int {
	if e.GossipPort == 0 {
		return ports.Gossip
	}
	return e.GossipPort
}

// API returns APIPort, or ports.API when it is 0.
func (e Env) API() int {
	if e.APIPort == 0 {
		return ports.API
	}
	return e.APIPort
}

// Factory makes a provider from its environment. It must not create
// anything at the provider; configuration errors are *InputError.
type Factory func(env Env) (Provider, error)

var (
	mu        sync.RWMutex
	factories = map[string]Factory{}
)

// Register makes a provider available under name. It panics on a duplicate
// name, as that is a programming error.
func Register(name string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := factories[name]; dup {
		panic(fmt.Sprintf("provider %q registered twice", name))
	}
	factories[name] = f
}

// Lookup returns the factory registered under name.
func Lookup(name string) (Factory, bool) {
	mu.RLock()
	defer mu.RUnlock()
	f, ok := factories[name]
	return f, ok
}

// Names returns the registered provider names, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(factories))
	for n := range factories {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// New looks up name and calls its factory. An unknown name is an *InputError
// that lists the known ones.
func New(name string, env Env) (Provider, error) {
	f, ok := Lookup(name)
	if !ok {
		return nil, usererr.BadInput(fmt.Sprintf("use one of: %v", Names()), "unknown provider %q", name)
	}
	return f(env)
}

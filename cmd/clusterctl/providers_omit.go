package main

import (
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

// Providers can be left out of the binary with build tags, one per provider
// (as tailscale's ts_omit_*): clusterctl_omit_ec2, clusterctl_omit_openstack,
// clusterctl_omit_qemu, clusterctl_omit_virtualbox. Each providers_<name>.go
// is built only without its tag; providers_<name>_omitted.go only with it.
// docs/benchmarks.md has what each one saves (`make size`).

// omittedProviders are the providers this binary was built without.
var omittedProviders []string

// registerOmitted registers name as a provider whose every use is bad input
// that says so, so that a config with its section still loads and a cluster
// bound to it is refused with a clear message rather than "unknown provider".
func registerOmitted(name string) {
	omittedProviders = append(omittedProviders, name)
	provider.Register(name, func(provider.Env) (provider.Provider, error) {
		return nil, usererr.BadInput("use a clusterctl built without the build tag clusterctl_omit_"+name,
			"this clusterctl was built without provider %s", name)
	})
}

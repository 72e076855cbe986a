package ec2

import (
	"net/netip"
	"time"
)

// SetLocalAddrs makes p believe this machine has exactly addrs.
func SetLocalAddrs(p *Provider, addrs ...netip.Addr) {
	p.localAddrs = func() ([]netip.Addr, error) { return addrs, nil }
}

// SetConsistency shortens how long p asks again after EC2 says a resource
// it just made does not exist (AWS's guidance is minutes).
func SetConsistency(p *Provider, first, window time.Duration) {
	p.consistency = backoff{First: first, Max: first, Window: window}
}

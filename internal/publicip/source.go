package publicip

import (
	"context"
	"net/netip"
	"sync"
)

// Source says who may reach the nodes' API and SSH ports: the networks a
// config lists (Listed), or else this machine's public address, detected
// on first use and then kept. A provider holds one; it is safe for
// concurrent use and must not be copied after first use.
type Source struct {
	// Key is the config key the user sets instead of detection
	// ("ec2.api_from"); errors name it in their fix.
	Key string
	// Listed are the networks the config lists (ParseCIDRs); empty means
	// detect.
	Listed []netip.Prefix
	// Options tune detection (endpoints, client, timeout).
	Options Options

	mu       sync.Mutex
	detected []netip.Prefix
}

// Prefixes returns Listed, or this machine's public address as a /32 or
// /128, detected once. A detection failure is bad input naming Key.
func (s *Source) Prefixes(ctx context.Context) ([]netip.Prefix, error) {
	if len(s.Listed) > 0 {
		return s.Listed, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.detected != nil {
		return s.detected, nil
	}
	addr, err := Detect(ctx, s.Key, s.Options)
	if err != nil {
		return nil, err
	}
	s.detected = []netip.Prefix{addr}
	return s.detected, nil
}

package publicip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

// ParseCIDRs parses the entries of an allow-list such as ec2.api_from.
// Every entry must be a network in CIDR form with no host bits set
// (203.0.113.0/24, 203.0.113.7/32, 2001:db8::/32), written once. The whole
// internet (0.0.0.0/0, ::/0) is returned as given only because the user
// listed it; nothing here ever adds it. configKey names the key in errors.
// All bad entries are reported at once, as one *usererr.InputError. No
// entries give an empty result: the caller decides what that means (Resolve
// detects this machine's address).
func ParseCIDRs(configKey string, entries []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(entries))
	seen := make(map[netip.Prefix]int, len(entries))
	var errs []error
	for i, raw := range entries {
		p, err := parseCIDR(raw)
		if err == nil {
			if j, dup := seen[p]; dup {
				err = fmt.Errorf("is the same network as entry %d", j+1)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s entry %d %q %w", configKey, i+1, raw, err))
			continue
		}
		seen[p] = i
		out = append(out, p)
	}
	if len(errs) > 0 {
		return nil, usererr.BadInput(
			fmt.Sprintf("list networks in CIDR form with no host bits set, each once, e.g. %s: [203.0.113.7/32, 198.51.100.0/24]", configKey),
			"%w", errors.Join(errs...))
	}
	return out, nil
}

// parseCIDR parses one entry; its error completes "entry N "x" ...".
func parseCIDR(raw string) (netip.Prefix, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return netip.Prefix{}, errors.New("is empty")
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil && a.Zone() == "" {
			return netip.Prefix{}, fmt.Errorf("is an address, not a network: write %s", netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
		return netip.Prefix{}, errors.New("is not a CIDR like 203.0.113.0/24")
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, errors.New("is an IPv4-mapped IPv6 network: write the IPv4 network instead")
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("has host bits set: write %s for the network or %s for the one address", m, netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
	}
	return p, nil
}

// Resolve returns the allow-list for configKey: the parsed entries when the
// user listed any, else this machine's detected public address (Detect).
// Either way a problem is a *usererr.InputError that names configKey.
func Resolve(ctx context.Context, configKey string, entries []string, opts Options) ([]netip.Prefix, error) {
	if len(entries) > 0 {
		return ParseCIDRs(configKey, entries)
	}
	p, err := Detect(ctx, configKey, opts)
	if err != nil {
		return nil, err
	}
	return []netip.Prefix{p}, nil
}

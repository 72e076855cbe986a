package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"

	"github.com/clusterctl/clusterctl/internal/dnslabel"
	"github.com/clusterctl/clusterctl/internal/usererr"
)

// colors are the names up picks when the user gives none.
var colors = []string{
	"red", "blue", "green", "yellow", "purple", "orange", "cyan", "magenta",
	"pink", "brown", "gray", "teal", "olive", "navy", "maroon", "lime",
	"silver", "gold", "indigo", "violet", "coral", "amber", "azure", "beige",
}

// pickNames returns n names not in used, colors first, then node-N.
func pickNames(n int, used map[string]bool) []string {
	var out []string
	for _, c := range colors {
		if len(out) == n {
			return out
		}
		if !used[c] {
			out = append(out, c)
		}
	}
	for i := 1; len(out) < n; i++ {
		c := fmt.Sprintf("node-%d", i)
		if !used[c] {
			out = append(out, c)
		}
	}
	return out
}

// checkNames validates requested node names: DNS labels, no duplicates, not
// in use. All problems are returned at once.
func checkNames(names []string, used map[string]bool) error {
	var errs []error
	seen := map[string]bool{}
	for _, n := range names {
		switch {
		case !dnslabel.Valid(n):
			errs = append(errs, usererr.BadInput("node names are DNS labels: lower-case letters, digits and '-', 1 to 63 characters, not starting or ending with '-'", "invalid node name %q", n))
		case seen[n]:
			errs = append(errs, usererr.BadInput("give each node once", "node name %q is given twice", n))
		case used[n]:
			errs = append(errs, usererr.BadInput("choose another name, or remove the node first with `clusterctl down "+n+"`", "node %q already exists in this cluster", n))
		}
		seen[n] = true
	}
	return errors.Join(errs...)
}

// allocate returns n free host addresses of prefix, skipping the host's
// own address, addresses in used, and the first 9 (commonly gateways).
func allocate(prefix netip.Prefix, host netip.Addr, used map[netip.Addr]bool, n int) ([]netip.Addr, error) {
	var out []netip.Addr
	a := prefix.Masked().Addr()
	for i := 0; i < 10; i++ {
		a = a.Next()
	}
	for ; prefix.Contains(a) && len(out) < n; a = a.Next() {
		if a == host || used[a] || !prefix.Contains(a.Next()) { // never the broadcast address
			continue
		}
		out = append(out, a)
	}
	if len(out) < n {
		return nil, usererr.BadInput("use a larger network (cidr) or remove nodes", "network %s has no room for %d more node(s)", prefix, n)
	}
	return out, nil
}

// randomHex returns n random bytes as hex.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // never on supported systems
	}
	return hex.EncodeToString(b)
}

// newMAC returns a random MAC address with QEMU/KVM's prefix 52:54:00,
// which VirtualBox accepts too.
func newMAC() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
}

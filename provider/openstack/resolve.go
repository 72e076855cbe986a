package openstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/external"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/clusterctl/clusterctl/internal/textdist"
	"github.com/clusterctl/clusterctl/internal/usererr"
)

// netWithExt is a network with its router:external flag.
type netWithExt struct {
	networks.Network
	external.NetworkExternalExt
}

// resolved is what the config's names turned out to be at the cloud.
type resolved struct {
	FlavorID, FlavorName   string
	ImageID, ImageName     string
	NetworkID, NetworkName string
	CIDR                   netip.Prefix
	PoolID, PoolName       string
}

// named is one candidate of a lookup by name or id.
type named struct{ ID, Name string }

// pick finds want among items by id, then by exact name. Not found is an
// *InputError that lists near matches; several items with that name is one
// that lists their ids.
func pick(kind, key, want string, items []named) (named, error) {
	for _, it := range items {
		if it.ID == want {
			return it, nil
		}
	}
	var same []named
	for _, it := range items {
		if it.Name == want {
			same = append(same, it)
		}
	}
	switch len(same) {
	case 1:
		return same[0], nil
	case 0:
	default:
		var ids []string
		for _, s := range same {
			ids = append(ids, s.ID)
		}
		return named{}, usererr.BadInput(fmt.Sprintf("set %s: to one of the ids: %s", key, strings.Join(ids, ", ")),
			"openstack: %d %ss are named %q", len(same), kind, want)
	}
	var names []string
	for _, it := range items {
		if it.Name != "" {
			names = append(names, it.Name)
		}
	}
	sort.Strings(names)
	msg := fmt.Sprintf("openstack: %s %q not found", kind, want)
	if near := nearMatches(want, names); len(near) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", quoteList(near))
	}
	fix := fmt.Sprintf("set %s: to one of: %s", key, shortList(names, 15))
	if len(names) == 0 {
		fix = fmt.Sprintf("this project sees no %s; check the project and region", kind)
	}
	return named{}, usererr.BadInput(fix, "%s", msg)
}

func shortList(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:n], ", ") + fmt.Sprintf(", ... (%d more)", len(s)-n)
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, " or ")
}

// nearMatches returns up to three candidates close to s: equal ignoring
// case, containing it (or contained), or within a small edit distance.
func nearMatches(s string, candidates []string) []string {
	type scored struct {
		name string
		d    int
	}
	ls := strings.ToLower(s)
	var out []scored
	for _, c := range candidates {
		lc := strings.ToLower(c)
		d := textdist.Distance(ls, lc)
		limit := max(2, len(s)/4)
		switch {
		case lc == ls:
			d = 0
		case len(ls) >= 3 && (strings.Contains(lc, ls) || strings.Contains(ls, lc)):
			d = min(d, 1)
		case d > limit:
			continue
		}
		out = append(out, scored{c, d})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].d != out[j].d {
			return out[i].d < out[j].d
		}
		return out[i].name < out[j].name
	})
	var names []string
	for i := 0; i < len(out) && i < 3; i++ {
		names = append(names, out[i].name)
	}
	return names
}

// resolve looks up everything the config names, collecting every problem.
func (p *Provider) resolve(ctx context.Context, c *conn) (*resolved, error) {
	p.mu.Lock()
	if p.res != nil {
		r := p.res
		p.mu.Unlock()
		return r, nil
	}
	p.mu.Unlock()

	r := &resolved{}
	var errs []error
	if f, err := p.lookupFlavor(ctx, c); err != nil {
		errs = append(errs, err)
	} else {
		r.FlavorID, r.FlavorName = f.ID, f.Name
	}
	if im, err := p.lookupImage(ctx, c); err != nil {
		errs = append(errs, err)
	} else {
		r.ImageID, r.ImageName = im.ID, im.Name
	}
	if err := p.lookupNetwork(ctx, c, r); err != nil {
		errs = append(errs, err)
	}
	if p.cfg.FloatingIPPool != "" {
		if pool, err := p.lookupPool(ctx, c); err != nil {
			errs = append(errs, err)
		} else {
			r.PoolID, r.PoolName = pool.ID, pool.Name
		}
	}
	if p.cfg.KeyName != "" {
		if _, err := keypairs.Get(ctx, c.compute, p.cfg.KeyName, nil).Extract(); err != nil {
			if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
				errs = append(errs, usererr.BadInput("create it with `openstack keypair create --public-key ~/.ssh/id_ed25519.pub "+p.cfg.KeyName+"`, or remove key_name:",
					"openstack: key pair %q not found", p.cfg.KeyName))
			} else {
				errs = append(errs, apiError("look up key pair "+p.cfg.KeyName, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.res = r
	p.mu.Unlock()
	return r, nil
}

func (p *Provider) lookupFlavor(ctx context.Context, c *conn) (named, error) {
	pages, err := flavors.ListDetail(c.compute, flavors.ListOpts{AccessType: flavors.AllAccess}).AllPages(ctx)
	if err != nil {
		return named{}, apiError("list flavors", err)
	}
	all, err := flavors.ExtractFlavors(pages)
	if err != nil {
		return named{}, apiError("list flavors", err)
	}
	items := make([]named, len(all))
	for i, f := range all {
		items[i] = named{f.ID, f.Name}
	}
	return pick("flavor", "flavor", p.cfg.Flavor, items)
}

func (p *Provider) lookupImage(ctx context.Context, c *conn) (named, error) {
	pages, err := images.List(c.image, images.ListOpts{}).AllPages(ctx)
	if err != nil {
		return named{}, apiError("list images", err)
	}
	all, err := images.ExtractImages(pages)
	if err != nil {
		return named{}, apiError("list images", err)
	}
	var items []named
	for _, im := range all {
		if im.Status == images.ImageStatusActive || im.ID == p.cfg.Image {
			items = append(items, named{im.ID, im.Name})
		}
	}
	n, err := pick("image", "image", p.cfg.Image, items)
	if err == nil {
		return n, nil
	}
	// Glance's list leaves out community and hidden (os_hidden) images;
	// asked for by id, they are found.
	im, gerr := images.Get(ctx, c.image, p.cfg.Image).Extract()
	switch {
	case gerr == nil && im.Status == images.ImageStatusActive:
		return named{im.ID, im.Name}, nil
	case gerr == nil:
		return named{}, usererr.BadInput("choose an active image (`openstack image list`)",
			"openstack: image %q (%s) is %s, not active", p.cfg.Image, im.Name, im.Status)
	case gophercloud.ResponseCodeIs(gerr, http.StatusNotFound), gophercloud.ResponseCodeIs(gerr, http.StatusBadRequest):
		return named{}, err
	}
	return named{}, apiError("look up image "+p.cfg.Image, gerr)
}

func (p *Provider) lookupNetwork(ctx context.Context, c *conn, r *resolved) error {
	pages, err := networks.List(c.network, networks.ListOpts{}).AllPages(ctx)
	if err != nil {
		return apiError("list networks", err)
	}
	var all []netWithExt
	if err := networks.ExtractNetworksInto(pages, &all); err != nil {
		return apiError("list networks", err)
	}
	var items []named
	external := map[string]bool{}
	for _, n := range all {
		items = append(items, named{n.ID, n.Name})
		external[n.ID] = n.External
	}
	n, err := pick("network", "network", p.cfg.Network, items)
	if err != nil {
		return err
	}
	if external[n.ID] {
		return usererr.BadInput("use a tenant network for network:, and the external network as floating_ip_pool:",
			"openstack: network %q is an external network; servers cannot be plugged into it", p.cfg.Network)
	}
	r.NetworkID, r.NetworkName = n.ID, n.Name
	spages, err := subnets.List(c.network, subnets.ListOpts{NetworkID: n.ID, IPVersion: 4}).AllPages(ctx)
	if err != nil {
		return apiError("list subnets", err)
	}
	subs, err := subnets.ExtractSubnets(spages)
	if err != nil {
		return apiError("list subnets", err)
	}
	var v4 []subnets.Subnet
	for _, s := range subs {
		if s.IPVersion == 4 && s.NetworkID == n.ID {
			v4 = append(v4, s)
		}
	}
	switch len(v4) {
	case 0:
		return usererr.BadInput("add an IPv4 subnet to it, or choose another network", "openstack: network %q has no IPv4 subnet", p.cfg.Network)
	case 1:
	default:
		var cidrs []string
		for _, s := range v4 {
			cidrs = append(cidrs, s.CIDR)
		}
		return usererr.BadInput("use a network with a single IPv4 subnet for the cluster",
			"openstack: network %q has %d IPv4 subnets (%s); the nodes' gossip addresses must come from one", p.cfg.Network, len(v4), strings.Join(cidrs, ", "))
	}
	cidr, err := netip.ParsePrefix(v4[0].CIDR)
	if err != nil {
		return fmt.Errorf("openstack: subnet %s has a bad cidr %q: %w", v4[0].ID, v4[0].CIDR, err)
	}
	r.CIDR = cidr.Masked()
	return nil
}

func (p *Provider) lookupPool(ctx context.Context, c *conn) (named, error) {
	pages, err := networks.List(c.network, networks.ListOpts{}).AllPages(ctx)
	if err != nil {
		return named{}, apiError("list networks", err)
	}
	var all []netWithExt
	if err := networks.ExtractNetworksInto(pages, &all); err != nil {
		return named{}, apiError("list networks", err)
	}
	var items []named
	for _, n := range all {
		if n.External {
			items = append(items, named{n.ID, n.Name})
		}
	}
	n, err := pick("floating IP pool (external network)", "floating_ip_pool", p.cfg.FloatingIPPool, items)
	if err != nil {
		var ie *usererr.InputError
		if errors.As(err, &ie) && len(items) == 0 {
			ie.Fix = "this project sees no external network; remove floating_ip_pool:"
		}
		return named{}, err
	}
	return n, nil
}

package virtualbox

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

// CleanupCluster implements provider.ClusterCleaner: `down --all` calls it
// once the cluster has no node left. VirtualBox registered the base image
// when the first node's disk was made from it (createmedium --diffparent or
// clonemedium open it), and it stays registered after the last node's
// differencing disk is gone. CleanupCluster closes that registration (the
// file stays) unless a VM or another medium (a linked clone of another
// cluster) still uses it, in which case it is left as it is.
//
// The host-only interface or network stays: every cluster with the same
// cidr, and VMs clusterctl did not make, share it. Remains names it, with
// the command that removes it.
func (p *Provider) CleanupCluster(ctx context.Context, cluster string) error {
	if cluster != p.env.Cluster {
		return nil
	}
	r, err := p.vbox()
	if err != nil {
		return nil // without VirtualBox nothing can be registered
	}
	base, err := p.baseMedium(ctx, r)
	if err != nil || base == nil || !base.unused {
		return err
	}
	_, err = r.run(ctx, "closemedium", "disk", base.uuid)
	if isInUse(err) {
		return nil // something began to use it meanwhile
	}
	if err != nil {
		return fmt.Errorf("virtualbox: close the base image %s: %w", p.cfg.Image, err)
	}
	return nil
}

// Remains returns what stays on this machine after `down --all` of the
// cluster, one line each, with the command that removes it: the host-only
// interface or network (shared by every cluster on the same cidr), and the
// base image's registration when another VM or a linked clone still uses
// it. It changes nothing. The lines are for the cluster layer to print
// after `down --all`.
func (p *Provider) Remains(ctx context.Context, cluster string) ([]string, error) {
	if cluster != p.env.Cluster {
		return nil, nil
	}
	r, err := p.vbox()
	if err != nil {
		return nil, nil
	}
	var out []string
	kind, err := p.hostOnlyKind(ctx, r)
	if err != nil {
		return nil, err
	}
	// A network whose address is not the config's is not this cluster's:
	// findHostOnly reports it as bad input, and it is left unnamed here.
	h, ok, err := p.findHostOnly(ctx, r, kind)
	var ie *usererr.InputError
	if err != nil && !errors.As(err, &ie) {
		return nil, err
	}
	if ok && kind == "hostonlynet" {
		out = append(out, fmt.Sprintf("the VirtualBox host-only network %q (%s) stays, for other clusters and VMs on it; remove it with: VBoxManage hostonlynet remove --name=%s",
			h.Name, p.cfg.Prefix(), shellQuote(h.Name)))
	} else if ok {
		out = append(out, fmt.Sprintf("the VirtualBox host-only interface %s (%s/%d) stays, for other clusters and VMs on it; remove it with: VBoxManage hostonlyif remove %s",
			h.Name, p.cfg.Host(), p.cfg.Prefix().Bits(), shellQuote(h.Name)))
	}
	base, err := p.baseMedium(ctx, r)
	if err != nil {
		return out, err
	}
	if base != nil && !base.unused {
		out = append(out, fmt.Sprintf("the base image %s stays registered in VirtualBox: %s", p.cfg.Image, base.usedBy))
	}
	return out, nil
}

// medium is a registered hard disk as `list hdds` shows it.
type medium struct {
	uuid   string
	unused bool   // no VM and no child medium uses it
	usedBy string // who does, in words
}

// baseMedium finds the base image among VirtualBox's registered hard disks
// (nil when it is not registered).
func (p *Provider) baseMedium(ctx context.Context, r *runner) (*medium, error) {
	out, err := r.run(ctx, "list", "hdds")
	if err != nil {
		return nil, err
	}
	recs := parseRecords(out, "UUID")
	var base *medium
	for _, rec := range recs {
		if filepath.Clean(rec["Location"]) == filepath.Clean(p.cfg.Image) {
			base = &medium{uuid: rec["UUID"], unused: true}
			if vms := rec["In use by VMs"]; vms != "" {
				base.unused, base.usedBy = false, "VMs use it ("+vms+")"
			}
		}
	}
	if base == nil || !base.unused {
		return base, nil
	}
	var children []string
	for _, rec := range recs {
		if rec["Parent UUID"] == base.uuid {
			children = append(children, rec["Location"])
		}
	}
	if len(children) > 0 {
		base.unused, base.usedBy = false, "linked clones of it exist ("+strings.Join(children, ", ")+")"
	}
	return base, nil
}

// isInUse reports whether VirtualBox refused because a medium is in use
// (VBOX_E_OBJECT_IN_USE: still attached, or has children).
func isInUse(err error) bool {
	var ve *vboxError
	return errors.As(err, &ve) && strings.Contains(ve.Stderr, "VBOX_E_OBJECT_IN_USE")
}

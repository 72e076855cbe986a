package openstack

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/rules"

	"github.com/clusterctl/clusterctl/internal/ports"
	"github.com/clusterctl/clusterctl/internal/usererr"
)

// Descriptions of the rules clusterctl adds.
const (
	descGossip = "clusterctl gossip between nodes"
	descAPI    = "clusterctl API from openstack.api_from"
	descSSH    = "clusterctl SSH from openstack.api_from"
)

// wantRules are the ingress rules of the cluster's group id: the gossip
// port (TCP and UDP) from members of the group itself only; the API port
// (TCP) from allow; SSH (TCP 22) from allow when provider.Env.SSH.
func (p *Provider) wantRules(id string, allow []netip.Prefix) []rules.CreateOpts {
	out := []rules.CreateOpts{}
	for _, proto := range []rules.RuleProtocol{rules.ProtocolTCP, rules.ProtocolUDP} {
		out = append(out, rules.CreateOpts{Direction: rules.DirIngress, EtherType: rules.EtherType4, SecGroupID: id, Protocol: proto,
			PortRangeMin: p.cfg.GossipPort, PortRangeMax: p.cfg.GossipPort, RemoteGroupID: id, Description: descGossip})
	}
	from := func(port int, desc string) {
		for _, a := range allow {
			et := rules.EtherType4
			if a.Addr().Is6() {
				et = rules.EtherType6
			}
			out = append(out, rules.CreateOpts{Direction: rules.DirIngress, EtherType: et, SecGroupID: id, Protocol: rules.ProtocolTCP,
				PortRangeMin: port, PortRangeMax: port, RemoteIPPrefix: a.String(), Description: desc})
		}
	}
	from(p.cfg.APIPort, descAPI)
	if p.env.SSH {
		from(ports.SSH, descSSH)
	}
	return out
}

// ruleKey identifies a rule by what it lets in, whatever its description.
func ruleKey(direction, etherType, protocol string, min, max int, remoteGroup, remotePrefix string) string {
	return fmt.Sprintf("%s/%s/%s/%d-%d/%s/%s", direction, etherType, protocol, min, max, remoteGroup, remotePrefix)
}

// missingRules returns the rules of want that the group's rules have lack.
func missingRules(have []rules.SecGroupRule, want []rules.CreateOpts) []rules.CreateOpts {
	present := map[string]bool{}
	for _, r := range have {
		present[ruleKey(r.Direction, r.EtherType, r.Protocol, r.PortRangeMin, r.PortRangeMax, r.RemoteGroupID, r.RemoteIPPrefix)] = true
	}
	var out []rules.CreateOpts
	for _, r := range want {
		if !present[ruleKey(string(r.Direction), string(r.EtherType), string(r.Protocol), r.PortRangeMin, r.PortRangeMax, r.RemoteGroupID, r.RemoteIPPrefix)] {
			out = append(out, r)
		}
	}
	return out
}

// ensureGroup finds or makes the cluster's security group and adds the
// rules it lacks (wantRules). Only missing rules are asked for, so a later
// up on a project at its rule quota still works; a rule another clusterctl
// added meanwhile (Neutron's SecurityGroupRuleExists) is fine, and
// OverQuota is reported as a quota.
func (p *Provider) ensureGroup(ctx context.Context, c *conn) (string, error) {
	p.sgMu.Lock()
	defer p.sgMu.Unlock()
	if p.sgID != "" {
		return p.sgID, nil
	}
	allow, err := p.allow.Prefixes(ctx)
	if err != nil {
		return "", err
	}
	doing := fmt.Sprintf("security group %q", p.cfg.SecurityGroup)
	pages, err := groups.List(c.network, groups.ListOpts{Name: p.cfg.SecurityGroup}).AllPages(ctx)
	if err != nil {
		return "", apiError("find "+doing, err)
	}
	found, err := groups.ExtractGroups(pages)
	if err != nil {
		return "", apiError("find "+doing, err)
	}
	var g *groups.SecGroup
	switch {
	case len(found) > 1:
		return "", usererr.BadInput("delete the extra groups, or set security_group: to another name",
			"openstack: %d security groups are named %q", len(found), p.cfg.SecurityGroup)
	case len(found) == 1:
		g = &found[0]
	default:
		g, err = groups.Create(ctx, c.network, groups.CreateOpts{Name: p.cfg.SecurityGroup,
			Description: fmt.Sprintf("clusterctl cluster %s: gossip between nodes, API and SSH from api_from (made and removed by clusterctl)", p.env.Cluster)}).Extract()
		if err != nil {
			return "", apiError("create "+doing, err)
		}
	}
	for _, r := range missingRules(g.Rules, p.wantRules(g.ID, allow)) {
		if _, err := rules.Create(ctx, c.network, r).Extract(); err != nil && neutronErrorType(err) != "SecurityGroupRuleExists" {
			return "", apiError("add a rule to "+doing, err)
		}
	}
	p.sgID = g.ID
	return g.ID, nil
}

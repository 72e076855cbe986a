package ec2

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/clusterctl/clusterctl/internal/ports"
	"github.com/clusterctl/clusterctl/internal/usererr"
)

// Descriptions of the rules clusterctl adds (shown in the console).
const (
	descGossip = "clusterctl gossip between nodes"
	descAPI    = "clusterctl API from ec2.api_from"
	descSSH    = "clusterctl SSH from ec2.api_from"
)

// needsAllowList reports whether clusterctl opens ports to ec2.api_from:
// it does in the group it makes, not in a group of the user's
// (ec2.security_group_id), which is used as it is.
func (p *Provider) needsAllowList() bool { return p.cfg.SecurityGroupID == "" }

// groupName is the name of the security group clusterctl makes.
func (p *Provider) groupName() string { return "clusterctl-" + p.env.Cluster }

// ensureGroup finds or makes the cluster's security group (once) and adds
// the rules it lacks (wantRules). A group of the user's is used as it is.
func (p *Provider) ensureGroup(ctx context.Context) error {
	p.mu.Lock()
	group := p.group
	p.mu.Unlock()
	if group != "" {
		return nil
	}
	allow, err := p.allow.Prefixes(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.group != "" {
		return nil
	}
	g, err := p.findGroup(ctx)
	if err != nil {
		return err
	}
	if g == nil {
		out, err := p.ec2.CreateSecurityGroup(ctx, &awsec2.CreateSecurityGroupInput{
			GroupName:   aws.String(p.groupName()),
			Description: aws.String("clusterctl cluster " + p.env.Cluster + ": gossip between nodes, API and SSH from api_from"),
			VpcId:       aws.String(p.vpc),
			TagSpecifications: []types.TagSpecification{
				{ResourceType: types.ResourceTypeSecurityGroup, Tags: p.clusterTags()},
			},
		})
		switch {
		case isCode(err, "InvalidGroup.Duplicate"):
			// Another clusterctl made it just now.
			if g, err = p.findGroup(ctx); err == nil && g == nil {
				err = fmt.Errorf("ec2: security group %q exists but cannot be found", p.groupName())
			}
		case err == nil:
			g = &types.SecurityGroup{GroupId: out.GroupId}
		}
		if err != nil {
			return mapErr(fmt.Sprintf("create security group %q", p.groupName()), err)
		}
	}
	id := aws.ToString(g.GroupId)
	if err := p.authorize(ctx, id, missingRules(g.IpPermissions, p.wantRules(id, allow))); err != nil {
		return err
	}
	p.group = id
	return nil
}

// findGroup returns the cluster's group in the VPC, or nil when there is
// none. A group of that name that clusterctl did not make is bad input.
func (p *Provider) findGroup(ctx context.Context) (*types.SecurityGroup, error) {
	out, err := p.ec2.DescribeSecurityGroups(ctx, &awsec2.DescribeSecurityGroupsInput{Filters: []types.Filter{
		{Name: aws.String("group-name"), Values: []string{p.groupName()}},
		{Name: aws.String("vpc-id"), Values: []string{p.vpc}},
	}})
	if err != nil {
		return nil, mapErr("describe security groups", err)
	}
	// A group name is unique within a VPC: there is at most one.
	if len(out.SecurityGroups) == 0 {
		return nil, nil
	}
	g := out.SecurityGroups[0]
	if tagValue(g.Tags, TagCluster) != p.env.Cluster || tagValue(g.Tags, TagManagedBy) != ManagedBy {
		return nil, usererr.BadInput("delete or rename that group, or set ec2.security_group_id to use it as it is",
			"ec2: a security group named %q exists in VPC %q but clusterctl did not make it", p.groupName(), p.vpc)
	}
	return &g, nil
}

// rule is one ingress rule: a protocol and port open to one source.
type rule struct {
	proto  string // "tcp" or "udp"
	port   int32
	source string // a security group id ("sg-...") or a CIDR
	desc   string
}

// key identifies the rule regardless of its description.
func (r rule) key() string { return fmt.Sprintf("%s/%d/%s", r.proto, r.port, r.source) }

// wantRules are the ingress rules of the cluster's group id: the gossip
// port (TCP and UDP) from the group itself only; the API port (TCP) from
// allow; SSH (TCP 22) from allow when provider.Env.SSH.
func (p *Provider) wantRules(id string, allow []netip.Prefix) []rule {
	gossip := int32(p.cfg.GossipPort)
	out := []rule{
		{proto: "tcp", port: gossip, source: id, desc: descGossip},
		{proto: "udp", port: gossip, source: id, desc: descGossip},
	}
	for _, a := range allow {
		out = append(out, rule{proto: "tcp", port: int32(p.cfg.APIPort), source: a.String(), desc: descAPI})
	}
	if p.env.SSH {
		for _, a := range allow {
			out = append(out, rule{proto: "tcp", port: ports.SSH, source: a.String(), desc: descSSH})
		}
	}
	return out
}

// missingRules returns the rules of want that have is lacks.
func missingRules(have []types.IpPermission, want []rule) []rule {
	present := map[string]bool{}
	for _, perm := range have {
		proto := aws.ToString(perm.IpProtocol)
		from, to := aws.ToInt32(perm.FromPort), aws.ToInt32(perm.ToPort)
		if from != to {
			continue // a range clusterctl did not add
		}
		add := func(src string) { present[rule{proto: proto, port: from, source: src}.key()] = true }
		for _, g := range perm.UserIdGroupPairs {
			add(aws.ToString(g.GroupId))
		}
		for _, r := range perm.IpRanges {
			add(aws.ToString(r.CidrIp))
		}
		for _, r := range perm.Ipv6Ranges {
			add(aws.ToString(r.CidrIpv6))
		}
	}
	var out []rule
	for _, r := range want {
		if !present[r.key()] {
			out = append(out, r)
		}
	}
	return out
}

// permission is the IpPermission that opens r.
func (r rule) permission() types.IpPermission {
	perm := types.IpPermission{IpProtocol: aws.String(r.proto), FromPort: aws.Int32(r.port), ToPort: aws.Int32(r.port)}
	switch {
	case strings.HasPrefix(r.source, "sg-"):
		perm.UserIdGroupPairs = []types.UserIdGroupPair{{GroupId: aws.String(r.source), Description: aws.String(r.desc)}}
	case strings.Contains(r.source, ":"):
		perm.Ipv6Ranges = []types.Ipv6Range{{CidrIpv6: aws.String(r.source), Description: aws.String(r.desc)}}
	default:
		perm.IpRanges = []types.IpRange{{CidrIp: aws.String(r.source), Description: aws.String(r.desc)}}
	}
	return perm
}

// authorize adds rules to group id in one call. When another clusterctl
// added some of them meanwhile (InvalidPermission.Duplicate fails the whole
// call), each is added on its own and duplicates are ignored. A quota
// (RulesPerSecurityGroupLimitExceeded) is reported as such by mapErr.
func (p *Provider) authorize(ctx context.Context, id string, rules []rule) error {
	if len(rules) == 0 {
		return nil
	}
	sort.SliceStable(rules, func(i, j int) bool { return rules[i].key() < rules[j].key() })
	add := func(rs []rule) error {
		perms := make([]types.IpPermission, 0, len(rs))
		for _, r := range rs {
			perms = append(perms, r.permission())
		}
		// Right after CreateSecurityGroup, EC2 may not know the group yet.
		return p.retryGroupNotFound(ctx, func() error {
			_, err := p.ec2.AuthorizeSecurityGroupIngress(ctx, &awsec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(id), IpPermissions: perms})
			return err
		})
	}
	err := add(rules)
	if isCode(err, "InvalidPermission.Duplicate") {
		err = nil
		for _, r := range rules {
			if e := add([]rule{r}); e != nil && !isCode(e, "InvalidPermission.Duplicate") {
				err = e
				break
			}
		}
	}
	if isCode(err, "InvalidGroup.NotFound") {
		return groupNotVisible("add ingress rules", id, err)
	}
	if err != nil {
		return mapErr(fmt.Sprintf("add ingress rules to security group %q", id), err)
	}
	return nil
}

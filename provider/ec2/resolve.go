package ec2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/clusterctl/clusterctl/provider"
)

// resolve finds, once, the AMI, the subnet and its VPC, and checks a
// configured security group is in that VPC. It creates nothing.
func (p *Provider) resolve(ctx context.Context) error {
	if err := p.ready(ctx); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resolved {
		return nil
	}
	var errs []error
	ami, err := p.resolveAMI(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	subnet, vpc, snet, err := p.resolveSubnet(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	var vpcCIDR netip.Prefix
	if vpc != "" {
		if vpcCIDR, err = p.vpcCIDRs(ctx, vpc); err != nil {
			errs = append(errs, err)
		}
	}
	if p.cfg.SecurityGroupID != "" && vpc != "" {
		if err := p.checkGroup(ctx, vpc); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	p.ami, p.subnet, p.vpc, p.subnetNet, p.vpcCIDR = ami, subnet, vpc, snet, vpcCIDR
	if p.cfg.SecurityGroupID != "" {
		p.group = p.cfg.SecurityGroupID
	}
	p.resolved = true
	return nil
}

func (p *Provider) resolveAMI(ctx context.Context) (string, error) {
	ami := p.cfg.AMI
	if param := p.cfg.amiParameter(); param != "" {
		out, err := p.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(param)})
		if isCode(err, "ParameterNotFound") {
			return "", provider.BadInput("set ec2.ami to an AMI id of this region",
				"ec2: SSM parameter %q (the latest AMI of the image) does not exist in region %q", param, p.region)
		}
		if err != nil {
			return "", mapErr(fmt.Sprintf("read SSM parameter %q", param), err)
		}
		ami = aws.ToString(out.Parameter.Value)
	}
	out, err := p.ec2.DescribeImages(ctx, &awsec2.DescribeImagesInput{ImageIds: []string{ami}})
	if isCode(err, "InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidAMIID.Unavailable") || (err == nil && len(out.Images) == 0) {
		return "", provider.BadInput("set ec2.ami to an AMI that exists in this region (AMI ids differ per region), or remove it to use the latest Debian 12",
			"ec2: AMI %q does not exist in region %q", ami, p.region)
	}
	if err != nil {
		return "", mapErr(fmt.Sprintf("describe AMI %q", ami), err)
	}
	return ami, nil
}

// resolveSubnet returns the configured subnet, or the default VPC's default
// subnet (of the first availability zone in name order).
func (p *Provider) resolveSubnet(ctx context.Context) (subnet, vpc string, cidr netip.Prefix, err error) {
	in := &awsec2.DescribeSubnetsInput{}
	if p.cfg.SubnetID != "" {
		in.SubnetIds = []string{p.cfg.SubnetID}
	} else {
		in.Filters = []types.Filter{{Name: aws.String("default-for-az"), Values: []string{"true"}}}
	}
	out, err := p.ec2.DescribeSubnets(ctx, in)
	if isCode(err, "InvalidSubnetID.NotFound", "InvalidSubnetID.Malformed") {
		return "", "", cidr, provider.BadInput("set ec2.subnet_id to a subnet of this region, or remove it to use the default VPC",
			"ec2: subnet %q does not exist in region %q", p.cfg.SubnetID, p.region)
	}
	if err != nil {
		return "", "", cidr, mapErr("describe subnets", err)
	}
	subs := out.Subnets
	if len(subs) == 0 {
		if p.cfg.SubnetID != "" {
			return "", "", cidr, provider.BadInput("set ec2.subnet_id to a subnet of this region", "ec2: subnet %q does not exist in region %q", p.cfg.SubnetID, p.region)
		}
		return "", "", cidr, provider.BadInput("set ec2.subnet_id to a subnet to run the nodes in, or create a default VPC (`aws ec2 create-default-vpc`)",
			"ec2: region %q has no default VPC (or it has no default subnet), and ec2.subnet_id is not set", p.region)
	}
	sort.Slice(subs, func(i, j int) bool {
		return aws.ToString(subs[i].AvailabilityZone) < aws.ToString(subs[j].AvailabilityZone)
	})
	s := subs[0]
	cidr, perr := netip.ParsePrefix(aws.ToString(s.CidrBlock))
	if perr != nil {
		return "", "", cidr, fmt.Errorf("ec2: subnet %q has CIDR %q: %w", aws.ToString(s.SubnetId), aws.ToString(s.CidrBlock), perr)
	}
	return aws.ToString(s.SubnetId), aws.ToString(s.VpcId), cidr.Masked(), nil
}

func (p *Provider) vpcCIDRs(ctx context.Context, vpc string) (netip.Prefix, error) {
	out, err := p.ec2.DescribeVpcs(ctx, &awsec2.DescribeVpcsInput{VpcIds: []string{vpc}})
	if err != nil {
		return netip.Prefix{}, mapErr(fmt.Sprintf("describe VPC %q", vpc), err)
	}
	if len(out.Vpcs) == 0 {
		return netip.Prefix{}, fmt.Errorf("ec2: VPC %q of the subnet is not found", vpc)
	}
	pfx, err := netip.ParsePrefix(aws.ToString(out.Vpcs[0].CidrBlock))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("ec2: VPC %q has CIDR %q: %w", vpc, aws.ToString(out.Vpcs[0].CidrBlock), err)
	}
	return pfx.Masked(), nil
}

func (p *Provider) checkGroup(ctx context.Context, vpc string) error {
	id := p.cfg.SecurityGroupID
	out, err := p.ec2.DescribeSecurityGroups(ctx, &awsec2.DescribeSecurityGroupsInput{GroupIds: []string{id}})
	if isCode(err, "InvalidGroup.NotFound", "InvalidGroupId.Malformed") || (err == nil && len(out.SecurityGroups) == 0) {
		return provider.BadInput("set ec2.security_group_id to a group of this region, or remove it to let clusterctl make one",
			"ec2: security group %q does not exist in region %q", id, p.region)
	}
	if err != nil {
		return mapErr(fmt.Sprintf("describe security group %q", id), err)
	}
	if gv := aws.ToString(out.SecurityGroups[0].VpcId); gv != vpc {
		sub := p.cfg.SubnetID
		if sub == "" {
			sub = "the default subnet"
		}
		return provider.BadInput("use a subnet and a security group of the same VPC (set ec2.subnet_id, or remove ec2.security_group_id)",
			"ec2: security group %q is in VPC %q, but subnet %s is in VPC %q", id, gv, sub, vpc)
	}
	return nil
}

// checkObserverReach fails when the nodes could not reach the CLI's
// observer: this machine needs an address inside the VPC (it runs in it, or
// the VPC is routed here) or inside one of ec2.observer_cidrs (a VPN), which
// the security group lets in on the gossip port.
func (p *Provider) checkObserverReach() error {
	nets := append([]netip.Prefix{p.vpcCIDR}, p.cfg.observer...)
	addrs, err := p.localAddrs()
	if err != nil {
		return fmt.Errorf("ec2: list this machine's addresses: %w", err)
	}
	for _, ip := range addrs {
		for _, n := range nets {
			if n.IsValid() && n.Contains(ip) {
				return nil
			}
		}
	}
	var ns []string
	for _, n := range nets {
		ns = append(ns, n.String())
	}
	return provider.BadInput("run clusterctl on a machine inside the VPC (or a bastion there), or on a VPN into it and list the VPN's CIDR in ec2.observer_cidrs; then set gossip.observer to this machine's address there (docs/ec2.md: networking)",
		"ec2: this machine has no address in the VPC %s or ec2.observer_cidrs (%s), so the nodes could not reach clusterctl's gossip observer", p.vpcCIDR, strings.Join(ns, ", "))
}

// groupName is the name of the security group clusterctl makes.
func (p *Provider) groupName() string { return "clusterctl-" + p.env.Cluster }

// ensureGroup finds or makes the cluster's security group (once) and makes
// sure it lets the group's members, and observer_cidrs, reach the gossip
// port over TCP and UDP. Nothing is open to other addresses.
func (p *Provider) ensureGroup(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.group != "" {
		return nil
	}
	id, err := p.findGroup(ctx)
	if err != nil {
		return err
	}
	if id == "" {
		out, err := p.ec2.CreateSecurityGroup(ctx, &awsec2.CreateSecurityGroupInput{
			GroupName:   aws.String(p.groupName()),
			Description: aws.String("clusterctl cluster " + p.env.Cluster + ": gossip between nodes"),
			VpcId:       aws.String(p.vpc),
			TagSpecifications: []types.TagSpecification{
				{ResourceType: types.ResourceTypeSecurityGroup, Tags: p.clusterTags()},
			},
		})
		if isCode(err, "InvalidGroup.Duplicate") {
			// Another clusterctl made it just now.
			if id, err = p.findGroup(ctx); err == nil && id == "" {
				err = fmt.Errorf("ec2: security group %q exists but cannot be found", p.groupName())
			}
		} else if err == nil {
			id = aws.ToString(out.GroupId)
		}
		if err != nil {
			return mapErr(fmt.Sprintf("create security group %q", p.groupName()), err)
		}
	}
	if err := p.authorizeGossip(ctx, id); err != nil {
		return err
	}
	p.group = id
	return nil
}

func (p *Provider) findGroup(ctx context.Context) (string, error) {
	out, err := p.ec2.DescribeSecurityGroups(ctx, &awsec2.DescribeSecurityGroupsInput{Filters: []types.Filter{
		{Name: aws.String("group-name"), Values: []string{p.groupName()}},
		{Name: aws.String("vpc-id"), Values: []string{p.vpc}},
	}})
	if err != nil {
		return "", mapErr("describe security groups", err)
	}
	// A group name is unique within a VPC: there is at most one.
	if len(out.SecurityGroups) == 0 {
		return "", nil
	}
	g := out.SecurityGroups[0]
	if tagValue(g.Tags, TagCluster) != p.env.Cluster || tagValue(g.Tags, TagManagedBy) != ManagedBy {
		return "", provider.BadInput("delete or rename that group, or set ec2.security_group_id to use it as it is",
			"ec2: a security group named %q exists in VPC %q but clusterctl did not make it", p.groupName(), p.vpc)
	}
	return aws.ToString(g.GroupId), nil
}

// authorizeGossip adds the gossip rules that are missing from group id.
func (p *Provider) authorizeGossip(ctx context.Context, id string) error {
	port := aws.Int32(int32(p.cfg.GossipPort))
	var perms []types.IpPermission
	for _, proto := range []string{"tcp", "udp"} {
		perm := types.IpPermission{
			IpProtocol:       aws.String(proto),
			FromPort:         port,
			ToPort:           port,
			UserIdGroupPairs: []types.UserIdGroupPair{{GroupId: aws.String(id), Description: aws.String("clusterctl gossip between nodes")}},
		}
		for _, c := range p.cfg.observer {
			perm.IpRanges = append(perm.IpRanges, types.IpRange{CidrIp: aws.String(c.String()), Description: aws.String("clusterctl observer")})
		}
		perms = append(perms, perm)
	}
	// Right after CreateSecurityGroup, EC2 may not know the group yet.
	err := p.retryGroupNotFound(ctx, func() error {
		_, err := p.ec2.AuthorizeSecurityGroupIngress(ctx, &awsec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(id), IpPermissions: perms})
		return err
	})
	if isCode(err, "InvalidGroup.NotFound") && id != p.cfg.SecurityGroupID {
		return groupNotVisible("allow gossip", id, err)
	}
	if err != nil && !isCode(err, "InvalidPermission.Duplicate") {
		return mapErr(fmt.Sprintf("allow gossip in security group %q", id), err)
	}
	return nil
}

// interfaceAddrs returns this machine's interface addresses.
func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

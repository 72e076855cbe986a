package ec2

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/clusterctl/clusterctl/internal/usererr"
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
	if p.cfg.SecurityGroupID != "" && vpc != "" {
		if err := p.checkGroup(ctx, vpc); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	p.ami, p.subnet, p.vpc, p.subnetNet = ami, subnet, vpc, snet
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
			return "", usererr.BadInput("set ec2.ami to an AMI id of this region",
				"ec2: SSM parameter %q (the latest AMI of the image) does not exist in region %q", param, p.region)
		}
		if err != nil {
			return "", mapErr(fmt.Sprintf("read SSM parameter %q", param), err)
		}
		ami = aws.ToString(out.Parameter.Value)
	}
	out, err := p.ec2.DescribeImages(ctx, &awsec2.DescribeImagesInput{ImageIds: []string{ami}})
	if isCode(err, "InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidAMIID.Unavailable") || (err == nil && len(out.Images) == 0) {
		return "", usererr.BadInput("set ec2.ami to an AMI that exists in this region (AMI ids differ per region), or remove it to use the latest Debian 12",
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
		return "", "", cidr, usererr.BadInput("set ec2.subnet_id to a subnet of this region, or remove it to use the default VPC",
			"ec2: subnet %q does not exist in region %q", p.cfg.SubnetID, p.region)
	}
	if err != nil {
		return "", "", cidr, mapErr("describe subnets", err)
	}
	subs := out.Subnets
	if len(subs) == 0 {
		if p.cfg.SubnetID != "" {
			return "", "", cidr, usererr.BadInput("set ec2.subnet_id to a subnet of this region", "ec2: subnet %q does not exist in region %q", p.cfg.SubnetID, p.region)
		}
		return "", "", cidr, usererr.BadInput("set ec2.subnet_id to a subnet to run the nodes in, or create a default VPC (`aws ec2 create-default-vpc`)",
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

func (p *Provider) checkGroup(ctx context.Context, vpc string) error {
	id := p.cfg.SecurityGroupID
	out, err := p.ec2.DescribeSecurityGroups(ctx, &awsec2.DescribeSecurityGroupsInput{GroupIds: []string{id}})
	if isCode(err, "InvalidGroup.NotFound", "InvalidGroupId.Malformed") || (err == nil && len(out.SecurityGroups) == 0) {
		return usererr.BadInput("set ec2.security_group_id to a group of this region, or remove it to let clusterctl make one",
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
		return usererr.BadInput("use a subnet and a security group of the same VPC (set ec2.subnet_id, or remove ec2.security_group_id)",
			"ec2: security group %q is in VPC %q, but subnet %s is in VPC %q", id, gv, sub, vpc)
	}
	return nil
}

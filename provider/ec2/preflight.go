package ec2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

// credentialTimeout bounds the SDK's credential chain. Its last source is
// the EC2 instance metadata service: off EC2, or with the service
// blackholed, the chain would otherwise wait through the SDK's retries.
const credentialTimeout = 5 * time.Second

// regionTimeout bounds the region check, which is allowed regionAttempts
// attempts: a region that does not exist must be reported in seconds, not
// after the standard retryer's minutes.
const (
	regionTimeout  = 10 * time.Second
	regionAttempts = 2
)

const fixCredentials = "configure credentials for the SDK's default chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, `aws configure`, `aws sso login --profile NAME` with ec2.profile or AWS_PROFILE, or an instance role"

// ready makes the clients and checks, once, the credentials and then the
// region, each bounded in time. Every method that talks to AWS calls it
// first, so that missing credentials or a region that does not exist are
// reported first, fast and once, whatever the caller asks first. A
// definite answer (success or bad input) is kept; anything else (a
// cancelled context, a network failure) is asked again next time.
func (p *Provider) ready(ctx context.Context) error {
	if err := p.clients(ctx); err != nil {
		return err
	}
	p.accessMu.Lock()
	defer p.accessMu.Unlock()
	if p.accessChecked {
		return p.accessErr
	}
	err := p.checkCredentials(ctx)
	if err == nil {
		err = p.checkRegion(ctx)
	}
	var ie *usererr.InputError
	if err == nil || errors.As(err, &ie) {
		p.accessChecked, p.accessErr = true, err
	}
	return err
}

// Preflight checks, before anything is made, everything AWS can tell about
// the config: first credentials and region (fast, see ready), then the
// instance type, the key pair, the AMI, the subnet (or a default VPC) and
// the security group's VPC. When clusterctl makes the security group and
// ec2.api_from is empty, it also detects this machine's public address,
// which the group will admit to the API (and SSH) port; failing that is
// bad input naming ec2.api_from. The user-data's size is CheckSeed's job:
// Preflight's specs carry no seed.
func (p *Provider) Preflight(ctx context.Context, specs []provider.NodeSpec) error {
	var errs []error
	if p.needsAllowList() {
		if _, err := p.allow.Prefixes(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := p.ready(ctx); err != nil {
		return errors.Join(append(errs, err)...)
	}
	if _, err := p.ec2.DescribeInstanceTypes(ctx, &awsec2.DescribeInstanceTypesInput{InstanceTypes: []types.InstanceType{types.InstanceType(p.cfg.InstanceType)}}); err != nil {
		if isCode(err, "InvalidInstanceType") || isCode(err, "InvalidParameterValue") {
			errs = append(errs, usererr.BadInput("set ec2.instance_type to a type offered in this region, such as t3.micro",
				"ec2: instance type %q does not exist in region %q", p.cfg.InstanceType, p.region))
		} else {
			errs = append(errs, mapErr("describe instance types", err))
		}
	}
	if p.cfg.KeyName != "" {
		if _, err := p.ec2.DescribeKeyPairs(ctx, &awsec2.DescribeKeyPairsInput{KeyNames: []string{p.cfg.KeyName}}); err != nil {
			if isCode(err, "InvalidKeyPair.NotFound") {
				errs = append(errs, usererr.BadInput("set ec2.key_name to a key pair of this region (`aws ec2 describe-key-pairs`), or remove it",
					"ec2: key pair %q does not exist in region %q", p.cfg.KeyName, p.region))
			} else {
				errs = append(errs, mapErr("describe key pairs", err))
			}
		}
	}
	if err := p.resolve(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkCredentials asks the SDK's chain for credentials, within
// credentialTimeout, without sending them anywhere. The error never
// contains them.
func (p *Provider) checkCredentials(ctx context.Context) error {
	creds := p.ec2.Options().Credentials
	if creds == nil {
		return usererr.BadInput(fixCredentials, "ec2: no AWS credentials found")
	}
	cctx, cancel := context.WithTimeout(ctx, credentialTimeout)
	defer cancel()
	_, err := creds.Retrieve(cctx)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("ec2: look for AWS credentials: %w", ctx.Err())
	}
	if cctx.Err() != nil {
		return usererr.BadInput(fixCredentials+"; off EC2, set AWS_EC2_METADATA_DISABLED=true so the chain does not wait for the instance metadata service",
			"ec2: no AWS credentials found within %s (the SDK's chain ends with the EC2 instance metadata service, which did not answer in time)", credentialTimeout)
	}
	return usererr.BadInput(fixCredentials, "ec2: no AWS credentials found (%s)", credErrSummary(err))
}

// credErrSummary keeps the SDK's explanation of why the chain failed but
// cuts it at a reasonable length.
func credErrSummary(err error) string {
	s := err.Error()
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// checkRegion makes sure the region exists and is enabled for the account.
// It asks the region's own endpoint, as every later call does: an
// organisation policy that denies other regions must not fail a region it
// allows. A region that does not exist has no endpoint (its name does not
// resolve), which the SDK does not retry.
func (p *Provider) checkRegion(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, regionTimeout)
	defer cancel()
	out, err := p.ec2.DescribeRegions(rctx, &awsec2.DescribeRegionsInput{AllRegions: aws.Bool(true)}, func(o *awsec2.Options) {
		o.RetryMaxAttempts = regionAttempts
	})
	var dns *net.DNSError
	switch {
	case err == nil:
	case errors.As(err, &dns) && dns.IsNotFound:
		return usererr.BadInput("set ec2.region (or AWS_REGION, or --region) to a region that exists, such as eu-west-1 (`aws ec2 describe-regions`)",
			"ec2: region %q does not exist: its endpoint %s does not resolve", p.region, dns.Name)
	case ctx.Err() != nil:
		return fmt.Errorf("ec2: check region %q: %w", p.region, ctx.Err())
	case rctx.Err() != nil:
		return usererr.WithHint(fmt.Errorf("ec2: check region %q: no answer from its endpoint within %s: %w", p.region, regionTimeout, err),
			"check this machine's connection to AWS (proxy, firewall, DNS) and ec2.region")
	default:
		return mapErr(fmt.Sprintf("check region %q", p.region), err)
	}
	var names []string
	for _, r := range out.Regions {
		if aws.ToString(r.RegionName) == p.region {
			if aws.ToString(r.OptInStatus) == "not-opted-in" {
				return usererr.BadInput("enable the region in the AWS account settings (Regions), or use another region",
					"ec2: region %q is not enabled for this account", p.region)
			}
			return nil
		}
		names = append(names, aws.ToString(r.RegionName))
	}
	sort.Strings(names)
	return usererr.BadInput("set ec2.region (or AWS_REGION) to one of: "+strings.Join(names, ", "), "ec2: region %q does not exist", p.region)
}

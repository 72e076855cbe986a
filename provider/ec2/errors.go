package ec2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/aws/smithy-go"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

// policyDoc is where the IAM policy clusterctl needs is written down.
const policyDoc = "docs/ec2.md lists the IAM policy clusterctl needs"

// mapErr turns an AWS error into what the user should do about it. what
// names the thing that was being done ("run instance for node \"red\"").
// Bad input becomes a *usererr.InputError (exit status 2); operational
// failures a *usererr.HintError. The original error stays wrapped.
func mapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("ec2: %s: %w", what, err)
	}
	wrapped := fmt.Errorf("ec2: %s: %w", what, err)
	if noCredentials(err) {
		return &usererr.InputError{Err: fmt.Errorf("ec2: %s: no AWS credentials found", what),
			Fix: "configure credentials for the SDK's default chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, `aws configure`, `aws sso login --profile NAME` with ec2.profile or AWS_PROFILE, or an instance role"}
	}
	var dns *net.DNSError
	if errors.As(err, &dns) && strings.Contains(dns.Name, "amazonaws.com") {
		return usererr.WithHint(wrapped, fmt.Sprintf("%q does not resolve: check ec2.region (or AWS_REGION) and this machine's DNS", dns.Name))
	}
	var api smithy.APIError
	if !errors.As(err, &api) {
		return wrapped
	}
	op := ""
	var oe *smithy.OperationError
	if errors.As(err, &oe) {
		op = oe.Service() + ":" + oe.Operation()
		op = strings.Replace(op, "EC2:", "ec2:", 1)
		op = strings.Replace(op, "S3:", "s3:", 1)
		op = strings.Replace(op, "SSM:", "ssm:", 1)
	}
	code := api.ErrorCode()
	switch {
	case code == "UnauthorizedOperation" || code == "AccessDenied" || code == "AccessDeniedException":
		perm := op
		if perm == "" {
			perm = "the permission for this call"
		}
		return usererr.WithHint(wrapped, fmt.Sprintf("your AWS identity is not allowed %s; grant it (%s)", perm, policyDoc))
	case code == "AuthFailure" || code == "InvalidClientTokenId" || code == "SignatureDoesNotMatch" || code == "InvalidAccessKeyId" || code == "ExpiredToken" || code == "RequestExpired":
		return usererr.WithHint(wrapped, "AWS rejected the credentials: check they are current (`aws sts get-caller-identity`; `aws sso login` renews SSO sessions) and that this machine's clock is right")
	case code == "OptInRequired":
		return usererr.WithHint(wrapped, "the account is not subscribed to this service, region or AMI: enable the region in the account settings or accept the AMI's terms in AWS Marketplace, then retry")
	case strings.HasPrefix(code, "InvalidAMIID."):
		return usererr.BadInput("set ec2.ami to an AMI that exists in this region (or remove it to use the latest Debian 12)", "ec2: %s: %w", what, err)
	case code == "InvalidInstanceType" || (code == "InvalidParameterValue" && strings.Contains(api.ErrorMessage(), "instance type")):
		return usererr.BadInput("set ec2.instance_type to a type offered in this region, such as t3.micro", "ec2: %s: %w", what, err)
	case strings.HasPrefix(code, "InvalidSubnetID.") || strings.HasPrefix(code, "InvalidSubnet"):
		return usererr.BadInput("set ec2.subnet_id to a subnet of this region, or remove it to use the default VPC", "ec2: %s: %w", what, err)
	case strings.HasPrefix(code, "InvalidGroup.") || strings.HasPrefix(code, "InvalidGroupId."):
		return usererr.BadInput("set ec2.security_group_id to a group of this region, or remove it to let clusterctl make one", "ec2: %s: %w", what, err)
	case strings.HasPrefix(code, "InvalidKeyPair."):
		return usererr.BadInput("set ec2.key_name to a key pair of this region, or remove it", "ec2: %s: %w", what, err)
	case code == "InsufficientInstanceCapacity" || code == "Unsupported":
		return usererr.WithHint(wrapped, "AWS has no capacity for this instance type here right now: try another ec2.instance_type, or a subnet in another availability zone (ec2.subnet_id)")
	case code == "InstanceLimitExceeded" || code == "VcpuLimitExceeded" || code == "MaxSpotInstanceCountExceeded":
		return usererr.WithHint(wrapped, "the account's instance or vCPU quota for this region is used up: terminate instances you do not need, or ask for more in Service Quotas (EC2 \"Running On-Demand Standard instances\")")
	case code == "RulesPerSecurityGroupLimitExceeded" || code == "SecurityGroupLimitExceeded":
		return usererr.WithHint(wrapped, "the account's security group quota for this region is used up (rules per group, or groups per VPC): delete rules or groups you do not need, list fewer networks in ec2.api_from, or ask for more in Service Quotas (VPC \"Inbound or outbound rules per security group\", \"VPC security groups per Region\")")
	case code == "ParameterNotFound":
		return usererr.BadInput("set ec2.ami to an AMI id, or ec2.image to debian-12 or ubuntu-24.04", "ec2: %s: %w", what, err)
	case code == "UnsupportedOperation" && (strings.Contains(op, "StopInstances") || strings.Contains(op, "StartInstances")):
		return usererr.WithHint(wrapped, "EC2 cannot stop this instance (an instance-store root volume, or a Spot instance that does not allow stopping): `clusterctl down NAME` and `up` instead")
	case code == "OperationNotPermitted" && strings.Contains(op, "StopInstances"):
		return usererr.WithHint(wrapped, "the instance has stop protection (its disableApiStop attribute): turn it off in the EC2 console, or with `aws ec2 modify-instance-attribute --no-disable-api-stop`, then retry")
	case code == "RequestLimitExceeded" || code == "Throttling" || code == "ThrottlingException" || code == "SlowDown":
		return usererr.WithHint(wrapped, "AWS throttled the requests even after retries: wait a minute, or create fewer nodes at once")
	}
	return wrapped
}

// noCredentials reports whether err says the SDK's default chain found no
// credentials at all.
func noCredentials(err error) bool {
	s := err.Error()
	return strings.Contains(s, "failed to retrieve credentials") ||
		strings.Contains(s, "no EC2 IMDS role found") ||
		strings.Contains(s, "failed to refresh cached credentials") ||
		strings.Contains(s, "static credentials are empty")
}

// isCode reports whether err is an AWS API error with one of codes.
func isCode(err error, codes ...string) bool {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return false
	}
	for _, c := range codes {
		if api.ErrorCode() == c {
			return true
		}
	}
	return false
}

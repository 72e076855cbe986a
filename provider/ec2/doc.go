// Package ec2 is the provider that runs each node as an EC2 instance,
// through aws-sdk-go-v2. It registers itself as "ec2".
//
// Credentials and region come from the SDK's default chain (overridden by
// ec2.profile/ec2.region and --profile/--region) and are checked first and
// once. Create runs one instance per node from the AMI named by an SSM
// parameter (or ec2.ami) in the default VPC's default subnet (or
// ec2.subnet_id), with IMDSv2 required, the cluster's tags, a ClientToken
// and gzip+base64 user-data under 16 KB (CheckSeed). The agent is published
// in a private S3 bucket behind a presigned URL (AgentPublisher).
//
// The cluster's security group (clusterctl-CLUSTER, made once; missing
// rules added on a later up) opens the gossip port, TCP and UDP, to members
// of the group itself only; the agents' API port, and SSH when the
// cluster's ssh: switch is on (provider.Env.SSH), to ec2.api_from, which
// defaults to this machine's public address as detected by Preflight
// (internal/publicip). With ec2.security_group_id the user's group is used
// as it is. An instance's PublicAddress is its public IPv4 address, where
// the CLI dials it from outside the VPC. See docs/ec2.md.
package ec2

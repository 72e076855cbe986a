// Package ec2 is clusterctl's AWS EC2 provider, built on aws-sdk-go-v2:
// one instance per node from an AMI (the public SSM parameter for Debian 12
// unless ec2.ami is set), in the default VPC's default subnet unless
// ec2.subnet_id is set, with one security group per cluster, IMDSv2
// required, gzip+base64 user-data checked against EC2's 16 KB limit, and the
// agent binary in a private per-cluster S3 bucket behind a presigned URL.
// Credentials and the region are checked first and once, with a bounded
// credential chain; retries follow EC2's documented eventual consistency.
// See docs/ec2.md.
package ec2

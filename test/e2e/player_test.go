//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/clusterctl/clusterctl/provider/ec2"
	"github.com/clusterctl/clusterctl/provider/openstack/openstacktest"
)

// player is what every e2e harness that plays a cloud's instances shares:
// the instances it booted, each with its agent process (nil while booting
// or when its boot failed), and what went wrong while booting them, which
// the test reports at its checkpoints (checkFailures) rather than from the
// playing goroutine.
type player struct {
	t    *testing.T
	what string // "instance" or "server", for the failure lines

	mu       sync.Mutex
	booted   map[string]*exec.Cmd
	failures []string
}

func newPlayer(t *testing.T, what string) player {
	return player{t: t, what: what, booted: map[string]*exec.Cmd{}}
}

// fail notes a problem found while booting; checkFailures reports it.
func (p *player) fail(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures = append(p.failures, fmt.Sprintf(format, args...))
}

// checkFailures reports, on the test, every problem noted since the last call.
func (p *player) checkFailures() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.failures {
		p.t.Error(p.what + " harness: " + f)
	}
	p.failures = nil
}

// poll calls step at once, then every interval, until ctx ends.
func poll(ctx context.Context, every time.Duration, step func()) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		step()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// powerOffLocked kills the agent of instance id, if it runs: the
// instance is powered off; whoever started the agent reaps it. p.mu held.
func (p *player) powerOffLocked(id string) {
	if cmd := p.booted[id]; cmd != nil {
		_ = cmd.Process.Kill()
		p.booted[id] = nil
	}
}

// stopAll kills and reaps the agents still running, for a harness that
// started them itself (the NAT lab reaps its own).
func (p *player) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cmd := range p.booted {
		if cmd != nil { // nil: never started, or powered off
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
}

// playEC2 asks moto every 300 ms for the instances of cluster ec2ClusterNm
// until ctx ends: it calls boot (which records the instance in booted) for
// each running instance it has not seen, and powers off each instance moto
// has terminated.
func (p *player) playEC2(ctx context.Context, client *awsec2.Client, boot func(context.Context, types.Instance)) {
	poll(ctx, 300*time.Millisecond, func() {
		out, err := client.DescribeInstances(ctx, &awsec2.DescribeInstancesInput{Filters: []types.Filter{
			{Name: aws.String("tag:" + ec2.TagCluster), Values: []string{ec2ClusterNm}}}})
		if err != nil {
			return
		}
		for _, r := range out.Reservations {
			for _, in := range r.Instances {
				id := aws.ToString(in.InstanceId)
				p.mu.Lock()
				_, seen := p.booted[id]
				if seen && in.State.Name == types.InstanceStateNameTerminated {
					p.powerOffLocked(id)
				}
				p.mu.Unlock()
				if !seen && in.State.Name == types.InstanceStateNameRunning {
					boot(ctx, in)
				}
			}
		}
	})
}

// playOpenStack asks cloud every 100 ms for its servers until ctx ends: it
// calls boot for each ACTIVE server with a fixed address that it has not
// booted, and records the agent boot returns (nil when the boot failed)
// unless boot says the server is not ready yet; and it powers off each
// server the cloud no longer has.
func (p *player) playOpenStack(ctx context.Context, cloud *openstacktest.Cloud, boot func(openstacktest.Server) (cmd *exec.Cmd, ready bool)) {
	poll(ctx, 100*time.Millisecond, func() {
		live := map[string]bool{}
		for _, s := range cloud.Servers() {
			live[s.ID] = true
			p.mu.Lock()
			_, seen := p.booted[s.ID]
			p.mu.Unlock()
			if seen || s.Status != "ACTIVE" || s.FixedIP == "" {
				continue
			}
			if cmd, ready := boot(s); ready {
				p.mu.Lock()
				p.booted[s.ID] = cmd
				p.mu.Unlock()
			}
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		for id := range p.booted {
			if !live[id] {
				p.powerOffLocked(id)
			}
		}
	})
}

// ec2UserData reads instance id's user-data as the instance would get it:
// through DescribeInstanceAttribute (which EC2 answers base64-encoded),
// decoded.
func ec2UserData(ctx context.Context, client *awsec2.Client, id string) ([]byte, error) {
	attr, err := client.DescribeInstanceAttribute(ctx, &awsec2.DescribeInstanceAttributeInput{InstanceId: aws.String(id), Attribute: types.InstanceAttributeNameUserData})
	if err != nil {
		return nil, fmt.Errorf("read user-data: %w", err)
	}
	if attr.UserData == nil {
		return nil, errors.New("DescribeInstanceAttribute returned no userData")
	}
	return ec2.DecodeUserData(aws.ToString(attr.UserData.Value))
}

// motoClients are the EC2 and S3 clients of the e2e account at moto's url
// (through hc; nil: the default client), and the AMI the cluster configs
// name.
func motoClients(t *testing.T, url string, hc *http.Client) (*awsec2.Client, *s3.Client, string) {
	t.Helper()
	opts := []func(*config.LoadOptions) error{config.WithRegion(ec2Region), config.WithBaseEndpoint(url),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(ec2KeyID, ec2Secret, ""))}
	if hc != nil {
		opts = append(opts, config.WithHTTPClient(hc))
	}
	cfg, err := config.LoadDefaultConfig(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ec2c := awsec2.NewFromConfig(cfg)
	imgs, err := ec2c.DescribeImages(context.Background(), &awsec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(imgs.Images) == 0 {
		t.Fatalf("moto images: %v", err)
	}
	return ec2c, s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }), aws.ToString(imgs.Images[0].ImageId)
}

// writeEC2Config writes, to path, the config of cluster ec2ClusterNm on
// moto at url with image ami; extra is more of the ec2 section, indented.
func writeEC2Config(t *testing.T, path, url, ami, extra string) {
	t.Helper()
	text := fmt.Sprintf(`cluster: %s
provider: ec2
timeouts:
  join: %s
ec2:
  region: %s
  endpoint_url: %s
  ami: %s
  delete_timeout: 1m
%s`, ec2ClusterNm, ec2JoinTimeout(), ec2Region, url, ami, extra)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkEC2NothingLeft: after down --all, no instance but terminated ones,
// no security group of clusterctl's, no bucket.
func checkEC2NothingLeft(t *testing.T, ec2c *awsec2.Client, s3c *s3.Client) {
	t.Helper()
	ctx := context.Background()
	out, err := ec2c.DescribeInstances(ctx, &awsec2.DescribeInstancesInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if in.State.Name != types.InstanceStateNameTerminated {
				t.Errorf("instance %s is %s after down --all", aws.ToString(in.InstanceId), in.State.Name)
			}
		}
	}
	g, err := ec2c.DescribeSecurityGroups(ctx, &awsec2.DescribeSecurityGroupsInput{Filters: []types.Filter{{Name: aws.String("tag:" + ec2.TagManagedBy), Values: []string{"clusterctl"}}}})
	if err != nil || len(g.SecurityGroups) != 0 {
		t.Errorf("security groups after down --all: %v %d", err, len(g.SecurityGroups))
	}
	b, err := s3c.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil || len(b.Buckets) != 0 {
		t.Errorf("buckets after down --all: %v %d", err, len(b.Buckets))
	}
}

package ec2

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/clusterctl/clusterctl/provider"
)

// resourcesFile, in the cluster's state directory, records the cluster-wide
// resources clusterctl made, so down --all removes exactly those. It is
// written before the resource is made.
const resourcesFile = "ec2.json"

type resources struct {
	Region string `json:"region"`
	// Bucket is the bucket the agent is published in; BucketOwned says
	// clusterctl made it (and so removes it).
	Bucket      string `json:"bucket,omitempty"`
	BucketOwned bool   `json:"bucket_owned,omitempty"`
}

func (p *Provider) loadResources() (resources, error) {
	var r resources
	if p.env.Dir == "" {
		return r, nil
	}
	b, err := os.ReadFile(filepath.Join(p.env.Dir, resourcesFile))
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("ec2: %s: %w", filepath.Join(p.env.Dir, resourcesFile), err)
	}
	return r, nil
}

func (p *Provider) saveResources(r resources) error {
	if p.env.Dir == "" {
		return nil
	}
	if err := os.MkdirAll(p.env.Dir, 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	path := filepath.Join(p.env.Dir, resourcesFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// objectKey is where one agent binary is kept in the bucket.
func (p *Provider) objectKey(sum string) string {
	return "clusterctl/" + p.env.Cluster + "/clusterctl-agent-" + sum
}

// newBucketName makes a globally unique bucket name for the cluster.
func newBucketName(cluster string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	if len(cluster) > 40 {
		cluster = strings.TrimRight(cluster[:40], "-")
	}
	return "clusterctl-" + cluster + "-" + hex.EncodeToString(b[:])
}

// PublishAgent uploads the agent binary to the cluster's private bucket
// (made once, with all public access blocked) unless the same binary is
// there already, and returns a presigned GET URL valid for presign_ttl and
// the binary's SHA-256.
func (p *Provider) PublishAgent(ctx context.Context, cluster, binary string) (string, string, error) {
	if cluster != p.env.Cluster {
		return "", "", fmt.Errorf("ec2: publish agent for cluster %q from a provider of cluster %q", cluster, p.env.Cluster)
	}
	sum, size, err := hashFile(binary)
	if err != nil {
		return "", "", provider.BadInput("build the agent with `make build`, or set agent.binary", "ec2: agent binary: %w", err)
	}
	if err := p.clients(ctx); err != nil {
		return "", "", err
	}
	bucket, err := p.ensureBucket(ctx)
	if err != nil {
		return "", "", err
	}
	key := p.objectKey(sum)
	_, err = p.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil && !isCode(err, "NotFound", "NoSuchKey") {
		return "", "", mapErr(fmt.Sprintf("look for the agent in bucket %q", bucket), err)
	}
	if err != nil {
		f, err := os.Open(binary)
		if err != nil {
			return "", "", err
		}
		defer f.Close()
		_, err = p.s3.PutObject(ctx, &s3.PutObjectInput{
			Bucket:        aws.String(bucket),
			Key:           aws.String(key),
			Body:          f,
			ContentLength: aws.Int64(size),
			ContentType:   aws.String("application/octet-stream"),
			Metadata:      map[string]string{"sha256": sum},
		})
		if err != nil {
			return "", "", mapErr(fmt.Sprintf("upload the agent to bucket %q", bucket), err)
		}
	}
	req, err := s3.NewPresignClient(p.s3).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)},
		s3.WithPresignExpires(p.cfg.PresignTTL))
	if err != nil {
		return "", "", mapErr("presign the agent's URL", err)
	}
	return req.URL, sum, nil
}

func hashFile(path string) (sum string, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %q: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// ensureBucket returns the bucket to publish in: ec2.bucket, else the one
// recorded for this cluster, else a new private bucket.
func (p *Provider) ensureBucket(ctx context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.Bucket != "" {
		r, err := p.loadResources()
		if err != nil {
			return "", err
		}
		if r.Bucket != p.cfg.Bucket {
			r.Region, r.Bucket, r.BucketOwned = p.region, p.cfg.Bucket, false
			if err := p.saveResources(r); err != nil {
				return "", err
			}
		}
		return p.cfg.Bucket, nil
	}
	r, err := p.loadResources()
	if err != nil {
		return "", err
	}
	if r.Bucket != "" && r.BucketOwned {
		_, err := p.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(r.Bucket)})
		if err == nil {
			return r.Bucket, nil
		}
		if !isCode(err, "NotFound", "NoSuchBucket") {
			return "", mapErr(fmt.Sprintf("look for bucket %q", r.Bucket), err)
		}
	} else {
		r = resources{Region: p.region, Bucket: newBucketName(p.env.Cluster), BucketOwned: true}
	}
	// Write-ahead: the name is recorded before the bucket exists.
	if err := p.saveResources(r); err != nil {
		return "", err
	}
	in := &s3.CreateBucketInput{Bucket: aws.String(r.Bucket)}
	if p.region != "us-east-1" {
		in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(p.region)}
	}
	if _, err := p.s3.CreateBucket(ctx, in); err != nil && !isCode(err, "BucketAlreadyOwnedByYou") {
		return "", mapErr(fmt.Sprintf("create bucket %q", r.Bucket), err)
	}
	if _, err := p.s3.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{
		Bucket: aws.String(r.Bucket),
		PublicAccessBlockConfiguration: &s3types.PublicAccessBlockConfiguration{
			BlockPublicAcls: aws.Bool(true), IgnorePublicAcls: aws.Bool(true),
			BlockPublicPolicy: aws.Bool(true), RestrictPublicBuckets: aws.Bool(true),
		},
	}); err != nil {
		return "", mapErr(fmt.Sprintf("block public access to bucket %q", r.Bucket), err)
	}
	var tags []s3types.Tag
	for _, t := range p.clusterTags() {
		tags = append(tags, s3types.Tag{Key: t.Key, Value: t.Value})
	}
	if _, err := p.s3.PutBucketTagging(ctx, &s3.PutBucketTaggingInput{Bucket: aws.String(r.Bucket), Tagging: &s3types.Tagging{TagSet: tags}}); err != nil {
		return "", mapErr(fmt.Sprintf("tag bucket %q", r.Bucket), err)
	}
	return r.Bucket, nil
}

// CleanupCluster removes what clusterctl made for the whole cluster: its
// security group (retrying while terminated instances still hold it, within
// delete_timeout) and the agent objects and the bucket it made. A bucket
// of the user's (ec2.bucket) keeps everything but clusterctl's objects.
func (p *Provider) CleanupCluster(ctx context.Context, cluster string) error {
	if cluster != p.env.Cluster {
		return fmt.Errorf("ec2: clean up cluster %q from a provider of cluster %q", cluster, p.env.Cluster)
	}
	if err := p.clients(ctx); err != nil {
		return err
	}
	var errs []error
	if err := p.deleteGroups(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := p.deleteBucket(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (p *Provider) deleteGroups(ctx context.Context) error {
	out, err := p.ec2.DescribeSecurityGroups(ctx, &awsec2.DescribeSecurityGroupsInput{Filters: []types.Filter{
		{Name: aws.String("tag:" + TagCluster), Values: []string{p.env.Cluster}},
		{Name: aws.String("tag:" + TagManagedBy), Values: []string{ManagedBy}},
	}})
	if err != nil {
		return mapErr("list the cluster's security groups", err)
	}
	var errs []error
	for _, g := range out.SecurityGroups {
		id := aws.ToString(g.GroupId)
		if id == p.cfg.SecurityGroupID {
			continue // the user's
		}
		deadline := time.Now().Add(p.cfg.DeleteTimeout)
		delay := time.Second
		for {
			_, err := p.ec2.DeleteSecurityGroup(ctx, &awsec2.DeleteSecurityGroupInput{GroupId: aws.String(id)})
			if err == nil || isCode(err, "InvalidGroup.NotFound") {
				break
			}
			// Instances that are still shutting down hold the group.
			if !isCode(err, "DependencyViolation") || time.Now().Add(delay).After(deadline) {
				errs = append(errs, mapErr(fmt.Sprintf("delete security group %q", id), err))
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(delay):
			}
			delay = min(2*delay, 15*time.Second)
		}
	}
	p.mu.Lock()
	if p.group != p.cfg.SecurityGroupID {
		p.group = ""
	}
	p.mu.Unlock()
	return errors.Join(errs...)
}

func (p *Provider) deleteBucket(ctx context.Context) error {
	r, err := p.loadResources()
	if err != nil {
		return err
	}
	if r.Bucket == "" {
		return nil
	}
	prefix := "clusterctl/" + p.env.Cluster + "/"
	if r.BucketOwned {
		prefix = ""
	}
	pg := s3.NewListObjectsV2Paginator(p.s3, &s3.ListObjectsV2Input{Bucket: aws.String(r.Bucket), Prefix: aws.String(prefix)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if isCode(err, "NoSuchBucket") {
			return p.forgetBucket()
		}
		if err != nil {
			return mapErr(fmt.Sprintf("list bucket %q", r.Bucket), err)
		}
		for _, o := range page.Contents {
			if _, err := p.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(r.Bucket), Key: o.Key}); err != nil {
				return mapErr(fmt.Sprintf("delete %q from bucket %q", aws.ToString(o.Key), r.Bucket), err)
			}
		}
	}
	if r.BucketOwned {
		if _, err := p.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(r.Bucket)}); err != nil && !isCode(err, "NoSuchBucket") {
			return mapErr(fmt.Sprintf("delete bucket %q", r.Bucket), err)
		}
	}
	return p.forgetBucket()
}

func (p *Provider) forgetBucket() error {
	if p.env.Dir == "" {
		return nil
	}
	err := os.Remove(filepath.Join(p.env.Dir, resourcesFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

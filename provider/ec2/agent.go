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
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/clusterctl/clusterctl/internal/atomicfile"
	"github.com/clusterctl/clusterctl/internal/usererr"
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
	return atomicfile.WriteFile(filepath.Join(p.env.Dir, resourcesFile), append(b, '\n'), 0o600)
}

// objectKey is where one agent binary is kept in the bucket.
func (p *Provider) objectKey(sum string) string {
	return "clusterctl/" + p.env.Cluster + "/clusterctl-agent-" + sum
}

// bucketPrefix is how the names of the cluster's buckets begin.
func bucketPrefix(cluster string) string {
	if len(cluster) > 40 {
		cluster = strings.TrimRight(cluster[:40], "-")
	}
	return "clusterctl-" + cluster + "-"
}

// newBucketName makes a globally unique bucket name for the cluster.
func newBucketName(cluster string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return bucketPrefix(cluster) + hex.EncodeToString(b[:])
}

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// AgentURL returns the presigned GET URL (valid presign_ttl) the nodes will
// download the agent whose SHA-256 is sum from. It makes nothing at AWS: it
// chooses the bucket (ec2.bucket, else the one recorded in ec2.json, else a
// new name, recorded there before the bucket exists) and signs the URL
// locally. UploadAgent makes the URL serve the binary.
func (p *Provider) AgentURL(ctx context.Context, cluster, sum string) (string, error) {
	if cluster != p.env.Cluster {
		return "", fmt.Errorf("ec2: agent URL for cluster %q from a provider of cluster %q", cluster, p.env.Cluster)
	}
	if !sha256RE.MatchString(sum) {
		return "", fmt.Errorf("ec2: agent URL: %q is not a SHA-256 in lower-case hex", sum)
	}
	if err := p.ready(ctx); err != nil {
		return "", err
	}
	bucket, _, err := p.agentBucket()
	if err != nil {
		return "", err
	}
	req, err := s3.NewPresignClient(p.s3).PresignGetObject(context.WithValue(ctx, presigning{}, true), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(p.objectKey(sum))},
		s3.WithPresignExpires(p.cfg.PresignTTL))
	if err != nil {
		return "", mapErr("presign the agent's URL", err)
	}
	return req.URL, nil
}

// UploadAgent makes AgentURL's URL serve binary, whose SHA-256 must be sum:
// it makes the bucket if clusterctl owns it and it does not exist (private,
// tagged), and uploads the binary unless it is there already. Idempotent.
func (p *Provider) UploadAgent(ctx context.Context, cluster, binary, sum string) error {
	if cluster != p.env.Cluster {
		return fmt.Errorf("ec2: upload the agent for cluster %q from a provider of cluster %q", cluster, p.env.Cluster)
	}
	got, size, err := hashFile(binary)
	if err != nil {
		return usererr.BadInput("build the agent with `make build`, or set agent.binary", "ec2: agent binary: %w", err)
	}
	if got != sum {
		return fmt.Errorf("ec2: agent binary %q has SHA-256 %s, not %s: it changed after up planned; run up again", binary, got, sum)
	}
	if err := p.ready(ctx); err != nil {
		return err
	}
	bucket, owned, err := p.agentBucket()
	if err != nil {
		return err
	}
	if owned {
		if err := p.makeBucket(ctx, bucket); err != nil {
			return err
		}
	}
	key := p.objectKey(sum)
	_, err = p.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err == nil {
		return nil
	}
	if !isCode(err, "NotFound", "NoSuchKey") {
		return mapErr(fmt.Sprintf("look for the agent in bucket %q", bucket), err)
	}
	f, err := os.Open(binary)
	if err != nil {
		return err
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
		return mapErr(fmt.Sprintf("upload the agent to bucket %q", bucket), err)
	}
	return nil
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

// agentBucket returns the bucket to publish in and whether clusterctl owns
// it: ec2.bucket, else the one recorded for this cluster, else a new name.
// The choice is recorded in ec2.json before anything is made (write-ahead),
// so AgentURL and a later UploadAgent agree and down --all finds it.
func (p *Provider) agentBucket() (string, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, err := p.loadResources()
	if err != nil {
		return "", false, err
	}
	if p.cfg.Bucket != "" {
		if r.Bucket != p.cfg.Bucket {
			r.Region, r.Bucket, r.BucketOwned = p.region, p.cfg.Bucket, false
			if err := p.saveResources(r); err != nil {
				return "", false, err
			}
		}
		return p.cfg.Bucket, false, nil
	}
	if r.Bucket != "" && r.BucketOwned {
		return r.Bucket, true, nil
	}
	if p.env.Dir == "" && p.bucket != "" {
		return p.bucket, true, nil // no state directory: remember it here
	}
	r = resources{Region: p.region, Bucket: newBucketName(p.env.Cluster), BucketOwned: true}
	if err := p.saveResources(r); err != nil {
		return "", false, err
	}
	p.bucket = r.Bucket
	return r.Bucket, true, nil
}

// makeBucket makes clusterctl's bucket unless it exists, and (again, as an
// earlier up may have been cut off between the calls) blocks all public
// access to it and tags it for the cluster.
func (p *Provider) makeBucket(ctx context.Context, bucket string) error {
	_, err := p.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)})
	if err != nil && !isCode(err, "NotFound", "NoSuchBucket") {
		return mapErr(fmt.Sprintf("look for bucket %q", bucket), err)
	}
	if err != nil {
		in := &s3.CreateBucketInput{Bucket: aws.String(bucket)}
		if p.region != "us-east-1" {
			in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(p.region)}
		}
		if _, err := p.s3.CreateBucket(ctx, in); err != nil && !isCode(err, "BucketAlreadyOwnedByYou") {
			return mapErr(fmt.Sprintf("create bucket %q", bucket), err)
		}
	}
	if _, err := p.s3.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{
		Bucket: aws.String(bucket),
		PublicAccessBlockConfiguration: &s3types.PublicAccessBlockConfiguration{
			BlockPublicAcls: aws.Bool(true), IgnorePublicAcls: aws.Bool(true),
			BlockPublicPolicy: aws.Bool(true), RestrictPublicBuckets: aws.Bool(true),
		},
	}); err != nil {
		return mapErr(fmt.Sprintf("block public access to bucket %q", bucket), err)
	}
	var tags []s3types.Tag
	for _, t := range p.clusterTags() {
		tags = append(tags, s3types.Tag{Key: t.Key, Value: t.Value})
	}
	if _, err := p.s3.PutBucketTagging(ctx, &s3.PutBucketTaggingInput{Bucket: aws.String(bucket), Tagging: &s3types.Tagging{TagSet: tags}}); err != nil {
		return mapErr(fmt.Sprintf("tag bucket %q", bucket), err)
	}
	return nil
}

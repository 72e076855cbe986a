package ec2

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/clusterctl/clusterctl/provider"
)

// deleteParallel is how many instances CleanupCluster deletes at once.
const deleteParallel = 8

// owned is everything at AWS that belongs to one cluster.
type owned struct {
	instances []provider.Instance // tagged for the cluster and not terminated
	groups    []types.SecurityGroup
	buckets   []ownedBucket
}

type ownedBucket struct {
	name  string
	owned bool // clusterctl made it: remove it; else only clusterctl's objects
}

// names says, one line each, what CleanupCluster removes.
func (o owned) names(cluster string) []string {
	var out []string
	for _, in := range o.instances {
		out = append(out, fmt.Sprintf("instance %s (node %q, %s)", in.ID, in.Name, in.Detail))
	}
	for _, g := range o.groups {
		out = append(out, fmt.Sprintf("security group %s (%s)", aws.ToString(g.GroupId), aws.ToString(g.GroupName)))
	}
	for _, b := range o.buckets {
		if b.owned {
			out = append(out, fmt.Sprintf("bucket %s and its objects", b.name))
		} else {
			out = append(out, fmt.Sprintf("objects under clusterctl/%s/ in bucket %s", cluster, b.name))
		}
	}
	return out
}

// ClusterResources names, one line each, everything CleanupCluster would
// remove for the cluster: its instances that are not terminated (strays
// included), its security group and its bucket. It needs no state file.
func (p *Provider) ClusterResources(ctx context.Context, cluster string) ([]string, error) {
	if cluster != p.env.Cluster {
		return nil, fmt.Errorf("ec2: resources of cluster %q from a provider of cluster %q", cluster, p.env.Cluster)
	}
	if err := p.ready(ctx); err != nil {
		return nil, err
	}
	o, err := p.findOwned(ctx)
	if err != nil {
		return nil, err
	}
	return o.names(cluster), nil
}

// CleanupCluster removes everything tagged for the cluster, whether or not
// clusterctl's state or ec2.json knows it: the instances that are not
// terminated (and waits for them, within delete_timeout), the security
// group (retrying while instances that are shutting down still hold it),
// and the bucket clusterctl made with its objects. A bucket of the user's
// (ec2.bucket) keeps everything but clusterctl's objects. Nothing left is
// not an error. ClusterResources names the same things beforehand.
func (p *Provider) CleanupCluster(ctx context.Context, cluster string) error {
	if cluster != p.env.Cluster {
		return fmt.Errorf("ec2: clean up cluster %q from a provider of cluster %q", cluster, p.env.Cluster)
	}
	if err := p.ready(ctx); err != nil {
		return err
	}
	o, err := p.findOwned(ctx)
	if err != nil {
		return err
	}
	var errs []error
	if err := p.deleteAll(ctx, o.instances); err != nil {
		errs = append(errs, err)
	}
	if err := p.deleteGroups(ctx, o.groups); err != nil {
		errs = append(errs, err)
	}
	for _, b := range o.buckets {
		if err := p.emptyBucket(ctx, b); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		errs = append(errs, p.forgetResources())
	}
	return errors.Join(errs...)
}

// findOwned lists what belongs to the cluster, by tag (and ec2.json).
func (p *Provider) findOwned(ctx context.Context) (owned, error) {
	var o owned
	list, err := p.List(ctx, p.env.Cluster)
	if err != nil {
		return o, err
	}
	for _, in := range list {
		if in.State != provider.StateTerminated {
			o.instances = append(o.instances, in)
		}
	}
	out, err := p.ec2.DescribeSecurityGroups(ctx, &awsec2.DescribeSecurityGroupsInput{Filters: []types.Filter{
		{Name: aws.String("tag:" + TagCluster), Values: []string{p.env.Cluster}},
		{Name: aws.String("tag:" + TagManagedBy), Values: []string{ManagedBy}},
	}})
	if err != nil {
		return o, mapErr("list the cluster's security groups", err)
	}
	for _, g := range out.SecurityGroups {
		if aws.ToString(g.GroupId) != p.cfg.SecurityGroupID { // never the user's
			o.groups = append(o.groups, g)
		}
	}
	o.buckets, err = p.findBuckets(ctx)
	return o, err
}

// findBuckets returns the bucket ec2.json records, the user's ec2.bucket
// (for clusterctl's objects in it), and every bucket in the region tagged
// for the cluster: ec2.json may be gone.
func (p *Provider) findBuckets(ctx context.Context) ([]ownedBucket, error) {
	r, err := p.loadResources()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []ownedBucket
	add := func(b ownedBucket) {
		if b.name != "" && !seen[b.name] {
			seen[b.name] = true
			out = append(out, b)
		}
	}
	add(ownedBucket{name: r.Bucket, owned: r.BucketOwned})
	add(ownedBucket{name: p.cfg.Bucket})
	prefix := bucketPrefix(p.env.Cluster)
	pg := s3.NewListBucketsPaginator(p.s3, &s3.ListBucketsInput{Prefix: aws.String(prefix), BucketRegion: aws.String(p.region)})
	var names []string
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, mapErr("list buckets", err)
		}
		for _, b := range page.Buckets {
			name := aws.ToString(b.Name)
			// The service may ignore the filters.
			if !strings.HasPrefix(name, prefix) || (aws.ToString(b.BucketRegion) != "" && aws.ToString(b.BucketRegion) != p.region) {
				continue
			}
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		if seen[name] {
			continue
		}
		tg, err := p.s3.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: aws.String(name)})
		if isCode(err, "NoSuchTagSet", "NoSuchBucket") {
			continue
		}
		if err != nil {
			return nil, mapErr(fmt.Sprintf("read the tags of bucket %q", name), err)
		}
		tags := map[string]string{}
		for _, t := range tg.TagSet {
			tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
		if tags[TagCluster] == p.env.Cluster && tags[TagManagedBy] == ManagedBy {
			add(ownedBucket{name: name, owned: true})
		}
	}
	return out, nil
}

// deleteAll deletes instances, deleteParallel at a time, each waiting for
// its own termination.
func (p *Provider) deleteAll(ctx context.Context, list []provider.Instance) error {
	sem := make(chan struct{}, deleteParallel)
	errs := make([]error, len(list))
	var wg sync.WaitGroup
	for i, in := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = p.Delete(ctx, in.ID)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (p *Provider) deleteGroups(ctx context.Context, groups []types.SecurityGroup) error {
	var errs []error
	for _, g := range groups {
		id := aws.ToString(g.GroupId)
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

// emptyBucket deletes clusterctl's objects in b, and b itself if
// clusterctl made it.
func (p *Provider) emptyBucket(ctx context.Context, b ownedBucket) error {
	prefix := "clusterctl/" + p.env.Cluster + "/"
	if b.owned {
		prefix = ""
	}
	pg := s3.NewListObjectsV2Paginator(p.s3, &s3.ListObjectsV2Input{Bucket: aws.String(b.name), Prefix: aws.String(prefix)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if isCode(err, "NoSuchBucket") {
			return nil
		}
		if err != nil {
			return mapErr(fmt.Sprintf("list bucket %q", b.name), err)
		}
		for _, o := range page.Contents {
			if _, err := p.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.name), Key: o.Key}); err != nil {
				return mapErr(fmt.Sprintf("delete %q from bucket %q", aws.ToString(o.Key), b.name), err)
			}
		}
	}
	if b.owned {
		if _, err := p.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(b.name)}); err != nil && !isCode(err, "NoSuchBucket") {
			return mapErr(fmt.Sprintf("delete bucket %q", b.name), err)
		}
	}
	return nil
}

// forgetResources removes ec2.json once everything it names is gone.
func (p *Provider) forgetResources() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bucket = ""
	if p.env.Dir == "" {
		return nil
	}
	err := os.Remove(filepath.Join(p.env.Dir, resourcesFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

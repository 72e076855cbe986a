package ec2

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

// backoff is a capped exponential backoff within a time window.
type backoff struct {
	First, Max, Window time.Duration
}

// eventualConsistency follows AWS's guidance for the EC2 API ("Eventual
// consistency in the Amazon EC2 API"): a resource just made may be unknown
// to the next call (InvalidInstanceID.NotFound after RunInstances,
// InvalidGroup.NotFound after CreateSecurityGroup); ask again with an
// exponential backoff that starts at a couple of seconds and grows up to a
// few minutes.
var eventualConsistency = backoff{First: 2 * time.Second, Max: 30 * time.Second, Window: 3 * time.Minute}

// retrier counts down one backoff.
type retrier struct {
	b        backoff
	delay    time.Duration
	deadline time.Time
}

func (b backoff) start(window time.Duration) *retrier {
	if window <= 0 || window > b.Window {
		window = b.Window
	}
	return &retrier{b: b, delay: b.First, deadline: time.Now().Add(window)}
}

// wait sleeps the next delay and reports false when that would pass the
// window (without sleeping) or ctx ends.
func (r *retrier) wait(ctx context.Context) (bool, error) {
	if time.Now().Add(r.delay).After(r.deadline) {
		return false, nil
	}
	t := time.NewTimer(r.delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-t.C:
	}
	r.delay = min(2*r.delay, r.b.Max)
	return true, nil
}

// terminate asks EC2 to terminate instance id. InvalidInstanceID.NotFound
// does not mean the instance is gone: right after RunInstances the id may
// not have reached every part of EC2 yet, and the instance may well be
// running. So the instance is looked for by the cluster's tag, and the
// request repeated, until EC2 knows it or the consistency window ends.
// gone reports that EC2 never knew the id in that window, or that it was
// terminated already.
func (p *Provider) terminate(ctx context.Context, id string) (gone bool, err error) {
	r := p.consistency.start(p.cfg.DeleteTimeout)
	for {
		_, err := p.ec2.TerminateInstances(ctx, &awsec2.TerminateInstancesInput{InstanceIds: []string{id}})
		if err == nil {
			return false, nil
		}
		if isCode(err, "InvalidInstanceID.Malformed") {
			return true, nil // no instance can have that id
		}
		if !isCode(err, "InvalidInstanceID.NotFound") {
			return false, mapErr(fmt.Sprintf("terminate instance %q", id), err)
		}
		inst, found, err := p.findByID(ctx, id)
		if err != nil {
			return false, err
		}
		if found && inst.State == provider.StateTerminated {
			return true, nil
		}
		// Not visible yet, or visible but not yet to TerminateInstances.
		more, err := r.wait(ctx)
		if err != nil {
			return false, fmt.Errorf("ec2: terminate instance %q: %w", id, err)
		}
		if !more {
			if found {
				return false, usererr.WithHint(fmt.Errorf("ec2: terminate instance %q: EC2 lists it (%s) but still answers InvalidInstanceID.NotFound", id, inst.Detail),
					"EC2 takes a while to make a new instance known to all its API calls: run `clusterctl down` again in a minute")
			}
			return true, nil
		}
	}
}

// findByID looks for instance id among the instances tagged for the
// cluster. A filtered DescribeInstances answers an empty list where a
// lookup by id answers InvalidInstanceID.NotFound.
func (p *Provider) findByID(ctx context.Context, id string) (provider.Instance, bool, error) {
	list, err := p.describe(ctx, []types.Filter{
		{Name: aws.String("tag:" + TagCluster), Values: []string{p.env.Cluster}},
		{Name: aws.String("instance-id"), Values: []string{id}},
	}, nil)
	if err != nil {
		return provider.Instance{}, false, mapErr(fmt.Sprintf("look for instance %q", id), err)
	}
	for _, in := range list {
		if in.ID == id {
			return in, true, nil
		}
	}
	return provider.Instance{}, false, nil
}

// waitTerminated polls the instance (by tag, see findByID) until EC2
// reports it terminated, within delete_timeout. Each call waits on its own
// instance only, so Deletes run at once wait at once.
func (p *Provider) waitTerminated(ctx context.Context, id string) error {
	deadline := time.Now().Add(p.cfg.DeleteTimeout)
	delay := time.Second
	last := "not listed"
	for {
		inst, found, err := p.findByID(ctx, id)
		if err != nil {
			return err
		}
		if found && inst.State == provider.StateTerminated {
			return nil
		}
		if found {
			last = inst.Detail
		}
		if time.Now().Add(delay).After(deadline) {
			return usererr.WithHint(fmt.Errorf("ec2: instance %q was asked to terminate but is not terminated within %s (last state: %s)", id, p.cfg.DeleteTimeout, last),
				"see the instance in the EC2 console; run `clusterctl down` again to wait once more (ec2.delete_timeout)")
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("ec2: wait for instance %q to terminate: %w", id, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 15*time.Second)
	}
}

// groupNotVisible is the error for a security group clusterctl made that
// EC2 still does not know after the consistency window: not bad input (the
// user configured no group), but EC2's eventual consistency.
func groupNotVisible(what, group string, err error) error {
	return usererr.WithHint(fmt.Errorf("ec2: %s: security group %q, which clusterctl made for the cluster, is still unknown to EC2: %w", what, group, err),
		"EC2 makes a new security group known to all its API calls eventually, usually within seconds: run `clusterctl up` again; it reuses the group")
}

// retryGroupNotFound runs call again while it fails with
// InvalidGroup.NotFound, within the consistency window. It returns the last
// error.
func (p *Provider) retryGroupNotFound(ctx context.Context, call func() error) error {
	r := p.consistency.start(0)
	for {
		err := call()
		if !isCode(err, "InvalidGroup.NotFound") {
			return err
		}
		more, werr := r.wait(ctx)
		if werr != nil {
			return fmt.Errorf("%w (%w)", err, werr)
		}
		if !more {
			return err
		}
	}
}

package ec2

import (
	"context"
	"fmt"
	"time"

	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

var _ provider.PowerManager = (*Provider)(nil)

// pollMax caps the delay between two looks at an instance's state while
// Stop or Start waits for EC2 to move it.
const pollMax = 15 * time.Second

// Stop stops the instance (StopInstances: the guest gets an ACPI shutdown)
// and waits, bounded by ctx, until EC2 reports it stopped. EC2 moves an
// instance running → stopping → stopped; a pending one cannot be stopped
// yet (IncorrectInstanceState), so Stop waits for it to run first. A
// stopped instance is left as it is. A terminated (or terminating)
// instance is an error wrapping provider.ErrNotFound.
func (p *Provider) Stop(ctx context.Context, id string) error {
	return p.power(ctx, id, "stop", types.InstanceStateNameStopped)
}

// Start starts a stopped instance (StartInstances) and returns once EC2
// accepted it: the instance is pending, then running, with a new public
// IPv4 address that Status reports once EC2 has assigned it. A stopping
// instance cannot be started yet (IncorrectInstanceState), so Start first
// waits, bounded by ctx, until it is stopped. A pending or running
// instance is left as it is.
func (p *Provider) Start(ctx context.Context, id string) error {
	return p.power(ctx, id, "start", types.InstanceStateNameRunning)
}

// power moves instance id towards want (stopped or running). It looks at
// the state, asks EC2 for the change when the state allows it, and looks
// again, with a growing delay, until the state is reached (Stop) or the
// request was accepted (Start). EC2 may not know an instance just made
// (InvalidInstanceID.NotFound): that is asked again within the
// eventual-consistency window, as Delete does.
func (p *Provider) power(ctx context.Context, id, verb string, want types.InstanceStateName) error {
	if !validInstanceID(id) {
		return fmt.Errorf("ec2: %s instance %q: %w", verb, id, provider.ErrNotFound)
	}
	if err := p.ready(ctx); err != nil {
		return err
	}
	what := fmt.Sprintf("%s instance %q", verb, id)
	consistency := p.consistency.start(0)
	delay := p.pollFirst
	for {
		state, err := p.instanceState(ctx, id, consistency)
		if err != nil {
			return fmt.Errorf("ec2: %s: %w", what, err)
		}
		switch {
		case state == want:
			return nil
		case want == types.InstanceStateNameRunning && state == types.InstanceStateNamePending:
			return nil // already on its way up: nothing to start
		case state == types.InstanceStateNameTerminated || state == types.InstanceStateNameShuttingDown:
			return usererr.WithHint(fmt.Errorf("ec2: %s: the instance is %s: %w", what, state, provider.ErrNotFound),
				"a terminated instance cannot be stopped or started; `clusterctl down NAME` forgets it")
		case want == types.InstanceStateNameStopped && state == types.InstanceStateNameRunning,
			want == types.InstanceStateNameRunning && state == types.InstanceStateNameStopped:
			err := p.request(ctx, id, want)
			switch {
			case err == nil && want == types.InstanceStateNameRunning:
				return nil // accepted; Start does not wait for the guest
			case err == nil:
				// stopping: wait below.
			case isCode(err, "IncorrectInstanceState", "InvalidInstanceID.NotFound"):
				// The state moved since it was read, or the id is not
				// known to StopInstances yet: look again.
			default:
				return mapErr(what, err)
			}
		}
		// pending (Stop), stopping (Start and Stop): wait for EC2.
		if err := sleep(ctx, delay); err != nil {
			return fmt.Errorf("ec2: %s: wait for the instance to be %s (it is %s): %w", what, want, state, err)
		}
		delay = min(2*delay, pollMax)
	}
}

// request sends StopInstances or StartInstances for one instance.
func (p *Provider) request(ctx context.Context, id string, want types.InstanceStateName) error {
	if want == types.InstanceStateNameStopped {
		_, err := p.ec2.StopInstances(ctx, &awsec2.StopInstancesInput{InstanceIds: []string{id}})
		return err
	}
	_, err := p.ec2.StartInstances(ctx, &awsec2.StartInstancesInput{InstanceIds: []string{id}})
	return err
}

// instanceState reads the EC2 state of instance id. An id EC2 does not
// know is asked again, with r's backoff, until EC2 knows it; when r's
// window ends it is an error wrapping provider.ErrNotFound.
func (p *Provider) instanceState(ctx context.Context, id string, r *retrier) (types.InstanceStateName, error) {
	for {
		out, err := p.ec2.DescribeInstances(ctx, &awsec2.DescribeInstancesInput{InstanceIds: []string{id}})
		notFound := isCode(err, "InvalidInstanceID.NotFound")
		if err != nil && !notFound {
			return "", mapErr(fmt.Sprintf("describe instance %q", id), err)
		}
		if err == nil {
			for _, res := range out.Reservations {
				for _, in := range res.Instances {
					if in.State != nil {
						return in.State.Name, nil
					}
				}
			}
		}
		more, werr := r.wait(ctx)
		if werr != nil {
			return "", werr
		}
		if !more {
			return "", fmt.Errorf("EC2 does not know the instance: %w", provider.ErrNotFound)
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

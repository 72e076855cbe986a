package ec2

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/clusterctl/clusterctl/provider"
)

var _ provider.InFlightFinder = (*Provider)(nil)

// FindInFlight returns the instances, not terminated, that a RunInstances
// for the node called name with nonce made, found by the request's
// ClientToken (DescribeInstances' client-token filter; AWS keeps the token
// for at least 24 hours after the instance is terminated). Such a request
// may reach EC2 just before up is interrupted and complete after down has
// listed the cluster's instances by tag, and a new instance may not be
// visible at once (eventual consistency): so when the token finds nothing,
// FindInFlight asks again with the consistency backoff, for its whole
// window (bounded by delete_timeout), and only then answers that the
// create made nothing. A token that finds only terminated instances is
// settled at once. An error (the lookup failed, ctx ended) means the
// create is not settled.
func (p *Provider) FindInFlight(ctx context.Context, name, nonce string) ([]provider.Instance, error) {
	if name == "" || nonce == "" {
		return nil, fmt.Errorf("ec2: find the create of node %q: a name and a nonce are needed", name)
	}
	if err := p.ready(ctx); err != nil {
		return nil, err
	}
	token := clientToken(p.env.Cluster, name, nonce)
	what := fmt.Sprintf("look for node %q by its RunInstances ClientToken", name)
	r := p.consistency.start(p.cfg.DeleteTimeout)
	for {
		list, err := p.describe(ctx, []types.Filter{{Name: aws.String("client-token"), Values: []string{token}}}, nil)
		if err != nil {
			return nil, mapErr(what, err)
		}
		if len(list) > 0 {
			var live []provider.Instance
			for _, in := range list {
				if in.State != provider.StateTerminated {
					live = append(live, in)
				}
			}
			return live, nil
		}
		more, err := r.wait(ctx)
		if err != nil {
			return nil, fmt.Errorf("ec2: %s: %w", what, err)
		}
		if !more {
			return nil, nil
		}
	}
}

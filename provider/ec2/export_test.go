package ec2

import (
	"context"
	"time"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

// SetConsistency shortens how long p asks again after EC2 says a resource
// it just made does not exist (AWS's guidance is minutes).
func SetConsistency(p *Provider, first, window time.Duration) {
	p.consistency = backoff{First: first, Max: first, Window: window}
}

// SetPoll shortens the first delay between two looks at an instance's
// state while Stop or Start waits (a second in use).
func SetPoll(p *Provider, first time.Duration) { p.pollFirst = first }

// PublishAgent (tests only) makes the agent binary downloadable by the nodes: AgentURL,
// then UploadAgent. It returns the URL and the binary's SHA-256.
func (p *Provider) PublishAgent(ctx context.Context, cluster, binary string) (string, string, error) {
	sum, _, err := hashFile(binary)
	if err != nil {
		return "", "", usererr.BadInput("build the agent with `make build`, or set agent.binary", "ec2: agent binary: %w", err)
	}
	url, err := p.AgentURL(ctx, cluster, sum)
	if err != nil {
		return "", "", err
	}
	if err := p.UploadAgent(ctx, cluster, binary, sum); err != nil {
		return "", "", err
	}
	return url, sum, nil
}

package openstack

import "context"

// PublishAgent (tests only) is AgentURL followed by UploadAgent, returning the URL and
// the binary's SHA-256.
func (p *Provider) PublishAgent(ctx context.Context, cluster, binary string) (string, string, error) {
	sum, err := fileSHA256(binary)
	if err != nil {
		return "", "", err
	}
	u, err := p.AgentURL(ctx, cluster, sum)
	if err != nil {
		return "", "", err
	}
	if err := p.UploadAgent(ctx, cluster, binary, sum); err != nil {
		return "", "", err
	}
	return u, sum, nil
}

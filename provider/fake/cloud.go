package fake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

// Cloud is the fake in the shape of a cloud provider (EC2, OpenStack): the
// provider assigns node addresses itself in a subnet it reports
// (NodeNetwork), hosts the agent binary (AgentPublisher), owns cluster-wide
// resources (ClusterCleaner), checks credentials first (Preflighter) and
// limits the user-data (SeedChecker). It does not choose addresses for
// clusterctl (no AddressChooser): the nodes of a batch seed from the first.
//
// Like the real services it is strict: AgentURL makes nothing; UploadAgent
// checks that the binary has the SHA-256 the URL was made for; and
// CleanupCluster fails while a machine of the cluster exists (a security
// group still in use).
type Cloud struct {
	p *Provider

	// UserDataLimit, when above 0, is the largest user-data CheckSeed accepts.
	UserDataLimit int
	// PreflightErr, when set, is what Preflight returns (missing credentials).
	PreflightErr error
	// OnUpload, when set, is called by UploadAgent before the object is
	// stored; an error from it fails the upload.
	OnUpload func(cluster string) error

	objects map[string]string // by cluster: the SHA-256 of the uploaded agent
	urls    map[string]string // by cluster: the URL AgentURL handed out
}

// NewCloud returns a cloud-shaped fake whose nodes get addresses in
// 127.77.0.0/24 (from .10 up).
func NewCloud() *Cloud {
	p := New()
	p.assign = true
	return &Cloud{p: p, objects: map[string]string{}, urls: map[string]string{}}
}

// Fake returns the underlying fake, for its hooks and call log.
func (c *Cloud) Fake() *Provider { return c.p }

// Name implements provider.Provider.
func (c *Cloud) Name() string { return c.p.Name() }

// Create implements provider.Provider.
func (c *Cloud) Create(ctx context.Context, spec provider.NodeSpec) (provider.Instance, error) {
	return c.p.Create(ctx, spec)
}

// Status implements provider.Provider.
func (c *Cloud) Status(ctx context.Context, id string) (provider.Instance, error) {
	return c.p.Status(ctx, id)
}

// Delete implements provider.Provider.
func (c *Cloud) Delete(ctx context.Context, id string) error { return c.p.Delete(ctx, id) }

// List implements provider.Provider.
func (c *Cloud) List(ctx context.Context, cluster string) ([]provider.Instance, error) {
	return c.p.List(ctx, cluster)
}

// Stop implements provider.PowerManager.
func (c *Cloud) Stop(ctx context.Context, id string) error { return c.p.Stop(ctx, id) }

// Start implements provider.PowerManager.
func (c *Cloud) Start(ctx context.Context, id string) error { return c.p.Start(ctx, id) }

// ConsoleLog implements provider.ConsoleLogger.
func (c *Cloud) ConsoleLog(ctx context.Context, id string) ([]byte, error) {
	return c.p.ConsoleLog(ctx, id)
}

// Preflight implements provider.Preflighter: it returns PreflightErr.
func (c *Cloud) Preflight(ctx context.Context, specs []provider.NodeSpec) error {
	c.p.mu.Lock()
	c.p.record("Preflight")
	c.p.mu.Unlock()
	return c.PreflightErr
}

// NodeCIDR implements provider.NodeNetwork (a cloud lookup).
func (c *Cloud) NodeCIDR(ctx context.Context) (netip.Prefix, error) {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	c.p.record("NodeCIDR")
	return c.p.Prefix, nil
}

// CheckSeed implements provider.SeedChecker.
func (c *Cloud) CheckSeed(spec provider.NodeSpec) error {
	if c.UserDataLimit > 0 && len(spec.Seed.UserData) > c.UserDataLimit {
		return usererr.BadInput("make cloudinit.extra smaller",
			"fake: user-data of %d bytes is over the limit of %d bytes", len(spec.Seed.UserData), c.UserDataLimit)
	}
	return nil
}

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// AgentURL implements provider.AgentPublisher. It makes nothing.
func (c *Cloud) AgentURL(ctx context.Context, cluster, sum string) (string, error) {
	if !hexSHA256.MatchString(sum) {
		return "", fmt.Errorf("fake: agent SHA-256 %q is not 64 hex digits", sum)
	}
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	c.p.record("AgentURL " + cluster)
	u := fmt.Sprintf("https://objects.fake.invalid/clusterctl-%s/agent-%s", cluster, sum[:16])
	c.urls[cluster] = u
	return u, nil
}

// UploadAgent implements provider.AgentPublisher: it stores binary as the
// object behind the URL AgentURL gave for cluster, which must have been
// asked for first, and checks its SHA-256.
func (c *Cloud) UploadAgent(ctx context.Context, cluster, binary, sum string) error {
	c.p.mu.Lock()
	c.p.record("UploadAgent " + cluster)
	_, asked := c.urls[cluster]
	hook := c.OnUpload
	c.p.mu.Unlock()
	if !asked {
		return fmt.Errorf("fake: upload for cluster %q before AgentURL", cluster)
	}
	data, err := os.ReadFile(binary)
	if err != nil {
		return fmt.Errorf("fake: upload agent: %w", err)
	}
	if h := sha256.Sum256(data); hex.EncodeToString(h[:]) != sum {
		return fmt.Errorf("fake: agent %q does not have SHA-256 %s", binary, sum)
	}
	if hook != nil {
		if err := hook(cluster); err != nil {
			return err
		}
	}
	c.p.mu.Lock()
	c.objects[cluster] = sum
	c.p.mu.Unlock()
	return nil
}

// Uploaded returns the SHA-256 of the agent stored for cluster ("" = none).
func (c *Cloud) Uploaded(cluster string) string {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	return c.objects[cluster]
}

// Upload stores an object for cluster as an earlier run would have left it
// (a test's way of making a cluster-wide resource exist).
func (c *Cloud) Upload(cluster, sum string) {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	c.objects[cluster] = sum
}

// CleanupCluster implements provider.ClusterCleaner: it removes the stored
// agent. Like a security group in use, it fails while a machine of the
// cluster exists.
func (c *Cloud) CleanupCluster(ctx context.Context, cluster string) error {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	c.p.record("CleanupCluster " + cluster)
	for _, n := range c.p.nodes {
		if n.cl == cluster {
			return errors.New("fake: cluster resources are in use by machine " + n.inst.ID)
		}
	}
	delete(c.objects, cluster)
	delete(c.urls, cluster)
	return nil
}

// ClusterResources implements provider.ResourceLister: the stored agent,
// if any.
func (c *Cloud) ClusterResources(ctx context.Context, cluster string) ([]string, error) {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	if sum, ok := c.objects[cluster]; ok {
		return []string{"agent object " + sum[:12] + " of cluster " + cluster}, nil
	}
	return nil, nil
}

var (
	_ provider.ResourceLister = (*Cloud)(nil)
	_ provider.Provider       = (*Cloud)(nil)
	_ provider.ConsoleLogger  = (*Cloud)(nil)
	_ provider.Preflighter    = (*Cloud)(nil)
	_ provider.NodeNetwork    = (*Cloud)(nil)
	_ provider.SeedChecker    = (*Cloud)(nil)
	_ provider.AgentPublisher = (*Cloud)(nil)
	_ provider.ClusterCleaner = (*Cloud)(nil)
	_ provider.PowerManager   = (*Cloud)(nil)
)

package openstack

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/containers"
	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/objects"

	"github.com/clusterctl/clusterctl/provider"
)

// PublishAgent uploads the agent binary to a private Swift container of the
// cluster and returns a temporary URL (HMAC-SHA256, valid agent_url_ttl)
// that the nodes download it from, with its SHA-256. The temp-URL key is
// kept on the container only (never in clusterctl's state).
func (p *Provider) PublishAgent(ctx context.Context, cluster, binary string) (string, string, error) {
	c, err := p.connect(ctx)
	if err != nil {
		return "", "", err
	}
	if c.object == nil {
		return "", "", provider.BadInput(
			"set agent.source: url with agent.url and agent.sha256 (a URL the nodes can download the agent from), or agent.source: preinstalled with an image that has it",
			"openstack: this cloud has no object store (Swift) in its catalog to publish the agent binary")
	}
	sum, err := fileSHA256(binary)
	if err != nil {
		return "", "", err
	}
	key, err := p.containerKey(ctx, c)
	if err != nil {
		return "", "", err
	}
	object := "clusterctl-agent-" + sum[:16]
	if _, err := objects.Get(ctx, c.object, p.cfg.AgentContainer, object, nil).Extract(); gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		f, err := os.Open(binary)
		if err != nil {
			return "", "", err
		}
		defer f.Close()
		res := objects.Create(ctx, c.object, p.cfg.AgentContainer, object, objects.CreateOpts{Content: f, ContentType: "application/octet-stream"})
		if _, err := res.Extract(); err != nil {
			return "", "", apiError(fmt.Sprintf("upload the agent to container %q", p.cfg.AgentContainer), err)
		}
	} else if err != nil {
		return "", "", apiError(fmt.Sprintf("look for the agent in container %q", p.cfg.AgentContainer), err)
	}
	url, err := objects.CreateTempURL(ctx, c.object, p.cfg.AgentContainer, object, objects.CreateTempURLOpts{
		Method: objects.GET, TTL: int(p.cfg.AgentURLTTL.Seconds()), TempURLKey: key, Digest: "sha256"})
	if err != nil {
		return "", "", fmt.Errorf("openstack: temporary URL for the agent: %w", err)
	}
	return url, sum, nil
}

// containerKey makes the cluster's container if needed and returns its
// temp-URL key, setting a fresh random one when it has none.
func (p *Provider) containerKey(ctx context.Context, c *conn) (string, error) {
	name := p.cfg.AgentContainer
	h, err := containers.Get(ctx, c.object, name, nil).Extract()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		key := randomKey()
		if _, err := containers.Create(ctx, c.object, name, containers.CreateOpts{TempURLKey: key}).Extract(); err != nil {
			return "", apiError(fmt.Sprintf("create container %q", name), err)
		}
		return key, nil
	}
	if err != nil {
		return "", apiError(fmt.Sprintf("read container %q", name), err)
	}
	if h.TempURLKey != "" {
		return h.TempURLKey, nil
	}
	key := randomKey()
	if _, err := containers.Update(ctx, c.object, name, containers.UpdateOpts{TempURLKey: key}).Extract(); err != nil {
		return "", apiError(fmt.Sprintf("set the temp URL key of container %q", name), err)
	}
	return key, nil
}

func randomKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// deleteContainer removes the cluster's container and its objects.
func (p *Provider) deleteContainer(ctx context.Context, c *conn) error {
	name := p.cfg.AgentContainer
	pages, err := objects.List(c.object, name, objects.ListOpts{}).AllPages(ctx)
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return nil
	}
	if err != nil {
		return apiError(fmt.Sprintf("list container %q", name), err)
	}
	names, err := objects.ExtractNames(pages)
	if err != nil {
		return apiError(fmt.Sprintf("list container %q", name), err)
	}
	for _, o := range names {
		if _, err := objects.Delete(ctx, c.object, name, o, nil).Extract(); err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			return apiError(fmt.Sprintf("delete %s/%s", name, o), err)
		}
	}
	if _, err := containers.Delete(ctx, c.object, name).Extract(); err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return apiError(fmt.Sprintf("delete container %q", name), err)
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("agent binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %q: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

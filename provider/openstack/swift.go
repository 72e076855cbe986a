package openstack

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/accounts"
	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/containers"
	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/objects"

	"github.com/clusterctl/clusterctl/internal/atomicfile"
	"github.com/clusterctl/clusterctl/internal/usererr"
)

// agentFile is the provider's file in the cluster's state directory: how
// the agent is published (container, object, key scope, digest) and the
// temp-URL key AgentURL chose, so that UploadAgent sets the very key the
// URL was signed with. Mode 0600: it holds a secret.
const agentFile = "openstack-agent.json"

// Where a temp-URL key lives.
const (
	scopeContainer = "container" // X-Container-Meta-Temp-URL-Key (OpenStack Swift)
	scopeAccount   = "account"   // X-Account-Meta-Temp-URL-Key (Swift and Ceph RGW)
)

// agentRecord is what agentFile holds.
type agentRecord struct {
	Container string `json:"container"`
	Object    string `json:"object"`
	SHA256    string `json:"sha256"`
	Scope     string `json:"scope"`
	Digest    string `json:"digest"`
	Key       string `json:"temp_url_key"`
	// KeyIsNew says the key was made by clusterctl (UploadAgent sets it;
	// CleanupCluster removes an account key it set) rather than read from
	// the object store.
	KeyIsNew bool `json:"key_is_new"`
}

// tempURLSupport is what the object store's /info says about temporary
// URLs.
type tempURLSupport struct {
	Scope, Digest string
}

// swiftInfo is the part of Swift's /info document clusterctl reads.
type swiftInfo struct {
	Swift *struct {
		Version string `json:"version"`
	} `json:"swift"`
	TempURL *struct {
		Methods        []string `json:"methods"`
		AllowedDigests []string `json:"allowed_digests"`
	} `json:"tempurl"`
}

// tempURLSupportOf decides how to sign from /info (nil when /info could
// not be read):
//   - no tempurl section: the store offers no temporary URLs (an error);
//   - the digest is the first of sha256, sha512, sha1 in allowed_digests;
//     without allowed_digests (older Swift, Ceph RGW) it is sha1;
//   - container keys only on OpenStack Swift, whose swift.version is 1.x
//     or 2.x; Ceph RGW reports its Ceph version (10 and later) and honours
//     only account keys, as does anything unknown.
func tempURLSupportOf(info *swiftInfo, endpoint string) (tempURLSupport, error) {
	if info == nil {
		return tempURLSupport{Scope: scopeAccount, Digest: "sha1"}, nil
	}
	if info.TempURL == nil {
		return tempURLSupport{}, usererr.BadInput(
			"set agent.source: url with agent.url and agent.sha256 (a URL the nodes can download the agent from), or agent.source: preinstalled",
			"openstack: the object store at %s offers no temporary URLs (its /info has no tempurl section), so the nodes could not download the agent", endpoint)
	}
	if len(info.TempURL.Methods) > 0 && !slices.Contains(info.TempURL.Methods, http.MethodGet) {
		return tempURLSupport{}, usererr.BadInput("set agent.source: url or preinstalled",
			"openstack: the object store at %s does not allow GET by temporary URL (methods %v)", endpoint, info.TempURL.Methods)
	}
	s := tempURLSupport{Scope: scopeAccount, Digest: "sha1"}
	if d := info.TempURL.AllowedDigests; len(d) > 0 {
		s.Digest = ""
		for _, want := range []string{"sha256", "sha512", "sha1"} {
			if slices.Contains(d, want) {
				s.Digest = want
				break
			}
		}
		if s.Digest == "" {
			return tempURLSupport{}, usererr.BadInput("set agent.source: url or preinstalled",
				"openstack: the object store at %s allows only temp-URL digests clusterctl cannot sign with (%v)", endpoint, d)
		}
	}
	if info.Swift != nil {
		major, _, _ := strings.Cut(info.Swift.Version, ".")
		if n, err := strconv.Atoi(strings.TrimPrefix(major, "v")); err == nil && n >= 1 && n < 10 {
			s.Scope = scopeContainer
		}
	}
	return s, nil
}

// readInfo fetches the object store's /info (at the endpoint's root, in
// front of /v1/); nil when it is not offered (Swift answers 403 with
// expose_info = false; 404 where there is no /info).
func (p *Provider) readInfo(ctx context.Context, c *conn) (*swiftInfo, error) {
	base := c.object.Endpoint
	i := strings.Index(base, "/v1/")
	if i < 0 {
		return nil, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base[:i]+"/info", nil)
	if err != nil {
		return nil, nil
	}
	resp, err := c.object.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("openstack: read the object store's /info: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil
	}
	var info swiftInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&info); err != nil {
		return nil, nil
	}
	return &info, nil
}

// checkNodeTrust fails when the cloud needs a private CA (cacert) and the
// object store's certificate is not trusted without it: the nodes download
// the agent with plain curl and the system's CAs, and would fail silently.
// It uses this machine's system CAs as the nodes' (they come from the same
// kind of distribution).
func (p *Provider) checkNodeTrust(ctx context.Context, c *conn) error {
	u, err := url.Parse(c.object.Endpoint)
	if err != nil || u.Scheme != "https" || c.creds.CACert == "" || c.creds.Insecure {
		return nil
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	d := tls.Dialer{Config: &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}, NetDialer: &net.Dialer{Timeout: 10 * time.Second}}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", host)
	if err == nil {
		_ = conn.Close()
		return nil
	}
	var certErr *tls.CertificateVerificationError
	if !errors.As(err, &certErr) {
		return nil // not a trust problem; the upload will say what it is
	}
	return usererr.BadInput(
		"host the agent where the nodes trust the certificate (agent.source: url with agent.url and agent.sha256), use an image that has it (agent.source: preinstalled), or an image whose CA store has the cloud's CA",
		"openstack: the object store %s has a certificate from the private CA in cacert (%s); the nodes download the agent with their system CAs and would not trust it", u.Host, filepath.Base(c.creds.CACert))
}

// AgentURL returns the temporary URL the nodes will download the agent
// (whose SHA-256 is sum) from. It only reads at the cloud (/info, the
// container's or account's metadata) and records the plan, with a temp-URL
// key it made when there was none, in the provider's file in the state
// directory; it creates nothing at the cloud.
func (p *Provider) AgentURL(ctx context.Context, cluster, sum string) (string, error) {
	if len(sum) != 64 {
		return "", fmt.Errorf("openstack: agent sha256 %q is not 64 hex digits", sum)
	}
	if _, err := hex.DecodeString(sum); err != nil {
		return "", fmt.Errorf("openstack: agent sha256 %q is not 64 hex digits", sum)
	}
	c, err := p.connect(ctx)
	if err != nil {
		return "", err
	}
	if c.object == nil {
		return "", usererr.BadInput(
			"set agent.source: url with agent.url and agent.sha256 (a URL the nodes can download the agent from), or agent.source: preinstalled with an image that has it",
			"openstack: this cloud has no object store (Swift) in its catalog to publish the agent binary")
	}
	if err := p.checkNodeTrust(ctx, c); err != nil {
		return "", err
	}
	rec, err := p.planAgent(ctx, c, sum)
	if err != nil {
		return "", err
	}
	if err := p.saveAgentRecord(rec); err != nil {
		return "", err
	}
	return p.signedURL(c, rec)
}

// planAgent decides container, object, key scope, digest and key.
func (p *Provider) planAgent(ctx context.Context, c *conn, sum string) (agentRecord, error) {
	info, err := p.readInfo(ctx, c)
	if err != nil {
		return agentRecord{}, err
	}
	sup, err := tempURLSupportOf(info, c.object.Endpoint)
	if err != nil {
		return agentRecord{}, err
	}
	rec := agentRecord{Container: p.cfg.AgentContainer, Object: "clusterctl-agent-" + sum[:16], SHA256: sum, Scope: sup.Scope, Digest: sup.Digest}
	key, err := p.serviceKey(ctx, c, rec.Scope, rec.Container)
	if err != nil {
		return agentRecord{}, err
	}
	old, oerr := p.loadAgentRecord()
	ours := oerr == nil && old.KeyIsNew && old.Key != "" && old.Scope == rec.Scope && old.Container == rec.Container
	switch {
	case key != "":
		// The store's key; still "ours" when clusterctl set it before.
		rec.Key, rec.KeyIsNew = key, ours && old.Key == key
	case ours:
		// Recorded before but not set yet (up stopped before uploading).
		rec.Key, rec.KeyIsNew = old.Key, true
	default:
		rec.Key, rec.KeyIsNew = randomKey(), true
	}
	return rec, nil
}

// serviceKey reads the temp-URL key set at scope ("" when none, or when
// the container does not exist yet).
func (p *Provider) serviceKey(ctx context.Context, c *conn, scope, container string) (string, error) {
	if scope == scopeAccount {
		h, err := accountHeader(ctx, c)
		if err != nil {
			return "", err
		}
		return firstOf(h.TempURLKey, h.TempURLKey2), nil
	}
	h, err := containers.Get(ctx, c.object, container, nil).Extract()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return "", nil
	}
	if err != nil {
		return "", apiError(fmt.Sprintf("read container %q", container), err)
	}
	return firstOf(h.TempURLKey, h.TempURLKey2), nil
}

// accountHeader reads the object store account's metadata (HEAD on the
// account), temp-URL keys included. Swift answers 204 for an account that
// exists and 200 for one that was never written to (account_autocreate:
// the proxy makes up an empty listing); gophercloud's accounts.Get accepts
// only 204, so this takes both and parses the headers as it does.
func accountHeader(ctx context.Context, c *conn) (*accounts.GetHeader, error) {
	resp, err := c.object.Head(ctx, c.object.Endpoint, &gophercloud.RequestOpts{
		OkCodes: []int{http.StatusOK, http.StatusNoContent},
	})
	var r accounts.GetResult
	_, r.Header, r.Err = gophercloud.ParseResponse(resp, err)
	h, err := r.Extract()
	if err != nil {
		return nil, apiError("read the object store account's metadata", err)
	}
	return h, nil
}

func (p *Provider) signedURL(c *conn, rec agentRecord) (string, error) {
	u, err := objects.CreateTempURL(context.Background(), c.object, rec.Container, rec.Object, objects.CreateTempURLOpts{
		Method: objects.GET, TTL: int(p.cfg.AgentURLTTL.Seconds()), TempURLKey: rec.Key, Digest: rec.Digest})
	if err != nil {
		return "", fmt.Errorf("openstack: temporary URL for the agent: %w", err)
	}
	return u, nil
}

// UploadAgent makes AgentURL's URL serve binary: it makes the container if
// needed, sets the recorded temp-URL key when the object store has none
// yet, and uploads the object unless it is there. Idempotent.
func (p *Provider) UploadAgent(ctx context.Context, cluster, binary, sum string) error {
	got, err := fileSHA256(binary)
	if err != nil {
		return err
	}
	if got != sum {
		return fmt.Errorf("openstack: agent binary %s has SHA-256 %s, not %s", binary, got, sum)
	}
	c, err := p.connect(ctx)
	if err != nil {
		return err
	}
	if c.object == nil {
		return errors.New("openstack: this cloud has no object store (Swift) to upload the agent to")
	}
	rec, err := p.loadAgentRecord()
	if err != nil || rec.SHA256 != sum || rec.Container != p.cfg.AgentContainer {
		return fmt.Errorf("openstack: no plan for agent %s in %s: AgentURL must come first", sum[:12], agentFile)
	}
	name := rec.Container
	if _, err := containers.Get(ctx, c.object, name, nil).Extract(); gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		if _, err := containers.Create(ctx, c.object, name, containers.CreateOpts{}).Extract(); err != nil {
			return apiError(fmt.Sprintf("create container %q", name), err)
		}
	} else if err != nil {
		return apiError(fmt.Sprintf("read container %q", name), err)
	}
	if err := p.ensureKey(ctx, c, rec); err != nil {
		return err
	}
	if _, err := objects.Get(ctx, c.object, name, rec.Object, nil).Extract(); gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		f, err := os.Open(binary)
		if err != nil {
			return err
		}
		defer f.Close()
		res := objects.Create(ctx, c.object, name, rec.Object, objects.CreateOpts{Content: f, ContentType: "application/octet-stream"})
		if _, err := res.Extract(); err != nil {
			return apiError(fmt.Sprintf("upload the agent to container %q", name), err)
		}
	} else if err != nil {
		return apiError(fmt.Sprintf("look for the agent in container %q", name), err)
	}
	return nil
}

// ensureKey makes the store hold the recorded key at its scope. A key set
// there in the meantime by someone else is an error: the URL was signed
// with the recorded one.
func (p *Provider) ensureKey(ctx context.Context, c *conn, rec agentRecord) error {
	have, err := p.serviceKey(ctx, c, rec.Scope, rec.Container)
	if err != nil {
		return err
	}
	switch {
	case have == rec.Key:
		return nil
	case have != "":
		return fmt.Errorf("openstack: the %s temp-URL key changed since the agent's URL was made; run up again", rec.Scope)
	case rec.Scope == scopeAccount:
		if _, err := accounts.Update(ctx, c.object, accounts.UpdateOpts{TempURLKey: rec.Key}).Extract(); err != nil {
			return apiError("set the account's temp URL key", err)
		}
	default:
		if _, err := containers.Update(ctx, c.object, rec.Container, containers.UpdateOpts{TempURLKey: rec.Key}).Extract(); err != nil {
			return apiError(fmt.Sprintf("set the temp URL key of container %q", rec.Container), err)
		}
	}
	return nil
}

func (p *Provider) agentRecordPath() string {
	if p.env.Dir == "" {
		return ""
	}
	return filepath.Join(p.env.Dir, agentFile)
}

// saveAgentRecord writes the record (0600), or keeps it in memory when the
// provider has no state directory.
func (p *Provider) saveAgentRecord(rec agentRecord) error {
	p.mu.Lock()
	p.agent = &rec
	p.mu.Unlock()
	path := p.agentRecordPath()
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p.env.Dir, 0o700); err != nil {
		return fmt.Errorf("openstack: %w", err)
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("openstack: record the agent's publication: %w", err)
	}
	return nil
}

func (p *Provider) loadAgentRecord() (agentRecord, error) {
	path := p.agentRecordPath()
	if path == "" {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.agent == nil {
			return agentRecord{}, os.ErrNotExist
		}
		return *p.agent, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return agentRecord{}, err
	}
	var rec agentRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return agentRecord{}, fmt.Errorf("openstack: %s: %w", path, err)
	}
	return rec, nil
}

func randomKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// deleteContainer removes the cluster's container and its objects, an
// account temp-URL key clusterctl set (when it is still the account's),
// and the provider's record.
func (p *Provider) deleteContainer(ctx context.Context, c *conn) error {
	name := p.cfg.AgentContainer
	if err := p.emptyAndDelete(ctx, c, name); err != nil {
		return err
	}
	if rec, err := p.loadAgentRecord(); err == nil && rec.Scope == scopeAccount && rec.KeyIsNew {
		h, err := accountHeader(ctx, c)
		if err != nil {
			return err
		}
		if h.TempURLKey == rec.Key {
			if _, err := accounts.Update(ctx, c.object, accounts.UpdateOpts{RemoveMetadata: []string{"Temp-URL-Key"}}).Extract(); err != nil {
				return apiError("remove the account temp URL key clusterctl set", err)
			}
		}
	}
	if path := p.agentRecordPath(); path != "" {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("openstack: %w", err)
		}
	}
	p.mu.Lock()
	p.agent = nil
	p.mu.Unlock()
	return nil
}

func (p *Provider) emptyAndDelete(ctx context.Context, c *conn, name string) error {
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

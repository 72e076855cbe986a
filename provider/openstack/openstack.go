package openstack

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gcos "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/utils"

	"github.com/clusterctl/clusterctl/internal/dnslabel"
	"github.com/clusterctl/clusterctl/internal/publicip"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

// Name is the provider's registry name.
const Name = "openstack"

func init() {
	provider.Register(Name, func(env provider.Env) (provider.Provider, error) { return New(env) })
}

// Server metadata keys clusterctl sets on every server it makes.
const (
	MetaCluster   = "clusterctl.cluster"
	MetaNode      = "clusterctl.node"
	MetaManagedBy = "managed-by"
	managedBy     = "clusterctl"
	// fipDescription marks floating IPs clusterctl made (Delete removes
	// only those).
	fipDescription = "clusterctl"
)

// maxUserData is Nova's limit on the base64-encoded user_data.
const maxUserData = 65535

// Provider runs nodes as OpenStack servers. Make one with New.
type Provider struct {
	cfg Config
	env provider.Env
	// getenv reads the environment (a field so tests can give their own).
	getenv func(string) string
	sem    chan struct{}

	mu   sync.Mutex
	conn *conn
	res  *resolved
	sgID string
	// agent is the agent's publication record when there is no state
	// directory to keep it in (see agentFile).
	agent *agentRecord

	sgMu sync.Mutex // serialises making the security group

	// detect says how this machine's public address is found when
	// openstack.api_from is empty (tests point it at a loopback server).
	// allow is who may reach the API and SSH ports: the api_from
	// networks, or this machine's public address, detected once.
	allow publicip.Source
}

var (
	_ provider.Provider       = (*Provider)(nil)
	_ provider.ConsoleLogger  = (*Provider)(nil)
	_ provider.Preflighter    = (*Provider)(nil)
	_ provider.NodeNetwork    = (*Provider)(nil)
	_ provider.ClusterCleaner = (*Provider)(nil)
	_ provider.AgentPublisher = (*Provider)(nil)
	_ provider.SeedChecker    = (*Provider)(nil)
)

// New makes the provider from its environment. It reads no file and uses
// no network: credentials are found and checked on first use (Preflight).
func New(env provider.Env) (*Provider, error) {
	cfg, err := ParseConfig(env)
	if err != nil {
		return nil, err
	}
	cfg.GossipPort = env.Port()
	cfg.APIPort = env.API()
	if env.Region != "" {
		cfg.Region = env.Region
	}
	p := &Provider{cfg: cfg, env: env, getenv: os.Getenv, sem: make(chan struct{}, cfg.Parallel)}
	p.allow.Key, p.allow.Listed = apiFromKey, cfg.apiFrom
	return p, nil
}

// SetPublicIP sets how this machine's public address is detected when
// openstack.api_from is empty (by default: publicip's endpoints, or those
// in its environment variable).
func (p *Provider) SetPublicIP(opts publicip.Options) { p.allow.Options = opts }

// SetGetenv replaces how the provider reads environment variables (tests).
func (p *Provider) SetGetenv(f func(string) string) { p.getenv = f }

// Name returns "openstack".
func (p *Provider) Name() string { return Name }

// Config returns the configuration with defaults filled in.
func (p *Provider) Config() Config { return p.cfg }

// conn is an authenticated session with the service clients.
type conn struct {
	creds   credentials
	compute *gophercloud.ServiceClient
	network *gophercloud.ServiceClient
	image   *gophercloud.ServiceClient
	object  *gophercloud.ServiceClient // nil when the cloud has no Swift
}

// connect authenticates once; a failure is retried on the next call.
func (p *Provider) connect(ctx context.Context) (*conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		return p.conn, nil
	}
	creds, err := loadCredentials(p.cfg, p.getenv)
	if err != nil {
		return nil, err
	}
	hc, err := creds.httpClient()
	if err != nil {
		return nil, err
	}
	pc, err := gcos.NewClient(creds.AuthURL)
	if err != nil {
		return nil, usererr.BadInput("set auth_url to the Keystone URL, e.g. https://keystone.example.org:5000/v3", "openstack: auth_url %q: %v", creds.AuthURL, err)
	}
	pc.HTTPClient = *hc
	pc.UserAgent.Prepend("clusterctl")
	if err := gcos.Authenticate(ctx, pc, creds.authOptions()); err != nil {
		return nil, authError(creds, err)
	}
	if creds.Region == "" {
		if err := oneRegion(pc, creds); err != nil {
			return nil, err
		}
	}
	eo := gophercloud.EndpointOpts{Region: creds.Region, Availability: availability(creds.Interface)}
	c := &conn{creds: creds}
	var errs []error
	if c.compute, err = gcos.NewComputeV2(pc, eo); err != nil {
		errs = append(errs, err)
	}
	if c.network, err = gcos.NewNetworkV2(pc, eo); err != nil {
		errs = append(errs, err)
	}
	if c.image, err = gcos.NewImageV2(pc, eo); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		region := creds.Region
		if region == "" {
			region = "(any)"
		}
		return nil, usererr.BadInput("check region_name / OS_REGION_NAME and interface; clusterctl needs compute (Nova), network (Neutron) and image (Glance)",
			"openstack: %s: the service catalog lacks a service in region %s: %v", creds.Source, region, err)
	}
	compute, err := utils.RequireMicroversion(ctx, *c.compute, ComputeMicroversion)
	if err != nil {
		return nil, usererr.WithHint(fmt.Errorf("openstack: compute API at %s: %w", c.compute.Endpoint, err),
			"clusterctl needs compute microversion "+ComputeMicroversion+" (OpenStack Pike or later)")
	}
	c.compute = &compute
	if oc, err := gcos.NewObjectStorageV1(pc, eo); err == nil {
		c.object = oc
	}
	p.conn = c
	return c, nil
}

// oneRegion fails when no region is chosen and the service catalog has
// several for the services clusterctl uses: each client would take the
// first endpoint it finds, and Nova and Neutron could be in different
// regions.
func oneRegion(pc *gophercloud.ProviderClient, creds credentials) error {
	res, ok := pc.GetAuthResult().(interface {
		ExtractServiceCatalog() (*tokens.ServiceCatalog, error)
	})
	if !ok {
		return nil
	}
	cat, err := res.ExtractServiceCatalog()
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	for _, e := range cat.Entries {
		switch e.Type {
		case "compute", "network", "image", "object-store":
		default:
			continue
		}
		for _, ep := range e.Endpoints {
			if r := firstOf(ep.RegionID, ep.Region); r != "" {
				seen[r] = true
			}
		}
	}
	if len(seen) < 2 {
		return nil
	}
	regions := make([]string, 0, len(seen))
	for r := range seen {
		regions = append(regions, r)
	}
	sort.Strings(regions)
	return usererr.BadInput("choose one: set region_name in clouds.yaml, OS_REGION_NAME, openstack.region or --region",
		"openstack: the service catalog of %s has several regions (%s) and none is chosen", creds.Source, strings.Join(regions, ", "))
}

func availability(iface string) gophercloud.Availability {
	switch strings.TrimSuffix(iface, "URL") {
	case "internal":
		return gophercloud.AvailabilityInternal
	case "admin":
		return gophercloud.AvailabilityAdmin
	}
	return gophercloud.AvailabilityPublic
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// apiError wraps a failed API call with what was being done and the
// service's own message.
func apiError(doing string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("openstack: %s: %w", doing, err)
	}
	var ue gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &ue) {
		msg := serviceMessage(ue.Body, ue.Actual)
		e := fmt.Errorf("openstack: %s: %s (HTTP %d)", doing, msg, ue.Actual)
		switch {
		case ue.Actual == http.StatusForbidden && strings.Contains(strings.ToLower(msg), "quota"):
			return usererr.WithHint(e, "the project's quota is used up: remove nodes or ask the cloud's operators for more (`openstack quota show`)")
		case ue.Actual == http.StatusConflict && neutronErrorType(err) == "OverQuota":
			return usererr.WithHint(fmt.Errorf("openstack: %s: quota exceeded: %s (HTTP %d)", doing, msg, ue.Actual),
				"the project's Neutron quota is used up: delete unused security groups or rules, or ask the cloud's operators for more (`openstack quota show`)")
		case ue.Actual == http.StatusUnauthorized:
			return usererr.WithHint(e, "the token was refused; check the credentials")
		case ue.Actual == http.StatusNotAcceptable:
			return usererr.WithHint(e, "this cloud's compute API is older than microversion "+ComputeMicroversion+" (OpenStack Pike)")
		}
		return e
	}
	return fmt.Errorf("openstack: %s: %w", doing, err)
}

// metadataKeyRE is Nova's rule for server metadata keys (the
// patternProperties of its metadata schema); values may have 255
// characters at most.
var metadataKeyRE = regexp.MustCompile(`^[a-zA-Z0-9-_:. ]{1,255}$`)

// maxMetadataValue is Nova's limit on a metadata value.
const maxMetadataValue = 255

// checkTags reports node.tags that Nova would refuse as server metadata
// (400 on every server create).
func checkTags(node string, tags map[string]string) []error {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		switch {
		case !metadataKeyRE.MatchString(k):
			errs = append(errs, usererr.BadInput("use only letters, digits, space and - _ : . in tag keys (at most 255), e.g. team.owner instead of team/owner",
				"openstack: node %q: tag key %q is not a valid Nova metadata key (^[a-zA-Z0-9-_:. ]{1,255}$)", node, k))
		case len(tags[k]) > maxMetadataValue:
			errs = append(errs, usererr.BadInput("shorten the tag's value to 255 characters",
				"openstack: node %q: tag %q has a value of %d characters; Nova allows %d", node, k, len(tags[k]), maxMetadataValue))
		}
	}
	return errs
}

// CheckSeed checks that the node's user-data fits Nova's limit on
// user_data: 65535 bytes once base64-encoded.
func (p *Provider) CheckSeed(spec provider.NodeSpec) error {
	if n := base64.StdEncoding.EncodedLen(len(spec.Seed.UserData)); n > maxUserData {
		return usererr.BadInput("shorten cloudinit.extra or the user-data template (the agent is downloaded, not embedded)",
			"openstack: node %q: user-data is %d bytes base64-encoded; Nova allows %d", spec.Name, n, maxUserData)
	}
	return nil
}

// Preflight authenticates and resolves flavor, image, network, floating IP
// pool and key pair, and checks node names and tags; when
// openstack.api_from is empty it detects this machine's public address,
// which the security group will admit to the API (and SSH) port. Every
// problem is an *InputError, reported together. It creates nothing. (The
// user-data is checked by CheckSeed once it is rendered.)
func (p *Provider) Preflight(ctx context.Context, specs []provider.NodeSpec) error {
	var errs []error
	if _, err := p.allow.Prefixes(ctx); err != nil {
		errs = append(errs, err)
	}
	for _, s := range specs {
		if !dnslabel.Valid(s.Name) {
			errs = append(errs, usererr.BadInput("use lower-case letters, digits and '-'", "openstack: bad node name %q", s.Name))
		}
		errs = append(errs, checkTags(s.Name, s.Tags)...)
	}
	c, err := p.connect(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	if _, err := p.resolve(ctx, c); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// NodeCIDR is the IPv4 subnet of the cluster network; each agent
// advertises its fixed address in it.
func (p *Provider) NodeCIDR(ctx context.Context) (netip.Prefix, error) {
	c, err := p.connect(ctx)
	if err != nil {
		return netip.Prefix{}, err
	}
	r, err := p.resolve(ctx, c)
	if err != nil {
		return netip.Prefix{}, err
	}
	return r.CIDR, nil
}

// Create makes the server and waits until Nova reports it ACTIVE (failing
// at once on ERROR with the server's fault), then attaches a floating IP
// when a pool is configured. The returned Instance's Address is the fixed
// address on the cluster network. On failure after Nova accepted the
// server its id is returned with the error, so Delete can clean up.
func (p *Provider) Create(ctx context.Context, spec provider.NodeSpec) (provider.Instance, error) {
	if !dnslabel.Valid(spec.Name) {
		return provider.Instance{}, usererr.BadInput("use lower-case letters, digits and '-'", "openstack: bad node name %q", spec.Name)
	}
	select {
	case p.sem <- struct{}{}:
		defer func() { <-p.sem }()
	case <-ctx.Done():
		return provider.Instance{}, ctx.Err()
	}
	c, err := p.connect(ctx)
	if err != nil {
		return provider.Instance{}, err
	}
	r, err := p.resolve(ctx, c)
	if err != nil {
		return provider.Instance{}, err
	}
	sg, err := p.ensureGroup(ctx, c)
	if err != nil {
		return provider.Instance{}, err
	}
	if err := p.CheckSeed(spec); err != nil {
		return provider.Instance{}, err
	}
	if errs := checkTags(spec.Name, spec.Tags); len(errs) > 0 {
		return provider.Instance{}, errors.Join(errs...)
	}
	// Encode once ourselves: gophercloud passes what is already base64
	// through unchanged, so the guest sees exactly spec.Seed.UserData.
	ud := base64.StdEncoding.EncodeToString(spec.Seed.UserData)
	md := map[string]string{}
	for k, v := range spec.Tags {
		md[k] = v
	}
	md[MetaCluster], md[MetaNode], md[MetaManagedBy] = p.env.Cluster, spec.Name, managedBy
	opts := servers.CreateOpts{
		Name: spec.Name, FlavorRef: r.FlavorID, ImageRef: r.ImageID,
		Networks:       []servers.Network{{UUID: r.NetworkID}},
		SecurityGroups: []string{sg},
		UserData:       []byte(ud),
		Metadata:       md,
	}
	if p.cfg.ConfigDrive {
		t := true
		opts.ConfigDrive = &t
	}
	var builder servers.CreateOptsBuilder = opts
	if p.cfg.KeyName != "" {
		builder = keypairs.CreateOptsExt{CreateOptsBuilder: opts, KeyName: p.cfg.KeyName}
	}
	created, err := servers.Create(ctx, c.compute, builder, nil).Extract()
	if err != nil {
		return provider.Instance{}, apiError(fmt.Sprintf("create server %q", spec.Name), err)
	}
	inst := provider.Instance{ID: created.ID, Name: spec.Name, State: provider.StatePending}

	srv, err := p.waitActive(ctx, c, created.ID, spec.Name)
	if err != nil {
		inst.State = provider.StateError
		return inst, err
	}
	inst = p.instance(srv, r)
	port, addr, err := p.clusterPort(ctx, c, srv.ID, r)
	if err != nil {
		return inst, err
	}
	inst.Address = addr
	if r.PoolID != "" {
		fip, err := floatingips.Create(ctx, c.network, floatingips.CreateOpts{FloatingNetworkID: r.PoolID, PortID: port,
			Description: fipDescription + " " + p.env.Cluster + "/" + spec.Name}).Extract()
		if err != nil {
			return inst, apiError(fmt.Sprintf("floating IP from pool %q for %q", r.PoolName, spec.Name), err)
		}
		inst.PublicAddress = fip.FloatingIP
		inst.Detail = joinDetail(inst.Detail, "floating IP "+fip.FloatingIP)
	}
	return inst, nil
}

// forceDelete deletes a soft-deleted server at once (os-deferred-delete's
// forceDelete action).
func forceDelete(ctx context.Context, c *conn, id string) error {
	resp, err := c.compute.Post(ctx, c.compute.ServiceURL("servers", id, "action"), map[string]any{"forceDelete": nil}, nil,
		&gophercloud.RequestOpts{OkCodes: []int{http.StatusAccepted}})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return apiError("force-delete soft-deleted server "+id, err)
	}
	return nil
}

// neutronErrorType returns the "type" of a Neutron error body
// ({"NeutronError": {"type": "OverQuota", ...}}), or "".
func neutronErrorType(err error) string {
	var ue gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &ue) {
		return ""
	}
	var body struct {
		NeutronError struct {
			Type string `json:"type"`
		} `json:"NeutronError"`
	}
	if jsonUnmarshal(ue.Body, &body) != nil {
		return ""
	}
	return body.NeutronError.Type
}

func joinDetail(a, b string) string {
	if a == "" {
		return b
	}
	return a + ", " + b
}

// waitActive polls the server until it is ACTIVE. ERROR ends the wait at
// once with the server's fault message; so does the server vanishing.
func (p *Provider) waitActive(ctx context.Context, c *conn, id, name string) (*servers.Server, error) {
	last, answered, start := "", false, time.Now()
	for {
		s, err := servers.Get(ctx, c.compute, id).Extract()
		switch {
		case gophercloud.ResponseCodeIs(err, http.StatusNotFound):
			return nil, fmt.Errorf("openstack: server %q (%s) disappeared while it was being built", name, id)
		case err != nil && ctx.Err() == nil:
			return nil, apiError(fmt.Sprintf("get server %q (%s)", name, id), err)
		case err == nil:
			answered = true
			last = s.Status
			if s.TaskState != "" {
				last += " (" + s.TaskState + ")"
			}
			switch s.Status {
			case "ACTIVE":
				return s, nil
			case "ERROR":
				return nil, faultError(s, name)
			case "DELETED", "SOFT_DELETED", "SHUTOFF":
				return nil, fmt.Errorf("openstack: server %q (%s) is %s instead of ACTIVE", name, id, s.Status)
			}
		}
		t := time.NewTimer(p.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, stillBuilding(name, id, last, answered, time.Since(start), ctx.Err())
		case <-t.C:
		}
	}
}

// stillBuilding is the error of a wait for ACTIVE that ran out of time.
// When Nova answered, it says what Nova answered, and does not wrap the
// context's error: the caller would report that as "no answer".
func stillBuilding(name, id, last string, answered bool, waited time.Duration, ctxErr error) error {
	if !answered {
		return fmt.Errorf("openstack: server %q (%s): Nova did not answer while it was being built: %w", name, id, ctxErr)
	}
	return usererr.WithHint(
		fmt.Errorf("openstack: server %q (%s) was still %s after %s: Nova answered, but the build did not finish", name, id, last, waited.Round(time.Second)),
		"the cloud is slow to build servers now: raise timeouts.create, or look at `openstack server show "+id+"`; `clusterctl down "+name+"` removes it")
}

func faultError(s *servers.Server, name string) error {
	msg := strings.TrimSpace(s.Fault.Message)
	if msg == "" {
		msg = "Nova gave no fault message"
	}
	err := fmt.Errorf("openstack: server %q (%s) went to ERROR: %s", name, s.ID, msg)
	if s.Fault.Code != 0 {
		err = fmt.Errorf("%w (fault code %d)", err, s.Fault.Code)
	}
	if strings.Contains(msg, "No valid host") {
		return usererr.WithHint(err, "no compute host can take this flavor now: try a smaller flavor, or another time; `clusterctl down "+name+"` removes the failed server")
	}
	return usererr.WithHint(err, "`clusterctl down "+name+"` removes the failed server")
}

// clusterPort returns the server's port on the cluster network and its
// fixed IPv4 address there.
func (p *Provider) clusterPort(ctx context.Context, c *conn, serverID string, r *resolved) (portID, addr string, err error) {
	pages, err := ports.List(c.network, ports.ListOpts{DeviceID: serverID, NetworkID: r.NetworkID}).AllPages(ctx)
	if err != nil {
		return "", "", apiError("list the ports of server "+serverID, err)
	}
	list, err := ports.ExtractPorts(pages)
	if err != nil {
		return "", "", apiError("list the ports of server "+serverID, err)
	}
	for _, pt := range list {
		for _, ip := range pt.FixedIPs {
			if a, err := netip.ParseAddr(ip.IPAddress); err == nil && r.CIDR.Contains(a) {
				return pt.ID, a.String(), nil
			}
		}
	}
	return "", "", fmt.Errorf("openstack: server %s is ACTIVE but has no address in %s on network %q", serverID, r.CIDR, r.NetworkName)
}

// mapState maps Nova's status (and task state) onto provider.State: a
// server powering off is stopping, one powering on pending.
func mapState(status, task string) provider.State {
	switch task {
	case "deleting", taskPoweringOff:
		return provider.StateStopping
	case taskPoweringOn:
		return provider.StatePending
	}
	switch status {
	case "BUILD", "REBUILD":
		return provider.StatePending
	case "ACTIVE", "REBOOT", "HARD_REBOOT", "PASSWORD", "MIGRATING", "RESIZE", "VERIFY_RESIZE", "REVERT_RESIZE", "RESCUE":
		return provider.StateRunning
	case "SHUTOFF", "STOPPED", "SUSPENDED", "PAUSED", "SHELVED", "SHELVED_OFFLOADED":
		return provider.StateStopped
	case "DELETED":
		return provider.StateTerminated
	case "SOFT_DELETED":
		// Still there (restorable, holding its ports) until reclaimed.
		return provider.StateStopped
	case "ERROR":
		return provider.StateError
	}
	return provider.StateUnknown
}

// instance describes a server; r (may be nil) says which network is the
// cluster's.
func (p *Provider) instance(s *servers.Server, r *resolved) provider.Instance {
	in := provider.Instance{ID: s.ID, Name: s.Name, State: mapState(s.Status, s.TaskState)}
	if n := s.Metadata[MetaNode]; n != "" {
		in.Name = n
	}
	fixed, floating := addresses(s.Addresses, r)
	in.Address, in.PublicAddress = fixed, floating
	var detail []string
	if s.Status != "" {
		detail = append(detail, "nova "+s.Status)
	}
	if fl, ok := s.Flavor["original_name"].(string); ok && fl != "" {
		detail = append(detail, "flavor "+fl)
	}
	if floating != "" {
		detail = append(detail, "floating IP "+floating)
	}
	if s.Status == "ERROR" && s.Fault.Message != "" {
		detail = append(detail, "fault: "+s.Fault.Message)
	}
	in.Detail = strings.Join(detail, ", ")
	return in
}

// addresses picks the fixed IPv4 address on the cluster network (within
// r.CIDR when known) and a floating address from Nova's addresses field.
func addresses(all map[string]any, r *resolved) (fixed, floating string) {
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		list, _ := all[n].([]any)
		for _, e := range list {
			m, _ := e.(map[string]any)
			a, err := netip.ParseAddr(fmt.Sprint(m["addr"]))
			if err != nil || !a.Is4() {
				continue
			}
			switch m["OS-EXT-IPS:type"] {
			case "floating":
				if floating == "" {
					floating = a.String()
				}
			default:
				inCluster := r == nil || !r.CIDR.IsValid() || r.CIDR.Contains(a)
				if inCluster && fixed == "" {
					fixed = a.String()
				}
			}
		}
	}
	return fixed, floating
}

// Status reports one server. An id Nova does not know is StateNotFound.
func (p *Provider) Status(ctx context.Context, id string) (provider.Instance, error) {
	c, err := p.connect(ctx)
	if err != nil {
		return provider.Instance{}, err
	}
	s, err := servers.Get(ctx, c.compute, id).Extract()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return provider.Instance{ID: id, State: provider.StateNotFound}, nil
	}
	if err != nil {
		return provider.Instance{}, apiError("get server "+id, err)
	}
	p.mu.Lock()
	r := p.res
	p.mu.Unlock()
	return p.instance(s, r), nil
}

// List returns the servers whose metadata says they belong to cluster.
func (p *Provider) List(ctx context.Context, cluster string) ([]provider.Instance, error) {
	c, err := p.connect(ctx)
	if err != nil {
		return nil, err
	}
	pages, err := servers.List(c.compute, servers.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, apiError("list servers", err)
	}
	all, err := servers.ExtractServers(pages)
	if err != nil {
		return nil, apiError("list servers", err)
	}
	p.mu.Lock()
	r := p.res
	p.mu.Unlock()
	var out []provider.Instance
	for i := range all {
		s := &all[i]
		if s.Metadata[MetaManagedBy] == managedBy && s.Metadata[MetaCluster] == cluster {
			out = append(out, p.instance(s, r))
		}
	}
	return out, nil
}

// Delete removes the floating IPs clusterctl attached to the server, then
// the server, and waits until Nova no longer shows it. A server that does
// not exist is not an error.
func (p *Provider) Delete(ctx context.Context, id string) error {
	c, err := p.connect(ctx)
	if err != nil {
		return err
	}
	if _, err := servers.Get(ctx, c.compute, id).Extract(); gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return nil
	} else if err != nil {
		return apiError("get server "+id, err)
	}
	if err := p.deleteFloatingIPs(ctx, c, id); err != nil {
		return err
	}
	if err := servers.Delete(ctx, c.compute, id).ExtractErr(); err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return apiError("delete server "+id, err)
	}
	for {
		s, err := servers.Get(ctx, c.compute, id).Extract()
		if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			return nil
		}
		if err == nil && s.Status == "DELETED" {
			return nil
		}
		if err == nil && s.Status == "SOFT_DELETED" && s.TaskState == "" {
			// A cloud with deferred delete keeps the server (and its ports,
			// which hold the security group) until it is reclaimed: delete
			// it for good now.
			if err := forceDelete(ctx, c, id); err != nil {
				return err
			}
		}
		if err == nil && s.Status == "ERROR" && s.TaskState == "" {
			// A delete that failed leaves the server in ERROR; ask again.
			_ = servers.Delete(ctx, c.compute, id).ExtractErr()
		}
		t := time.NewTimer(p.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("openstack: server %s is still being deleted: %w", id, ctx.Err())
		case <-t.C:
		}
	}
}

func (p *Provider) deleteFloatingIPs(ctx context.Context, c *conn, serverID string) error {
	pages, err := ports.List(c.network, ports.ListOpts{DeviceID: serverID}).AllPages(ctx)
	if err != nil {
		return apiError("list the ports of server "+serverID, err)
	}
	list, err := ports.ExtractPorts(pages)
	if err != nil {
		return apiError("list the ports of server "+serverID, err)
	}
	for _, pt := range list {
		fpages, err := floatingips.List(c.network, floatingips.ListOpts{PortID: pt.ID}).AllPages(ctx)
		if err != nil {
			return apiError("list floating IPs", err)
		}
		fips, err := floatingips.ExtractFloatingIPs(fpages)
		if err != nil {
			return apiError("list floating IPs", err)
		}
		for _, f := range fips {
			if !strings.HasPrefix(f.Description, fipDescription) {
				continue // not ours: Neutron disassociates it with the port
			}
			if err := floatingips.Delete(ctx, c.network, f.ID).ExtractErr(); err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
				return apiError("delete floating IP "+f.FloatingIP, err)
			}
		}
	}
	return nil
}

// ConsoleLog returns the server's console output (os-getConsoleOutput),
// the last 500 lines.
func (p *Provider) ConsoleLog(ctx context.Context, id string) ([]byte, error) {
	c, err := p.connect(ctx)
	if err != nil {
		return nil, err
	}
	out, err := servers.ShowConsoleOutput(ctx, c.compute, id, servers.ShowConsoleOutputOpts{Length: 500}).Extract()
	if err != nil {
		return nil, apiError("console output of server "+id, err)
	}
	return []byte(out), nil
}

// CleanupCluster removes the cluster's security group and its Swift
// container (with the published agent), once no server is left.
func (p *Provider) CleanupCluster(ctx context.Context, cluster string) error {
	c, err := p.connect(ctx)
	if err != nil {
		return err
	}
	var errs []error
	pages, err := groups.List(c.network, groups.ListOpts{Name: p.cfg.SecurityGroup}).AllPages(ctx)
	if err != nil {
		return apiError("find security group "+p.cfg.SecurityGroup, err)
	}
	found, err := groups.ExtractGroups(pages)
	if err != nil {
		return apiError("find security group "+p.cfg.SecurityGroup, err)
	}
	for _, g := range found {
		if err := groups.Delete(ctx, c.network, g.ID).ExtractErr(); err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			e := apiError(fmt.Sprintf("delete security group %q", g.Name), err)
			if gophercloud.ResponseCodeIs(err, http.StatusConflict) {
				e = usererr.WithHint(e, "a server or port outside clusterctl's state still uses it: see `clusterctl status` for strays")
			}
			errs = append(errs, e)
		}
	}
	p.sgMu.Lock()
	p.sgID = ""
	p.sgMu.Unlock()
	if c.object != nil {
		if err := p.deleteContainer(ctx, c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

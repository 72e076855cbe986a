package ec2

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/config"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go/middleware"

	"github.com/clusterctl/clusterctl/internal/publicip"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

// Name is the provider's registry name.
const Name = "ec2"

func init() {
	provider.Register(Name, func(env provider.Env) (provider.Provider, error) { return New(env) })
}

// Tag keys clusterctl puts on everything it makes.
const (
	TagCluster   = "clusterctl:cluster"
	TagNode      = "clusterctl:node"
	TagNonce     = "clusterctl:nonce"
	TagManagedBy = "managed-by"
	ManagedBy    = "clusterctl"
)

// retryMaxAttempts is how often the SDK's standard retryer tries a call
// (throttling, 5xx, connection errors) before giving up.
const retryMaxAttempts = 8

// Provider makes EC2 instances. Make one with New; it talks to AWS only when
// a method is called.
type Provider struct {
	cfg Config
	env provider.Env

	// extraOpts are appended to the SDK's load options (tests: static
	// credentials, HTTP client).
	extraOpts []func(*config.LoadOptions) error

	initOnce sync.Once
	initErr  error
	ec2      *awsec2.Client
	s3       *s3.Client
	ssm      *ssm.Client
	region   string

	mu        sync.Mutex // guards the resolved fields below
	resolved  bool
	ami       string
	subnet    string
	vpc       string
	subnetNet netip.Prefix
	group     string // the security group the nodes are in
	bucket    string // the agent's bucket, when there is no state directory

	accessMu      sync.Mutex // guards the result of the access check (see ready)
	accessChecked bool
	accessErr     error

	// consistency is how long and how often the provider asks again when
	// EC2 says a resource it just made does not exist (a field for tests).
	consistency backoff
	// pollFirst is the first delay between two looks at an instance's
	// state while Stop or Start waits for EC2 to move it (a field for
	// tests).
	pollFirst time.Duration

	calls callCounter

	// detect says how this machine's public address is found when
	// ec2.api_from is empty (tests point it at a loopback server).
	// allow is who may reach the API and SSH ports: the api_from
	// networks, or this machine's public address, detected once.
	allow publicip.Source
}

var (
	_ provider.Provider       = (*Provider)(nil)
	_ provider.ConsoleLogger  = (*Provider)(nil)
	_ provider.Preflighter    = (*Provider)(nil)
	_ provider.AgentPublisher = (*Provider)(nil)
	_ provider.NodeNetwork    = (*Provider)(nil)
	_ provider.ClusterCleaner = (*Provider)(nil)
	_ provider.SeedChecker    = (*Provider)(nil)
	_ provider.ResourceLister = (*Provider)(nil)
)

// Option changes how New builds the provider.
type Option func(*Provider)

// WithLoadOptions adds options for the SDK's config loader (tests use it for
// static credentials).
func WithLoadOptions(opts ...func(*config.LoadOptions) error) Option {
	return func(p *Provider) { p.extraOpts = append(p.extraOpts, opts...) }
}

// WithPublicIP sets how this machine's public address is detected when
// ec2.api_from is empty (by default: publicip's endpoints, or those in its
// environment variable).
func WithPublicIP(opts publicip.Options) Option {
	return func(p *Provider) { p.allow.Options = opts }
}

// New makes the provider from its environment. It creates nothing and needs
// no network; credentials are looked up on first use.
func New(env provider.Env, opts ...Option) (*Provider, error) {
	cfg, err := ParseConfig(env)
	if err != nil {
		return nil, err
	}
	if env.Cluster == "" {
		return nil, errors.New("ec2 provider: the cluster name is not set")
	}
	cfg.GossipPort = env.Port()
	cfg.APIPort = env.API()
	if env.Profile != "" {
		cfg.Profile = env.Profile
	}
	if env.Region != "" {
		if !regionRE.MatchString(env.Region) {
			return nil, usererr.BadInput("use a region name such as eu-west-1 or us-east-1", "--region %q is not a region name", env.Region)
		}
		cfg.Region = env.Region
	}
	p := &Provider{cfg: cfg, env: env, consistency: eventualConsistency, pollFirst: time.Second}
	p.allow.Key, p.allow.Listed = apiFromKey, cfg.apiFrom
	for _, o := range opts {
		o(p)
	}
	return p, nil
}

// Name returns "ec2".
func (p *Provider) Name() string { return Name }

// Config returns the provider's configuration with defaults filled in.
func (p *Provider) Config() Config { return p.cfg }

// Calls returns how many AWS API operations the provider has made, by
// "service:Operation" (each counted once, however often the SDK retried it).
func (p *Provider) Calls() map[string]int64 { return p.calls.snapshot() }

// clients loads the SDK configuration (default chain, then the config's
// profile and region) once and makes the service clients.
func (p *Provider) clients(ctx context.Context) error {
	p.initOnce.Do(func() {
		opts := []func(*config.LoadOptions) error{
			config.WithRetryMaxAttempts(retryMaxAttempts),
			config.WithAPIOptions([]func(*middleware.Stack) error{p.calls.middleware}),
		}
		if p.cfg.Region != "" {
			opts = append(opts, config.WithRegion(p.cfg.Region))
		}
		if p.cfg.Profile != "" {
			opts = append(opts, config.WithSharedConfigProfile(p.cfg.Profile))
		}
		if p.cfg.EndpointURL != "" {
			opts = append(opts, config.WithBaseEndpoint(p.cfg.EndpointURL))
		}
		opts = append(opts, p.extraOpts...)
		awscfg, err := config.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			p.initErr = usererr.BadInput("check ec2.profile / AWS_PROFILE and the files ~/.aws/config and ~/.aws/credentials",
				"ec2: load the AWS configuration: %w", err)
			return
		}
		if awscfg.Region == "" {
			p.initErr = usererr.BadInput("set ec2.region in the config, or AWS_REGION, or region in your AWS profile",
				"ec2: no AWS region is configured")
			return
		}
		p.region = awscfg.Region
		custom := awscfg.BaseEndpoint != nil && *awscfg.BaseEndpoint != ""
		p.ec2 = awsec2.NewFromConfig(awscfg)
		p.ssm = ssm.NewFromConfig(awscfg)
		p.s3 = s3.NewFromConfig(awscfg, func(o *s3.Options) {
			// Emulators serve buckets by path, not as host names.
			o.UsePathStyle = custom
		})
	})
	return p.initErr
}

// Region returns the region in use (after the first call that talked to AWS).
func (p *Provider) Region() string { return p.region }

// clientToken is the RunInstances idempotency token of one incarnation of a
// node: the same spec always gives the same token (at most 64 ASCII chars).
func clientToken(cluster, name, nonce string) string {
	sum := sha256.Sum256([]byte(cluster + "\x00" + name + "\x00" + nonce))
	return "clusterctl-" + hex.EncodeToString(sum[:])[:40]
}

func (p *Provider) nodeTags(spec provider.NodeSpec) []types.Tag {
	m := map[string]string{}
	for k, v := range spec.Tags {
		m[k] = v
	}
	m["Name"] = p.env.Cluster + "-" + spec.Name
	m[TagCluster] = p.env.Cluster
	m[TagNode] = spec.Name
	m[TagNonce] = spec.Nonce
	m[TagManagedBy] = ManagedBy
	return toTags(m)
}

func (p *Provider) clusterTags() []types.Tag {
	return toTags(map[string]string{
		"Name":       "clusterctl-" + p.env.Cluster,
		TagCluster:   p.env.Cluster,
		TagManagedBy: ManagedBy,
	})
}

func toTags(m map[string]string) []types.Tag {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]types.Tag, 0, len(keys))
	for _, k := range keys {
		out = append(out, types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

func tagValue(tags []types.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

// Create resolves the AMI, subnet and security group (once per provider),
// then runs one instance with the node's user-data. A retried Create of the
// same spec (same nonce) returns the instance the first one made: it looks
// for it by tag first, and RunInstances carries a ClientToken derived from
// the spec so that a request the SDK retries never makes a second instance.
func (p *Provider) Create(ctx context.Context, spec provider.NodeSpec) (provider.Instance, error) {
	if spec.Name == "" || spec.Nonce == "" {
		return provider.Instance{}, fmt.Errorf("ec2: create: node spec needs a name and a nonce")
	}
	if spec.Cluster != "" && spec.Cluster != p.env.Cluster {
		return provider.Instance{}, fmt.Errorf("ec2: create %q: spec is for cluster %q, provider for %q", spec.Name, spec.Cluster, p.env.Cluster)
	}
	userData, err := EncodeUserData(spec.Seed.UserData)
	if err != nil {
		return provider.Instance{}, err
	}
	if err := p.resolve(ctx); err != nil {
		return provider.Instance{}, err
	}
	if err := p.ensureGroup(ctx); err != nil {
		return provider.Instance{}, err
	}
	// An instance of this incarnation may exist already (a retried up).
	if inst, ok, err := p.findIncarnation(ctx, spec.Name, spec.Nonce); err != nil {
		return provider.Instance{}, err
	} else if ok {
		return inst, nil
	}

	p.mu.Lock()
	ami, subnet, group := p.ami, p.subnet, p.group
	p.mu.Unlock()
	tags := p.nodeTags(spec)
	in := &awsec2.RunInstancesInput{
		ImageId:          aws.String(ami),
		InstanceType:     types.InstanceType(p.cfg.InstanceType),
		MinCount:         aws.Int32(1),
		MaxCount:         aws.Int32(1),
		SubnetId:         aws.String(subnet),
		SecurityGroupIds: []string{group},
		UserData:         aws.String(userData),
		ClientToken:      aws.String(clientToken(p.env.Cluster, spec.Name, spec.Nonce)),
		MetadataOptions: &types.InstanceMetadataOptionsRequest{
			HttpTokens:              types.HttpTokensStateRequired,
			HttpEndpoint:            types.InstanceMetadataEndpointStateEnabled,
			HttpPutResponseHopLimit: aws.Int32(1),
		},
		TagSpecifications: []types.TagSpecification{
			{ResourceType: types.ResourceTypeInstance, Tags: tags},
			{ResourceType: types.ResourceTypeVolume, Tags: tags},
		},
	}
	if p.cfg.KeyName != "" {
		in.KeyName = aws.String(p.cfg.KeyName)
	}
	var out *awsec2.RunInstancesOutput
	run := func() (err error) {
		out, err = p.ec2.RunInstances(ctx, in)
		return err
	}
	if group == p.cfg.SecurityGroupID {
		err = run() // the user's group: Preflight saw it
	} else {
		// The group clusterctl made may not be known to RunInstances yet;
		// the ClientToken makes a repeated request safe.
		err = p.retryGroupNotFound(ctx, run)
	}
	if isCode(err, "InvalidGroup.NotFound") && group != p.cfg.SecurityGroupID {
		return provider.Instance{}, groupNotVisible(fmt.Sprintf("run instance for node %q", spec.Name), group, err)
	}
	if err != nil {
		return provider.Instance{}, mapErr(fmt.Sprintf("run instance for node %q", spec.Name), err)
	}
	if len(out.Instances) != 1 {
		return provider.Instance{}, fmt.Errorf("ec2: run instance for node %q: AWS returned %d instances, want 1", spec.Name, len(out.Instances))
	}
	return toInstance(out.Instances[0]), nil
}

// findIncarnation returns the live instance tagged with this node's name and
// nonce, if there is one.
func (p *Provider) findIncarnation(ctx context.Context, name, nonce string) (provider.Instance, bool, error) {
	list, err := p.describe(ctx, []types.Filter{
		{Name: aws.String("tag:" + TagCluster), Values: []string{p.env.Cluster}},
		{Name: aws.String("tag:" + TagNode), Values: []string{name}},
		{Name: aws.String("tag:" + TagNonce), Values: []string{nonce}},
	}, nil)
	if err != nil {
		return provider.Instance{}, false, mapErr(fmt.Sprintf("look for node %q", name), err)
	}
	for _, in := range list {
		if in.State != provider.StateTerminated && in.State != provider.StateStopping {
			return in, true, nil
		}
	}
	return provider.Instance{}, false, nil
}

// describe lists instances matching filters or ids, all pages.
func (p *Provider) describe(ctx context.Context, filters []types.Filter, ids []string) ([]provider.Instance, error) {
	pg := awsec2.NewDescribeInstancesPaginator(p.ec2, &awsec2.DescribeInstancesInput{Filters: filters, InstanceIds: ids})
	var out []provider.Instance
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Reservations {
			for _, in := range r.Instances {
				out = append(out, toInstance(in))
			}
		}
	}
	return out, nil
}

func toInstance(in types.Instance) provider.Instance {
	out := provider.Instance{
		ID:      aws.ToString(in.InstanceId),
		Name:    tagValue(in.Tags, TagNode),
		Address: aws.ToString(in.PrivateIpAddress),
		// EC2 assigns the public address when the instance starts: it is
		// usually not in RunInstances' answer, but in DescribeInstances'.
		PublicAddress: aws.ToString(in.PublicIpAddress),
		State:         provider.StateUnknown,
	}
	if in.State != nil {
		out.State = mapState(in.State.Name)
		out.Detail = string(in.State.Name)
	}
	if in.StateReason != nil && aws.ToString(in.StateReason.Message) != "" {
		out.Detail += ": " + aws.ToString(in.StateReason.Message)
	}
	return out
}

// mapState maps an EC2 instance state onto clusterctl's.
func mapState(s types.InstanceStateName) provider.State {
	switch s {
	case types.InstanceStateNamePending:
		return provider.StatePending
	case types.InstanceStateNameRunning:
		return provider.StateRunning
	case types.InstanceStateNameShuttingDown, types.InstanceStateNameStopping:
		return provider.StateStopping
	case types.InstanceStateNameStopped:
		return provider.StateStopped
	case types.InstanceStateNameTerminated:
		return provider.StateTerminated
	}
	return provider.StateUnknown
}

// validInstanceID reports whether id can be an EC2 instance id; anything
// else is reported as not found without asking AWS.
func validInstanceID(id string) bool {
	if !strings.HasPrefix(id, "i-") || len(id) < 10 || len(id) > 19 {
		return false
	}
	for _, c := range id[2:] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Status reports one instance; an unknown id is StateNotFound.
func (p *Provider) Status(ctx context.Context, id string) (provider.Instance, error) {
	if !validInstanceID(id) {
		return provider.Instance{ID: id, State: provider.StateNotFound}, nil
	}
	if err := p.ready(ctx); err != nil {
		return provider.Instance{}, err
	}
	list, err := p.describe(ctx, nil, []string{id})
	if isCode(err, "InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed") {
		return provider.Instance{ID: id, State: provider.StateNotFound}, nil
	}
	if err != nil {
		return provider.Instance{}, mapErr(fmt.Sprintf("describe instance %q", id), err)
	}
	if len(list) == 0 {
		return provider.Instance{ID: id, State: provider.StateNotFound}, nil
	}
	return list[0], nil
}

// Delete terminates the instance and waits, within delete_timeout, until
// EC2 reports it terminated. An id EC2 does not know, for the whole of the
// eventual-consistency window, is not an error (see terminate). Delete is
// safe to call for several instances at once: nothing in it is serialised,
// so their waits overlap; the caller bounds how many run at once.
func (p *Provider) Delete(ctx context.Context, id string) error {
	if !validInstanceID(id) {
		return nil
	}
	if err := p.ready(ctx); err != nil {
		return err
	}
	gone, err := p.terminate(ctx, id)
	if err != nil || gone {
		return err
	}
	return p.waitTerminated(ctx, id)
}

// List returns the cluster's instances that are not terminated, including
// ones clusterctl's state does not know.
func (p *Provider) List(ctx context.Context, cluster string) ([]provider.Instance, error) {
	if err := p.ready(ctx); err != nil {
		return nil, err
	}
	list, err := p.describe(ctx, []types.Filter{
		{Name: aws.String("tag:" + TagCluster), Values: []string{cluster}},
		{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "shutting-down", "stopping", "stopped"}},
	}, nil)
	if err != nil {
		return nil, mapErr(fmt.Sprintf("list instances of cluster %q", cluster), err)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return list, nil
}

// ConsoleLog returns the instance's console output (EC2 keeps the last
// 64 KB; it appears a few minutes after boot).
func (p *Provider) ConsoleLog(ctx context.Context, id string) ([]byte, error) {
	if !validInstanceID(id) {
		return nil, fmt.Errorf("ec2: console of %q: %w", id, provider.ErrNotFound)
	}
	if err := p.ready(ctx); err != nil {
		return nil, err
	}
	out, err := p.ec2.GetConsoleOutput(ctx, &awsec2.GetConsoleOutputInput{InstanceId: aws.String(id)})
	if err != nil {
		return nil, mapErr(fmt.Sprintf("console output of %q", id), err)
	}
	if aws.ToString(out.Output) == "" {
		return []byte("(EC2 has no console output for this instance yet; it appears a few minutes after boot)\n"), nil
	}
	b, err := base64.StdEncoding.DecodeString(aws.ToString(out.Output))
	if err != nil {
		return nil, fmt.Errorf("ec2: console output of %q: %w", id, err)
	}
	return b, nil
}

// NodeCIDR is the node subnet's CIDR: the agent advertises its address in it.
func (p *Provider) NodeCIDR(ctx context.Context) (netip.Prefix, error) {
	if err := p.resolve(ctx); err != nil {
		return netip.Prefix{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.subnetNet, nil
}

// presigning marks the context of a presign, which runs the operation's
// middleware but sends nothing: it is not counted.
type presigning struct{}

// callCounter counts API operations by name.
type callCounter struct {
	mu sync.Mutex
	m  map[string]*atomic.Int64
}

func (c *callCounter) middleware(st *middleware.Stack) error {
	return st.Initialize.Add(middleware.InitializeMiddlewareFunc("clusterctlCallCounter",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			if ctx.Value(presigning{}) == nil {
				c.add(awsmiddleware.GetServiceID(ctx) + ":" + awsmiddleware.GetOperationName(ctx))
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
}

func (c *callCounter) add(k string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]*atomic.Int64{}
	}
	n := c.m[k]
	if n == nil {
		n = new(atomic.Int64)
		c.m[k] = n
	}
	c.mu.Unlock()
	n.Add(1)
}

func (c *callCounter) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int64{}
	for k, v := range c.m {
		out[k] = v.Load()
	}
	return out
}

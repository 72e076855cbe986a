package ec2

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/provider"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/internal/ports"
	"github.com/clusterctl/clusterctl/internal/publicip"
	"github.com/clusterctl/clusterctl/internal/strictyaml"
	"github.com/clusterctl/clusterctl/internal/usererr"
)

// Defaults of the configuration keys.
const (
	DefaultInstanceType  = "t3.micro"
	DefaultImage         = "debian-12"
	DefaultGossipPort    = ports.Gossip
	DefaultPresignTTL    = 2 * time.Hour
	DefaultDeleteTimeout = 5 * time.Minute
	MaxPresignTTL        = 7 * 24 * time.Hour // SigV4 presigned URLs live at most a week
)

// imageParameters are the public SSM parameters that name the latest AMI of
// the images clusterctl knows by name (amd64).
var imageParameters = map[string]string{
	"debian-12":    "/aws/service/debian/release/12/latest/amd64",
	"ubuntu-24.04": "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id",
}

// Config is the "ec2:" section of the cluster config. See the package
// documentation for what each key means.
type Config struct {
	Region  string `yaml:"region"`
	Profile string `yaml:"profile"`

	AMI          string `yaml:"ami"`
	Image        string `yaml:"image"`
	AMIParameter string `yaml:"ami_parameter"`
	InstanceType string `yaml:"instance_type"`
	SubnetID     string `yaml:"subnet_id"`
	KeyName      string `yaml:"key_name"`

	SecurityGroupID string   `yaml:"security_group_id"`
	GossipPort      int      `yaml:"-"` // gossip.port, from provider.Env
	APIPort         int      `yaml:"-"` // the agents' API port, from provider.Env
	APIFrom         []string `yaml:"api_from"`

	Bucket     string        `yaml:"bucket"`
	PresignTTL time.Duration `yaml:"presign_ttl"`

	DeleteTimeout time.Duration `yaml:"delete_timeout"`

	// EndpointURL points every AWS client at an API emulator (moto,
	// LocalStack). Never needed on AWS.
	EndpointURL string `yaml:"endpoint_url"`

	// apiFrom is APIFrom parsed; empty means "detect this machine's
	// public address" (Preflight).
	apiFrom []netip.Prefix
}

// apiFromKey names the allow-list of the API and SSH ports in messages.
const apiFromKey = "ec2.api_from"

const fixConfig = `edit the "ec2:" section of the cluster config (see docs/ec2.md)`

var (
	regionRE   = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	amiRE      = regexp.MustCompile(`^ami-[0-9a-f]{8,17}$`)
	subnetRE   = regexp.MustCompile(`^subnet-[0-9a-f]{8,17}$`)
	sgRE       = regexp.MustCompile(`^sg-[0-9a-f]{8,17}$`)
	itypeRE    = regexp.MustCompile(`^[a-z0-9-]+\.[a-z0-9-]+$`)
	bucketRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	ssmParamRE = regexp.MustCompile(`^/[A-Za-z0-9_./-]+$`)
)

// ParseConfig decodes the provider's config section strictly, fills in the
// defaults and validates the values. Every problem is reported at once, each
// as a *usererr.InputError. It needs no network.
func ParseConfig(env provider.Env) (Config, error) {
	node := env.Config
	var cfg Config
	if err := strictyaml.Decode(node, &cfg); err != nil {
		fix := fixConfig
		if hasKey(node, "observer_cidrs") {
			fix = "remove ec2.observer_cidrs: the nodes no longer reach clusterctl (it dials them); ec2.api_from lists who may reach the nodes' API and SSH ports, and defaults to this machine's public address"
		}
		return Config{}, &usererr.InputError{Err: fmt.Errorf("ec2 config: %w", err), Fix: fix}
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func (c *Config) setDefaults() {
	if c.InstanceType == "" {
		c.InstanceType = DefaultInstanceType
	}
	if c.AMI == "" && c.AMIParameter == "" && c.Image == "" {
		c.Image = DefaultImage
	}
	provider.Default(&c.GossipPort, ports.Gossip)
	provider.Default(&c.APIPort, ports.API)
	provider.Default(&c.PresignTTL, DefaultPresignTTL)
	provider.Default(&c.DeleteTimeout, DefaultDeleteTimeout)
}

func (c *Config) validate() error {
	pr := provider.NewProblems("ec2", "")
	if c.Region != "" && !regionRE.MatchString(c.Region) {
		pr.Bad("use a region name such as eu-west-1 or us-east-1", "region %q is not a region name", c.Region)
	}
	if strings.ContainsAny(c.Profile, " \t\n[]") {
		pr.Bad("use the name of a profile in ~/.aws/config", "profile %q is not a profile name", c.Profile)
	}
	n := 0
	for _, s := range []string{c.AMI, c.Image, c.AMIParameter} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		pr.Bad("set only one of ami, image and ami_parameter", "ami %q, image %q and ami_parameter %q: more than one is set", c.AMI, c.Image, c.AMIParameter)
	}
	if c.AMI != "" && !amiRE.MatchString(c.AMI) {
		pr.Bad("use an AMI id like ami-0123456789abcdef0", "ami %q is not an AMI id", c.AMI)
	}
	if c.Image != "" {
		if _, ok := imageParameters[c.Image]; !ok {
			pr.Bad("use image: debian-12 or ubuntu-24.04, or set ami: to an AMI id", "image %q is not known", c.Image)
		}
	}
	if c.AMIParameter != "" && !ssmParamRE.MatchString(c.AMIParameter) {
		pr.Bad("use an SSM parameter name starting with /", "ami_parameter %q is not an SSM parameter name", c.AMIParameter)
	}
	if !itypeRE.MatchString(c.InstanceType) {
		pr.Bad("use an instance type such as t3.micro", "instance_type %q is not an instance type", c.InstanceType)
	}
	if c.SubnetID != "" && !subnetRE.MatchString(c.SubnetID) {
		pr.Bad("use a subnet id like subnet-0123456789abcdef0, or leave subnet_id unset for the default VPC", "subnet_id %q is not a subnet id", c.SubnetID)
	}
	if c.SecurityGroupID != "" && !sgRE.MatchString(c.SecurityGroupID) {
		pr.Bad("use a security group id like sg-0123456789abcdef0, or leave it unset to let clusterctl make one", "security_group_id %q is not a security group id", c.SecurityGroupID)
	}
	if strings.ContainsAny(c.KeyName, "\n\x00") || len(c.KeyName) > 255 {
		pr.Bad("use the name of an EC2 key pair", "key_name %q is not a key pair name", c.KeyName)
	}
	apiFrom, err := publicip.ParseCIDRs(apiFromKey, c.APIFrom)
	if err != nil {
		pr.Add(err)
	}
	c.apiFrom = apiFrom
	if c.Bucket != "" && (!bucketRE.MatchString(c.Bucket) || strings.Contains(c.Bucket, "..")) {
		pr.Bad("use an S3 bucket name (3-63 lower-case letters, digits, dots and dashes)", "bucket %q is not a bucket name", c.Bucket)
	}
	if c.PresignTTL < time.Minute || c.PresignTTL > MaxPresignTTL {
		pr.Bad("use a duration between 1m and 168h; it must cover the time a node takes to boot", "presign_ttl %s is out of range", c.PresignTTL)
	}
	if c.DeleteTimeout < 0 {
		pr.Bad("use a duration like 5m", "delete_timeout %s is negative", c.DeleteTimeout)
	}
	if c.EndpointURL != "" {
		u, err := url.Parse(c.EndpointURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			pr.Bad("use an http(s) URL such as http://127.0.0.1:5000, or remove endpoint_url to talk to AWS", "endpoint_url %q is not an http(s) URL", c.EndpointURL)
		}
	}
	return pr.Err()
}

// amiParameter is the SSM parameter that names the AMI, or "" when the
// config names the AMI itself.
func (c Config) amiParameter() string {
	if c.AMI != "" {
		return ""
	}
	if c.AMIParameter != "" {
		return c.AMIParameter
	}
	return imageParameters[c.Image]
}

// hasKey reports whether the mapping node (or the document holding one)
// has key at its top level.
func hasKey(node *yaml.Node, key string) bool {
	if node != nil && node.Kind == yaml.DocumentNode && len(node.Content) == 1 {
		node = node.Content[0]
	}
	if node == nil || node.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		if node.Content[i].Value == key {
			return true
		}
	}
	return false
}

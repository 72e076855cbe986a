package ec2_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/ec2"
)

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := ec2.ParseConfig(provider.Env{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.InstanceType != "t3.micro" || cfg.Image != "debian-12" || cfg.GossipPort != 7946 || cfg.PresignTTL != 2*time.Hour || cfg.DeleteTimeout != 5*time.Minute {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string
	}{
		{"unknown key with line", "region: eu-west-1\ninstance_typ: t3.micro\n", []string{"instance_typ", "line 2", "instance_type"}},
		{"all problems at once", "region: Europe\nami: ami-xyz\nimage: debian-12\ninstance_type: huge\nsubnet_id: net-1\nsecurity_group_id: group\napi_from: [10.0.0.0/33, 203.0.113.7/24]\npresign_ttl: 30s\nbucket: Bad_Bucket\nendpoint_url: ftp://x\n",
			[]string{`region "Europe"`, `ami "ami-xyz"`, "more than one is set", `instance_type "huge"`, `subnet_id "net-1"`, `security_group_id "group"`, `ec2.api_from entry 1 "10.0.0.0/33" is not a CIDR`, `ec2.api_from entry 2 "203.0.113.7/24" has host bits set`, "presign_ttl 30s", `bucket "Bad_Bucket"`, `endpoint_url "ftp://x"`}},
		{"unknown image", "image: windows\n", []string{`image "windows" is not known`}},
		{"an address, not a network, in api_from", "api_from: [198.51.100.7]\n", []string{`ec2.api_from entry 1 "198.51.100.7" is an address, not a network: write 198.51.100.7/32`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(tt.text), &doc); err != nil {
				t.Fatal(err)
			}
			_, err := ec2.ParseConfig(provider.Env{Config: &doc})
			var ie *usererr.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error %T %v, want *InputError", err, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestExample: the example config's section is accepted without network.
func TestExample(t *testing.T) {
	b, err := os.ReadFile(examplePath(t))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		EC2 yaml.Node `yaml:"ec2"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.EC2.Kind == 0 {
		t.Fatal("the example has no ec2: section")
	}
	if _, err := ec2.New(provider.Env{Cluster: "demo", Dir: t.TempDir(), Config: &doc.EC2}); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add("region: eu-west-1\ninstance_type: t3.micro\n")
	f.Add("api_from: [198.51.100.0/24, '2001:db8::/32']\npresign_ttl: 1h\n")
	f.Add("ami: ami-0123456789abcdef0\nsubnet_id: subnet-0123abcd\n")
	f.Fuzz(func(t *testing.T, text string) {
		var doc yaml.Node
		if yaml.Unmarshal([]byte(text), &doc) != nil {
			return
		}
		cfg, err := ec2.ParseConfig(provider.Env{Config: &doc})
		if err != nil {
			var ie *usererr.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error %T is not an *InputError: %v", err, err)
			}
			return
		}
		if cfg.InstanceType == "" || cfg.GossipPort < 1 || cfg.GossipPort > 65535 || cfg.PresignTTL < time.Minute {
			t.Fatalf("accepted config has bad values: %+v", cfg)
		}
	})
}

// examplePath is the example cluster config (also loaded by cluster's
// TestExamplesLoad).
func examplePath(t *testing.T) string { return "../../examples/ec2.yaml" }

// The --profile and --region flags (provider.Env) win over the config keys,
// and gossip.port decides the port the security group opens.
func TestFlagsOverrideConfig(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("region: us-east-1\nprofile: work\n"), &doc); err != nil {
		t.Fatal(err)
	}
	p, err := ec2.New(provider.Env{Cluster: "c", Dir: t.TempDir(), Config: &doc, Region: "eu-west-1", Profile: "home", GossipPort: 8301})
	if err != nil {
		t.Fatal(err)
	}
	if c := p.Config(); c.Region != "eu-west-1" || c.Profile != "home" || c.GossipPort != 8301 {
		t.Errorf("config %+v: want region eu-west-1, profile home, port 8301", c)
	}
	_, err = ec2.New(provider.Env{Cluster: "c", Dir: t.TempDir(), Region: "Mars"})
	var in *usererr.InputError
	if !errors.As(err, &in) || !strings.Contains(err.Error(), `--region "Mars"`) {
		t.Errorf("bad --region: %v", err)
	}
}

// TestObserverCIDRsRemoved: a config still using the member observer's
// ec2.observer_cidrs is refused by the strict decoder, with a fix that
// points to ec2.api_from.
func TestObserverCIDRsRemoved(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("region: eu-west-1\nobserver_cidrs: [10.8.0.0/24]\n"), &doc); err != nil {
		t.Fatal(err)
	}
	_, err := ec2.ParseConfig(provider.Env{Config: &doc})
	var ie *usererr.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "observer_cidrs") || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("error %v, want the unknown key observer_cidrs at line 2", err)
	}
	if !strings.Contains(ie.Fix, "ec2.api_from") {
		t.Errorf("fix %q does not point to ec2.api_from", ie.Fix)
	}
}

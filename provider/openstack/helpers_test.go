package openstack_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/internal/publicip"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/openstack"
	"github.com/clusterctl/clusterctl/provider/openstack/openstacktest"
)

const testCluster = "lab"

// defaultPublicIP is what this machine's public address is detected as,
// unless a test sets publicip.EnvURL itself.
const defaultPublicIP = "203.0.113.44"

func TestMain(m *testing.M) {
	// No test may ask the real "what is my IP" endpoints.
	ip := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, defaultPublicIP)
	}))
	os.Setenv(publicip.EnvURL, ip.URL)
	code := m.Run()
	ip.Close()
	os.Exit(code)
}

// newCloud starts a fake cloud for the test.
func newCloud(t *testing.T, tlsServer bool) *openstacktest.Cloud {
	t.Helper()
	c := openstacktest.New(tlsServer)
	t.Cleanup(c.Close)
	return c
}

// writeClouds writes clouds.yaml (and secure.yaml when secure != "") into a
// new directory and returns the clouds.yaml path.
func writeClouds(t *testing.T, clouds, secure string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "clouds.yaml")
	if err := os.WriteFile(p, []byte(clouds), 0o600); err != nil {
		t.Fatal(err)
	}
	if secure != "" {
		if err := os.WriteFile(filepath.Join(dir, "secure.yaml"), []byte(secure), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// passwordClouds is a clouds.yaml with cloud "fake" using password auth.
func passwordClouds(c *openstacktest.Cloud, password string) string {
	return fmt.Sprintf(`clouds:
  fake:
    auth:
      auth_url: %s
      username: %s
      password: %q
      project_name: %s
      user_domain_name: %s
      project_domain_name: %s
    region_name: %s
    identity_api_version: 3
`, c.AuthURL(), openstacktest.UserName, password, openstacktest.ProjectName, openstacktest.DomainName, openstacktest.DomainName, openstacktest.Region)
}

// env is a fake environment for the provider.
type env map[string]string

func (e env) get(k string) string { return e[k] }

// newProvider makes the provider from an "openstack:" section (YAML).
func newProvider(t *testing.T, section string, e env) *openstack.Provider {
	t.Helper()
	p, err := makeProvider(t, section, e)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func makeProvider(t *testing.T, section string, e env) (*openstack.Provider, error) {
	t.Helper()
	return makeProviderIn(t, section, e, t.TempDir())
}

// makeProviderIn is makeProvider with the cluster's state directory dir.
func makeProviderIn(t *testing.T, section string, e env, dir string) (*openstack.Provider, error) {
	t.Helper()
	return makeProviderEnv(t, section, e, provider.Env{Cluster: testCluster, Dir: dir})
}

// makeProviderEnv is makeProvider with the environment pe (its Config is
// set from section).
func makeProviderEnv(t *testing.T, section string, e env, pe provider.Env) (*openstack.Provider, error) {
	t.Helper()
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(section), &node); err != nil {
		t.Fatal(err)
	}
	pe.Config = &node
	p, err := openstack.New(pe)
	if err != nil {
		return nil, err
	}
	if e == nil {
		e = env{}
	}
	p.SetGetenv(e.get)
	return p, nil
}

// standard returns a provider for cloud "fake" in a clouds.yaml with
// password auth, plus extra config lines.
func standard(t *testing.T, c *openstacktest.Cloud, extra string) *openstack.Provider {
	t.Helper()
	return standardEnv(t, c, provider.Env{Cluster: testCluster}, extra)
}

// standardEnv is standard with the environment pe (SSH, ports).
func standardEnv(t *testing.T, c *openstacktest.Cloud, pe provider.Env, extra string) *openstack.Provider {
	t.Helper()
	path := writeClouds(t, passwordClouds(c, openstacktest.Password), "")
	if pe.Dir == "" {
		pe.Dir = t.TempDir()
	}
	p, err := makeProviderEnv(t, fmt.Sprintf(`cloud: fake
clouds_file: %s
flavor: m1.small
image: debian-12-genericcloud-amd64
network: private
poll_interval: 1ms
%s`, path, extra), nil, pe)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// spec is a node spec with a recognisable user-data.
func spec(t *testing.T, name string) provider.NodeSpec {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return provider.NodeSpec{
		Cluster: testCluster, Name: name, Nonce: "n-" + name,
		Seed: provider.Seed{UserData: []byte("#cloud-config\nhostname: " + name + "\n")},
		Tags: map[string]string{"env": "test"}, Dir: dir,
	}
}

// noSecrets fails the test if any of texts shows a secret.
func noSecrets(t *testing.T, texts ...string) {
	t.Helper()
	for _, s := range texts {
		for _, secret := range []string{openstacktest.Password, openstacktest.AppCredSecret, "AdminPass-", "gAAAAA"} {
			if strings.Contains(s, secret) {
				t.Errorf("a secret (%q...) shows in: %s", secret[:4], s)
			}
		}
	}
}

package agentconfig

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/internal/pki"
)

// apiConfigJSON renders an agent config with the API section as the CLI
// does: the node's certificate and key from the cluster's CA.
func apiConfigJSON(t *testing.T, api APIConfig) string {
	t.Helper()
	b, err := json.Marshal(api)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`{"cluster": "lab", "name": "red", "nonce": "n-1", "provider": "qemu", "instance_id": "i-1",
  "key": %q, "advertise_addr": "192.0.2.10", "api": %s, %s}`, base64.StdEncoding.EncodeToString(testKey), b, identityJSON("lab", "red", "n-1"))
}

func TestLoadConfigAPI(t *testing.T) {
	ca, err := pki.Create(t.TempDir(), "lab")
	if err != nil {
		t.Fatal(err)
	}
	node, err := ca.IssueNode("red", nil)
	if err != nil {
		t.Fatal(err)
	}
	api := APIConfig{Cert: string(node.CertPEM), Key: string(node.KeyPEM), CA: string(node.CAPEM)}
	c, err := LoadConfig(writeFile(t, "agent.json", apiConfigJSON(t, api)))
	if err != nil {
		t.Fatal(err)
	}
	if c.API.Addr() != "0.0.0.0:7947" {
		t.Errorf("api address %q, want the default 0.0.0.0:7947", c.API.Addr())
	}
	if s := c.String() + fmt.Sprintf("%#v %v", c, c); strings.Contains(s, "PRIVATE KEY") || strings.Contains(s, string(node.KeyPEM[40:80])) {
		t.Errorf("the config's string form shows the API key: %s", s)
	}

	// Material of another cluster's CA, or a missing key, is refused.
	other, err := pki.Create(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.IssueNode("red", nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]APIConfig{
		"foreign": {Cert: string(foreign.CertPEM), Key: string(foreign.KeyPEM), CA: string(foreign.CAPEM)},
		"no key":  {Cert: string(node.CertPEM), CA: string(node.CAPEM)},
	} {
		_, err := LoadConfig(writeFile(t, "agent.json", apiConfigJSON(t, bad)))
		if err == nil || !strings.Contains(err.Error(), "api") {
			t.Errorf("%s: err = %v, want an api: error", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("%s: the error shows the key", name)
		}
	}
}

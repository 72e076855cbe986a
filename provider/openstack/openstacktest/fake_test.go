package openstacktest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// call sends a JSON request with a fresh token and returns status and body.
func call(t *testing.T, c *Cloud, method, path string, body any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(method, c.URL+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", c.IssueToken())
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// TestNovaRefusesBadMetadataKey: like Nova's schema, a metadata key with a
// '/' is a 400 with Nova's own message.
func TestNovaRefusesBadMetadataKey(t *testing.T) {
	c := New(false)
	defer c.Close()
	srv := map[string]any{"server": map[string]any{"name": "red", "flavorRef": "1", "imageRef": c.ImageID("cirros-0.6.2-x86_64-disk"),
		"networks": []any{map[string]any{"uuid": c.NetworkID(NetworkPrivate)}}, "metadata": map[string]string{"team/owner": "ops"}}}
	code, body := call(t, c, "POST", "/compute/v2.1/servers", srv)
	want := `{"badRequest":{"code":400,"message":"Invalid input for field/attribute metadata. Value: {'team/owner': 'ops'}. 'team/owner' does not match any of the regexes: '^[a-zA-Z0-9-_:. ]{1,255}$'"}}` + "\n"
	if code != http.StatusBadRequest || body != want {
		t.Fatalf("got %d %s\nwant 400 %s", code, body, want)
	}
}

// TestNeutronOverQuotaBody: the rule quota answers Neutron's OverQuota.
func TestNeutronOverQuotaBody(t *testing.T) {
	c := New(false)
	defer c.Close()
	c.SecurityGroupRuleQuota = 0
	g := c.SecurityGroups()[0]
	code, body := call(t, c, "POST", "/networking/v2.0/security-group-rules", map[string]any{"security_group_rule": map[string]any{
		"security_group_id": g.ID, "direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22}})
	want := `{"NeutronError":{"detail":"","message":"Quota exceeded for resources: ['security_group_rule'].","type":"OverQuota"}}` + "\n"
	if code != http.StatusConflict || body != want {
		t.Fatalf("got %d %s\nwant 409 %s", code, body, want)
	}
}

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

// TestNovaPowerActions: os-stop and os-start as Nova has them: 202 with no
// body; the transitional task_state (powering-off, powering-on) while the
// status stays; SHUTOFF (vm_state stopped, power_state 4) at the end; 409
// conflictingRequest, in Nova's words, for os-stop of a SHUTOFF server, for
// os-start of an ACTIVE one, and for either while a task is under way.
func TestNovaPowerActions(t *testing.T) {
	c := New(false)
	defer c.Close()
	c.BuildPolls, c.PowerPolls = 0, 1
	srv := map[string]any{"server": map[string]any{"name": "red", "flavorRef": "1", "imageRef": c.ImageID("cirros-0.6.2-x86_64-disk"),
		"networks": []any{map[string]any{"uuid": c.NetworkID(NetworkPrivate)}}}}
	code, body := call(t, c, "POST", "/compute/v2.1/servers", srv)
	if code != http.StatusAccepted {
		t.Fatalf("create: %d %s", code, body)
	}
	var created struct{ Server struct{ ID string } }
	_ = json.Unmarshal([]byte(body), &created)
	id := created.Server.ID
	action := "/compute/v2.1/servers/" + id + "/action"
	get := func() (status, task string, power int) {
		t.Helper()
		code, body := call(t, c, "GET", "/compute/v2.1/servers/"+id, nil)
		var s struct {
			Server struct {
				Status string
				Task   *string `json:"OS-EXT-STS:task_state"`
				VM     string  `json:"OS-EXT-STS:vm_state"`
				Power  int     `json:"OS-EXT-STS:power_state"`
			}
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &s) != nil {
			t.Fatalf("get: %d %s", code, body)
		}
		if s.Server.Task != nil {
			task = *s.Server.Task
		}
		return s.Server.Status + "/" + s.Server.VM, task, s.Server.Power
	}
	step := func(act string, wantCode int, wantBody string) {
		t.Helper()
		code, body := call(t, c, "POST", action, map[string]any{act: nil})
		if code != wantCode || body != wantBody {
			t.Fatalf("%s: got %d %q, want %d %q", act, code, body, wantCode, wantBody)
		}
	}
	conflict := func(verb, attr, state string) string {
		return `{"conflictingRequest":{"code":409,"message":"Cannot '` + verb + `' instance ` + id + ` while it is in ` + attr + ` ` + state + `"}}` + "\n"
	}
	if st, task, pw := get(); st != "ACTIVE/active" || task != "" || pw != 1 {
		t.Fatalf("after build: %s %q %d", st, task, pw)
	}
	step("os-start", http.StatusConflict, conflict("start", "vm_state", "active"))
	step("os-stop", http.StatusAccepted, "")
	step("os-stop", http.StatusConflict, conflict("stop", "task_state", "powering-off"))
	if st, task, pw := get(); st != "ACTIVE/active" || task != "powering-off" || pw != 1 {
		t.Fatalf("powering off: %s %q %d, want ACTIVE/active powering-off 1", st, task, pw)
	}
	if st, task, pw := get(); st != "SHUTOFF/stopped" || task != "" || pw != 4 {
		t.Fatalf("stopped: %s %q %d, want SHUTOFF/stopped, no task, 4", st, task, pw)
	}
	step("os-stop", http.StatusConflict, conflict("stop", "vm_state", "stopped"))
	step("os-start", http.StatusAccepted, "")
	step("os-start", http.StatusConflict, conflict("start", "task_state", "powering-on"))
	if st, task, _ := get(); st != "SHUTOFF/stopped" || task != "powering-on" {
		t.Fatalf("powering on: %s %q, want SHUTOFF/stopped powering-on", st, task)
	}
	if st, task, pw := get(); st != "ACTIVE/active" || task != "" || pw != 1 {
		t.Fatalf("started: %s %q %d, want ACTIVE/active, no task, 1", st, task, pw)
	}
}

package openstack_test

import (
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider/openstack"
	"github.com/clusterctl/clusterctl/provider/openstack/openstacktest"
)

// writesTo counts the requests that could change something at Swift.
func writesTo(c *openstacktest.Cloud) int {
	n := 0
	for _, r := range c.Requests() {
		if strings.HasPrefix(r.Path, "/swift/") && r.Method != http.MethodGet && r.Method != http.MethodHead {
			n++
		}
	}
	return n
}

// accountHeads counts the HEADs of the Swift account by the status the
// fake answered.
func accountHeads(c *openstacktest.Cloud) map[int]int {
	heads := map[int]int{}
	for _, r := range c.Requests() {
		if r.Method == http.MethodHead && strings.TrimSuffix(r.Path, "/") == "/swift/v1/AUTH_"+openstacktest.ProjectID {
			heads[r.Status]++
		}
	}
	return heads
}

// agentIn is a provider for the standard cloud whose state directory is dir.
func agentIn(t *testing.T, c *openstacktest.Cloud, dir, extra string) *openstack.Provider {
	t.Helper()
	path := writeClouds(t, passwordClouds(c, openstacktest.Password), "")
	p, err := makeProviderIn(t, "cloud: fake\nclouds_file: "+path+"\n"+resources+extra, nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func sigLen(t *testing.T, u string) int {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return len(pu.Query().Get("temp_url_sig"))
}

// TestAgentURLMakesNothingThenUploadServes: AgentURL only reads and
// records (0600); the URL does not work until UploadAgent made the
// container, key and object; then it serves the binary.
func TestAgentURLMakesNothingThenUploadServes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   openstacktest.ObjectStoreKind
		sigHex int // hex length of the signature: 64 = HMAC-SHA256, 40 = HMAC-SHA1
	}{
		{"swift", openstacktest.ObjectStoreSwift, 64},
		{"ceph rgw", openstacktest.ObjectStoreRGW, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCloud(t, false)
			c.ObjectStore = tc.kind
			dir := t.TempDir()
			p := agentIn(t, c, dir, "")
			bin, sum := agentFile(t, "\x7fELF agent for "+tc.name)

			u, err := p.AgentURL(ctx(t), testCluster, sum)
			if err != nil {
				t.Fatalf("AgentURL: %v", err)
			}
			if objs := c.Objects(); len(objs) != 0 || writesTo(c) != 0 {
				t.Fatalf("AgentURL made something at Swift: objects %v, %d writes", objs, writesTo(c))
			}
			if n := sigLen(t, u); n != tc.sigHex {
				t.Errorf("signature has %d hex digits, want %d", n, tc.sigHex)
			}
			st, err := os.Stat(filepath.Join(dir, "openstack-agent.json"))
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("record file: %v, mode %v; want 0600", err, st)
			}
			if code, _ := get(t, u); code == http.StatusOK {
				t.Fatal("the URL served something before UploadAgent")
			}

			if err := p.UploadAgent(ctx(t), testCluster, bin, sum); err != nil {
				t.Fatalf("UploadAgent: %v", err)
			}
			if code, body := get(t, u); code != http.StatusOK || body != "\x7fELF agent for "+tc.name {
				t.Fatalf("GET after UploadAgent: %d %q, want the agent", code, body)
			}
			// Idempotent, and a fresh provider (a later up) signs with the
			// same key: the object is uploaded once and both URLs work.
			if err := p.UploadAgent(ctx(t), testCluster, bin, sum); err != nil {
				t.Fatal(err)
			}
			p2 := agentIn(t, c, dir, "")
			u2, err := p2.AgentURL(ctx(t), testCluster, sum)
			if err != nil {
				t.Fatal(err)
			}
			if err := p2.UploadAgent(ctx(t), testCluster, bin, sum); err != nil {
				t.Fatal(err)
			}
			for _, x := range []string{u, u2} {
				if code, _ := get(t, x); code != http.StatusOK {
					t.Errorf("GET %d after a second up", code)
				}
			}
			puts := 0
			for _, r := range c.Requests() {
				if r.Method == http.MethodPut && strings.Contains(r.Path, "clusterctl-agent-") {
					puts++
				}
			}
			if puts != 1 {
				t.Errorf("the agent was uploaded %d times, want once", puts)
			}
			if err := p2.CleanupCluster(ctx(t), testCluster); err != nil {
				t.Fatal(err)
			}
			if objs := c.Objects(); len(objs) != 0 {
				t.Errorf("left after CleanupCluster: %v", objs)
			}
			if _, err := os.Stat(filepath.Join(dir, "openstack-agent.json")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("record file left after CleanupCluster: %v", err)
			}
			noSecrets(t, u, u2)
		})
	}
}

// TestAgentOnRGWUsesAccountKey: Ceph RGW ignores container keys; the key
// must be the account's, and an account key that was already there is
// reused (not replaced, which would break others' URLs) and kept at clean-up.
func TestAgentOnRGWUsesAccountKey(t *testing.T) {
	c := newCloud(t, false)
	c.ObjectStore = openstacktest.ObjectStoreRGW
	p := agentIn(t, c, t.TempDir(), "")
	bin, sum := agentFile(t, "agent")
	u, _, err := p.PublishAgent(ctx(t), testCluster, bin)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, u); code != http.StatusOK {
		t.Fatalf("GET on RGW: %d", code)
	}
	if k := c.AccountMeta("Temp-Url-Key"); k == "" {
		t.Fatal("no account temp URL key was set")
	}
	if err := p.CleanupCluster(ctx(t), testCluster); err != nil {
		t.Fatal(err)
	}
	if k := c.AccountMeta("Temp-Url-Key"); k != "" {
		t.Error("the account key clusterctl set is still there after CleanupCluster")
	}

	c.SetAccountMeta("Temp-Url-Key", "someone-elses-key")
	p = agentIn(t, c, t.TempDir(), "")
	u, err = p.AgentURL(ctx(t), testCluster, sum)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.UploadAgent(ctx(t), testCluster, bin, sum); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, u); code != http.StatusOK {
		t.Fatalf("GET with the existing account key: %d", code)
	}
	if err := p.CleanupCluster(ctx(t), testCluster); err != nil {
		t.Fatal(err)
	}
	if k := c.AccountMeta("Temp-Url-Key"); k != "someone-elses-key" {
		t.Error("the account's own key was changed or removed")
	}
}

// TestAgentWithoutTempURLIsBadInput: a store without the tempurl
// middleware fails before anything is made, naming the way out.
func TestAgentWithoutTempURLIsBadInput(t *testing.T) {
	c := newCloud(t, false)
	c.ObjectStore = openstacktest.ObjectStoreNoTempURL
	p := agentIn(t, c, t.TempDir(), "")
	_, sum := agentFile(t, "agent")
	_, err := p.AgentURL(ctx(t), testCluster, sum)
	var ie *usererr.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "no temporary URLs") || !strings.Contains(ie.Fix, "agent.source") {
		t.Fatalf("AgentURL: %v; want an input error about temporary URLs", err)
	}
	if len(c.Objects()) != 0 || writesTo(c) != 0 {
		t.Error("something was made at Swift")
	}
}

// TestAgentPrivateCAIsBadInput: with a private CA (cacert) the nodes'
// curl would not trust the object store; fail before anything is made.
func TestAgentPrivateCAIsBadInput(t *testing.T) {
	c := newCloud(t, true)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	must(t, os.WriteFile(caFile, c.CertificatePEM(), 0o600))
	cl := passwordClouds(c, openstacktest.Password) + "    cacert: " + caFile + "\n"
	p := newProvider(t, "cloud: fake\nclouds_file: "+writeClouds(t, cl, "")+"\n"+resources, nil)
	if err := p.Preflight(ctx(t), nil); err != nil {
		t.Fatalf("Preflight with cacert: %v", err)
	}
	_, sum := agentFile(t, "agent")
	_, err := p.AgentURL(ctx(t), testCluster, sum)
	var ie *usererr.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "private CA") || !strings.Contains(ie.Fix, "agent.source: url") {
		t.Fatalf("AgentURL with a private CA: %v; want an input error", err)
	}
	if len(c.Objects()) != 0 || writesTo(c) != 0 {
		t.Error("something was made at Swift")
	}
}

// TestAgentWithoutInfoOnFreshAccount: a Swift that hides /info (403,
// expose_info = false) leads to account keys; a project that never stored
// anything has an auto-created account, whose HEAD Swift answers with 200
// rather than 204. up's Swift step (AgentURL, then UploadAgent) must still
// work: HMAC-SHA1 with a key clusterctl sets on the account, removed again
// by CleanupCluster.
func TestAgentWithoutInfoOnFreshAccount(t *testing.T) {
	c := newCloud(t, false)
	c.NoInfo = true
	p := agentIn(t, c, t.TempDir(), "")
	bin, sum := agentFile(t, "\x7fELF agent, no /info")

	u, err := p.AgentURL(ctx(t), testCluster, sum)
	if err != nil {
		t.Fatalf("AgentURL on a fresh account without /info: %v", err)
	}
	if writesTo(c) != 0 {
		t.Fatal("AgentURL wrote to Swift")
	}
	if n := sigLen(t, u); n != 40 {
		t.Errorf("signature has %d hex digits, want 40 (HMAC-SHA1 without /info)", n)
	}
	if err := p.UploadAgent(ctx(t), testCluster, bin, sum); err != nil {
		t.Fatalf("UploadAgent: %v", err)
	}
	if code, body := get(t, u); code != http.StatusOK || body != "\x7fELF agent, no /info" {
		t.Fatalf("GET temp URL: %d %q, want the agent", code, body)
	}
	if c.AccountMeta("Temp-Url-Key") == "" {
		t.Fatal("no account temp URL key was set")
	}
	if heads := accountHeads(c); heads[http.StatusOK] == 0 || heads[http.StatusNoContent] == 0 {
		t.Errorf("account HEADs by status %v: want both 200 (fresh) and 204 (after the first write)", accountHeads(c))
	}
	if err := p.CleanupCluster(ctx(t), testCluster); err != nil {
		t.Fatal(err)
	}
	if k := c.AccountMeta("Temp-Url-Key"); k != "" {
		t.Error("the account key clusterctl set is still there after CleanupCluster")
	}
	noSecrets(t, u)
}

// TestAgentWithoutInfoReusesAccountKey2: on an account that was written to
// before (HEAD 204) whose only key is X-Account-Meta-Temp-URL-Key-2, that
// key is read, signed with and left in place.
func TestAgentWithoutInfoReusesAccountKey2(t *testing.T) {
	c := newCloud(t, false)
	c.NoInfo = true
	c.SetAccountMeta("Temp-Url-Key-2", "the-projects-second-key")
	p := agentIn(t, c, t.TempDir(), "")
	bin, _ := agentFile(t, "agent")
	u, _, err := p.PublishAgent(ctx(t), testCluster, bin)
	if err != nil {
		t.Fatalf("PublishAgent: %v", err)
	}
	if code, _ := get(t, u); code != http.StatusOK {
		t.Fatalf("GET temp URL signed with key 2: %d", code)
	}
	if heads := accountHeads(c); heads[http.StatusNoContent] == 0 || len(heads) != 1 {
		t.Errorf("account HEADs by status %v: want only 204 (the account was written to)", heads)
	}
	if err := p.CleanupCluster(ctx(t), testCluster); err != nil {
		t.Fatal(err)
	}
	if k1, k2 := c.AccountMeta("Temp-Url-Key"), c.AccountMeta("Temp-Url-Key-2"); k1 != "" || k2 != "the-projects-second-key" {
		t.Errorf("account keys after CleanupCluster: key %q, key 2 %q; want none set and the project's key 2 kept", k1, k2)
	}
}

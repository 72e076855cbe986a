package openstack_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

func agentFile(t *testing.T, content string) (path, sum string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "clusterctl-agent")
	must(t, os.WriteFile(path, []byte(content), 0o755))
	h := sha256.Sum256([]byte(content))
	return path, hex.EncodeToString(h[:])
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url) // no token: the URL alone must grant access
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestPublishAgentTempURL(t *testing.T) {
	c := newCloud(t, false)
	p := standard(t, c, "")
	bin, sum := agentFile(t, "\x7fELF pretend agent")
	url, gotSum, err := p.PublishAgent(ctx(t), testCluster, bin)
	if err != nil {
		t.Fatalf("PublishAgent: %v", err)
	}
	if gotSum != sum {
		t.Errorf("sha256 = %s, want %s", gotSum, sum)
	}
	if !strings.HasPrefix(url, c.URL+"/swift/v1/") || !strings.Contains(url, "temp_url_sig=") {
		t.Errorf("URL %q is not a Swift temporary URL", url)
	}
	if code, body := get(t, url); code != http.StatusOK || body != "\x7fELF pretend agent" {
		t.Errorf("GET temp URL: %d %q, want the agent", code, body)
	}
	// A tampered signature must not work: the container is private.
	if code, _ := get(t, strings.Replace(url, "temp_url_sig=", "temp_url_sig=00", 1)); code == http.StatusOK {
		t.Error("a tampered temp URL was accepted")
	}
	if code, _ := get(t, strings.Split(url, "?")[0]); code == http.StatusOK {
		t.Error("the object can be read without the signature")
	}
	// Publishing again reuses the container and its key: the URL still works
	// and nothing is uploaded twice.
	url2, _, err := p.PublishAgent(ctx(t), testCluster, bin)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, url2); code != http.StatusOK {
		t.Errorf("second temp URL: %d", code)
	}
	puts := 0
	for _, r := range c.Requests() {
		if r.Method == "PUT" && strings.Contains(r.Path, "clusterctl-agent-") {
			puts++
		}
	}
	if puts != 1 {
		t.Errorf("the agent was uploaded %d times, want once", puts)
	}
	if err := p.CleanupCluster(ctx(t), testCluster); err != nil {
		t.Fatal(err)
	}
	if objs := c.Objects(); len(objs) != 0 {
		t.Errorf("Swift objects left after CleanupCluster: %v", objs)
	}
	noSecrets(t, url)
}

func TestPublishAgentWithoutObjectStore(t *testing.T) {
	c := newCloud(t, false)
	c.NoObjectStore = true
	p := standard(t, c, "")
	bin, _ := agentFile(t, "agent")
	_, _, err := p.PublishAgent(ctx(t), testCluster, bin)
	var ie *usererr.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "no object store") || !strings.Contains(ie.Fix, "agent.url") {
		t.Fatalf("PublishAgent on a cloud without Swift: %v; want an input error pointing at agent.url", err)
	}
	// Clean-up still works without Swift.
	if err := p.CleanupCluster(ctx(t), testCluster); err != nil {
		t.Fatal(err)
	}
}

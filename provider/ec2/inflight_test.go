package ec2_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/ec2"
)

// downManager is a `clusterctl down` of cluster name on EC2 at endpoint
// (its own home and config); the provider it makes asks again after EC2
// says a resource does not exist every 50 ms, for window.
func downManager(t *testing.T, endpoint, name string, window time.Duration) *cluster.Manager {
	t.Helper()
	_, param := someAMI(t, endpoint)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "cluster.yaml")
	text := fmt.Sprintf("cluster: %s\nprovider: ec2\nec2:\n  region: %s\n  endpoint_url: %s\n  ami_parameter: %s\n  delete_timeout: 1m\n",
		name, testRegion, endpoint, param)
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := cluster.LoadConfig(cfgPath, true)
	if err != nil {
		t.Fatal(err)
	}
	m, err := cluster.NewManager(cfg, filepath.Join(dir, "home"), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.NewProvider = func(pname string, env provider.Env) (provider.Provider, error) {
		if pname != ec2.Name {
			return nil, fmt.Errorf("unexpected provider %q", pname)
		}
		p, err := ec2.New(env, staticCreds())
		if err == nil {
			ec2.SetConsistency(p, 50*time.Millisecond, window)
		}
		return p, err
	}
	return m
}

// recordCreating writes the state a `kill -9` of up leaves while the
// provider creates node sp: recorded, create sent, no instance id.
func recordCreating(t *testing.T, m *cluster.Manager, sp provider.NodeSpec) {
	t.Helper()
	err := m.Store.Update(func(st *cluster.State) error {
		st.Cluster, st.Provider = m.Cluster, ec2.Name
		st.NeedsCleanup(ec2.Name)
		st.Nodes = append(st.Nodes, cluster.Node{Name: sp.Name, Nonce: sp.Nonce, Provider: ec2.Name,
			Phase: cluster.PhaseCreating, CreateSent: true, CreatedAt: time.Now().UTC()})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// filterNamed reports whether a DescribeInstances' form has a filter called name.
func filterNamed(form url.Values, name string) bool {
	for n := 1; form.Has(fmt.Sprintf("Filter.%d.Name", n)); n++ {
		if form.Get(fmt.Sprintf("Filter.%d.Name", n)) == name {
			return true
		}
	}
	return false
}

// formOf returns the parameters of an EC2 request, leaving its body to be
// read again.
func formOf(r *http.Request) url.Values {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	return form
}

// liveInstances returns the ids of moto's instances that are not terminated.
func liveInstances(t *testing.T, endpoint string) []string {
	t.Helper()
	out, err := ec2Client(t, endpoint).DescribeInstances(context.Background(), &awsec2.DescribeInstancesInput{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if in.State.Name != types.InstanceStateNameTerminated {
				ids = append(ids, *in.InstanceId)
			}
		}
	}
	return ids
}

// TestDownFindsInFlightCreate: up is killed while its RunInstances is on
// its way; EC2 completes the request only after `down --all` has listed
// the cluster's instances by tag (and after down's first look by
// ClientToken found nothing), and the listing of the cluster's instances
// does not show the new instance for the rest of down (EC2's eventual
// consistency), so neither the node's lookup by name nor the final sweep
// of CleanupCluster can see it. down must still find the instance, by the
// create's ClientToken, and terminate it before it reports success.
func TestDownFindsInFlightCreate(t *testing.T) {
	srv := moto(t)
	fp := newFaultProxy(t, srv.URL)
	up := newProvider(t, fp.URL, "inflight", "")
	m := downManager(t, fp.URL, "inflight", 30*time.Second)
	sp := spec(t, "inflight", "red")
	recordCreating(t, m, sp)

	// up sends RunInstances, which the proxy holds; then up is killed.
	h := fp.hold(t, "RunInstances")
	upCtx, kill := context.WithCancel(context.Background())
	created := make(chan error, 1)
	go func() { _, err := up.p.Create(upCtx, sp); created <- err }()
	select {
	case <-h.arrived:
	case err := <-created:
		t.Fatalf("Create returned (%v) before its RunInstances reached the proxy", err)
	}
	kill()
	if err := <-created; !errors.Is(err, context.Canceled) {
		t.Fatalf("the killed up's Create: %v, want context.Canceled", err)
	}

	// The cluster's listing lags: it never shows the new instance.
	fp.mu.Lock()
	fp.deny = func(r *http.Request, action string) *fault {
		if action == "DescribeInstances" && filterNamed(formOf(r), "instance-state-name") {
			return &fault{body: emptyDescribeInstances}
		}
		return nil
	}
	// The held request completes once down has listed the cluster's
	// instances and its first look by ClientToken has been answered.
	var mu sync.Mutex
	var tagLists, tokenLooks, tagListsBefore int
	fp.answered = func(action string, form url.Values) {
		if action != "DescribeInstances" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if filterNamed(form, "tag:"+ec2.TagCluster) && filterNamed(form, "instance-state-name") {
			tagLists++
		}
		if filterNamed(form, "client-token") {
			tokenLooks++
			if tokenLooks == 1 {
				tagListsBefore = tagLists
				h.letGo()
				<-h.done
			}
		}
	}
	fp.mu.Unlock()

	if _, err := m.Down(context.Background(), cluster.DownRequest{All: true}); err != nil {
		t.Fatalf("down --all: %v", err)
	}
	select {
	case <-h.done:
	default:
		t.Fatal("down never looked for the create by its ClientToken: the held RunInstances was never let through")
	}
	mu.Lock()
	defer mu.Unlock()
	if tagListsBefore < 2 {
		t.Errorf("down listed the cluster's instances %d times before the held RunInstances completed, want 2 (strays, the node by name)", tagListsBefore)
	}
	toks := fp.runTokens()
	if len(toks) != 1 {
		t.Fatalf("RunInstances attempts %q, want 1", toks)
	}
	fp.mu.Lock()
	made := fp.launched[toks[0]]
	fp.mu.Unlock()
	if len(made) != 1 {
		t.Fatalf("the held RunInstances made %v, want one instance", made)
	}
	if st := describeOne(t, ec2Client(t, srv.URL), made[0]).State.Name; st != types.InstanceStateNameTerminated {
		t.Errorf("down --all reported success with the in-flight instance %s %s", made[0], st)
	}
	if live := liveInstances(t, srv.URL); len(live) != 0 {
		t.Errorf("instances left running after down --all: %v", live)
	}
	if m.Store.Exists() {
		t.Error("the cluster's state is kept after a down --all that succeeded")
	}
}

// TestDownInFlightUnsettled: when down cannot ask EC2 for the create's
// ClientToken, it does not report success: it fails naming the node, which
// stays in state, and removes nothing cluster-wide.
func TestDownInFlightUnsettled(t *testing.T) {
	srv := moto(t)
	fp := newFaultProxy(t, srv.URL)
	up := newProvider(t, fp.URL, "unsettled", "")
	if _, err := up.p.Create(context.Background(), spec(t, "unsettled", "blue")); err != nil {
		t.Fatal(err) // makes the security group down --all would remove
	}
	m := downManager(t, fp.URL, "unsettled", 30*time.Second)
	recordCreating(t, m, spec(t, "unsettled", "red"))
	fp.deny = func(r *http.Request, action string) *fault {
		if action != "DescribeInstances" || !filterNamed(formOf(r), "client-token") {
			return nil
		}
		return &fault{status: 403, code: "UnauthorizedOperation", message: "You are not authorized to perform this operation."}
	}
	_, err := m.Down(context.Background(), cluster.DownRequest{All: true})
	var ie *usererr.InputError
	if err == nil || errors.As(err, &ie) {
		t.Fatalf("down --all: %v, want a failure (exit 1)", err)
	}
	if !strings.Contains(err.Error(), `node "red"`) || !strings.Contains(err.Error(), "ClientToken") {
		t.Errorf("error %q does not name node red and what could not be settled", err)
	}
	st, lerr := m.Store.Load()
	if lerr != nil || st.Node("red") == nil {
		t.Fatalf("node red is not kept in state: %v %+v", lerr, st)
	}
	if !st.Node("red").CreateSent {
		t.Error("node red no longer says its create was sent: the next down would not look for it")
	}
}

// TestDownInFlightNeverMade: a create that never reached EC2 leaves nothing
// to find; down asks again for the consistency window before it takes the
// ClientToken's silence for "nothing made", then succeeds.
func TestDownInFlightNeverMade(t *testing.T) {
	srv := moto(t)
	fp := newFaultProxy(t, srv.URL)
	m := downManager(t, fp.URL, "never", 400*time.Millisecond)
	recordCreating(t, m, spec(t, "never", "red"))
	var mu sync.Mutex
	looks := 0
	fp.mu.Lock()
	fp.answered = func(action string, form url.Values) {
		if action == "DescribeInstances" && filterNamed(form, "client-token") {
			mu.Lock()
			looks++
			mu.Unlock()
		}
	}
	fp.mu.Unlock()
	if _, err := m.Down(context.Background(), cluster.DownRequest{All: true}); err != nil {
		t.Fatalf("down --all: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if looks < 2 {
		t.Errorf("down looked for the create by its ClientToken %d times, want it asked again before nothing counts as made", looks)
	}
	if m.Store.Exists() {
		t.Error("the cluster's state is kept after a down --all that succeeded")
	}
}

package ec2_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/ec2"
)

// signedRegion is the region of a SigV4 request's credential scope
// (Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request).
var signedRegion = regexp.MustCompile(`Credential=[^/]+/[0-9]+/([^/]+)/`)

// TestRegionCheckedAtItsOwnEndpoint: an organisation policy denies every
// region but eu-west-1 (AWS answers such calls UnauthorizedOperation).
// Preflight of eu-west-1 must pass: it asks nothing of another region.
func TestRegionCheckedAtItsOwnEndpoint(t *testing.T) {
	srv := moto(t)
	fp := newFaultProxy(t, srv.URL)
	var mu sync.Mutex
	asked := map[string]bool{}
	fp.deny = func(r *http.Request, action string) *fault {
		m := signedRegion.FindStringSubmatch(r.Header.Get("Authorization"))
		if m == nil {
			return nil
		}
		mu.Lock()
		asked[action+"@"+m[1]] = true
		mu.Unlock()
		if m[1] != testRegion {
			return &fault{status: 403, code: "UnauthorizedOperation", message: "You are not authorized to perform this operation. User is not authorized to perform: ec2:" + action + " with an explicit deny in a service control policy"}
		}
		return nil
	}
	f := newProvider(t, fp.URL, "scp", "")
	if err := f.p.Preflight(context.Background(), nil); err != nil {
		t.Fatalf("Preflight of the allowed region %s: %v", testRegion, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !asked["DescribeRegions@"+testRegion] {
		t.Errorf("DescribeRegions was not asked of %s itself: %v", testRegion, asked)
	}
}

// nxdomain is an HTTP client on which every host name fails to resolve,
// as a region that does not exist does (ec2.REGION.amazonaws.com has no
// DNS record). It never sends anything anywhere, and counts the dials.
func nxdomain(dials *atomic.Int64) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			host, _, _ := net.SplitHostPort(addr)
			return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}}
		},
	}}
}

// TestRegionThatDoesNotExist: a well-formed region that does not exist is
// bad input, found by the first call whatever it is (NodeCIDR before
// Preflight), with one attempt and no retries, and reported the same way
// again without asking again.
func TestRegionThatDoesNotExist(t *testing.T) {
	moto(t) // isolates the SDK from this machine's AWS configuration
	var dials atomic.Int64
	text := "region: eu-nowhere-9\nami: ami-0123456789abcdef0\n"
	p, err := ec2.New(provider.Env{Cluster: "nowhere", Dir: t.TempDir(), Config: yamlNode(t, text)},
		staticCreds(), ec2.WithLoadOptions(config.WithHTTPClient(nxdomain(&dials))))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.NodeCIDR(context.Background())
	var ie *usererr.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), `region "eu-nowhere-9" does not exist`) || !strings.Contains(err.Error(), "ec2.eu-nowhere-9.amazonaws.com") {
		t.Fatalf("NodeCIDR in a region that does not exist: %T %v", err, err)
	}
	if !strings.Contains(ie.Fix, "ec2.region") {
		t.Errorf("fix %q does not name ec2.region", ie.Fix)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connection attempts, want 1 (a name that does not resolve is not retried)", n)
	}
	err2 := p.Preflight(context.Background(), nil)
	if err2 == nil || err2.Error() != err.Error() {
		t.Errorf("Preflight after NodeCIDR: %v, want the same error", err2)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connection attempts after Preflight, want still 1 (the answer is kept)", n)
	}
}

// blackhole is a loopback listener that accepts connections and never
// answers on them: an instance metadata service that does not respond.
func blackhole(t *testing.T) (addr string, conns *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = new(atomic.Int64)
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String(), conns
}

// TestNoCredentialsBlackholedIMDS: no credentials anywhere but the
// instance metadata service, which takes connections and never answers.
// Preflight says so once, as bad input, bounded by the provider's
// credential timeout (not the SDK's retries), and a later call reports the
// same without waiting again.
func TestNoCredentialsBlackholedIMDS(t *testing.T) {
	srv := moto(t)
	addr, conns := blackhole(t)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://"+addr)
	text := fmt.Sprintf("region: %s\nendpoint_url: %s\nami: ami-0123456789abcdef0\n", testRegion, srv.URL)
	p, err := ec2.New(provider.Env{Cluster: "imds", Dir: t.TempDir(), Config: yamlNode(t, text)})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		err error
		d   time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		err := p.Preflight(context.Background(), nil)
		done <- result{err, time.Since(start)}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(2 * time.Minute): // a hang detector, far above the bound
		t.Fatal("Preflight still waits for the metadata service after 2 minutes")
	}
	t.Logf("Preflight answered after %s, %d connections to the metadata service", r.d.Round(time.Millisecond), conns.Load())
	var ie *usererr.InputError
	if !errors.As(r.err, &ie) || strings.Count(r.err.Error(), "no AWS credentials found") != 1 || !strings.Contains(ie.Fix, "aws configure") {
		t.Fatalf("Preflight: %T %v, want one bad-input error about credentials", r.err, r.err)
	}
	if conns.Load() == 0 {
		t.Fatal("the metadata service was never asked: the test does not test the chain's wait")
	}
	before := conns.Load()
	_, err = p.NodeCIDR(context.Background())
	if err == nil || err.Error() != r.err.Error() {
		t.Errorf("NodeCIDR after Preflight: %v, want the same error", err)
	}
	if conns.Load() != before {
		t.Errorf("NodeCIDR asked the metadata service again (%d connections, was %d)", conns.Load(), before)
	}
	nothingMade(t, srv.URL)
}

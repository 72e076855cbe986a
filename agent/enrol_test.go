package agent

import (
	"context"
	"crypto/hmac"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/identity"
	"github.com/clusterctl/clusterctl/internal/identity/identitytest"
	"github.com/clusterctl/clusterctl/internal/testkit"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// enrollingConfig is a node's config as the CLI renders it: a bootstrap
// token and the CA, no key of any kind.
func enrollingConfig(t testing.TB, name string, expires time.Time) agentconfig.Config {
	cfg := testConfig(name)
	ca := identitytest.CA(cfg.Cluster)
	cfg.Key = nil
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.API = agentconfig.APIConfig{BindAddr: "127.0.0.1", Port: testkit.FreePort(t, "127.0.0.1"), CA: string(ca.CertPEM())}
	cfg.Identity = agentconfig.IdentityConfig{CA: string(ca.CertPEM())}
	cfg.Enrol = &agentconfig.EnrolConfig{Token: []byte("0123456789abcdef0123456789abcdef"), Expires: expires, SSHHostKey: filepath.Join(t.TempDir(), "none.pub")}
	return cfg
}

// serveEnrolling starts the agent and its API as the agent binary does.
func serveEnrolling(t *testing.T, cfg agentconfig.Config) (*Agent, *nodeapi.Client) {
	t.Helper()
	a, err := newAgent(cfg, testLogger(t), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.API.Addr())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served, ran := make(chan error, 1), make(chan error, 1)
	go func() { served <- nodeapi.Serve(ctx, ln, cfg.API.Credentials(cfg.Cluster), a, nil) }()
	go func() { ran <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-served; <-ran })
	cli, err := identitytest.CA(cfg.Cluster).IssueCLI()
	if err != nil {
		t.Fatal(err)
	}
	c, err := nodeapi.NewClient(cli, nodeapi.Endpoints(nodeapi.Endpoint{Name: cfg.Name, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.API.Port))}))
	if err != nil {
		t.Fatal(err)
	}
	return a, c
}

// grantWith is the CLI's check and grant, with token.
func grantWith(cfg agentconfig.Config, token []byte) func(nodeapi.EnrolOffer, []byte) (nodeapi.EnrolGrant, error) {
	return func(o nodeapi.EnrolOffer, exp []byte) (nodeapi.EnrolGrant, error) {
		if !hmac.Equal(o.MAC, nodeapi.EnrolMAC(token, o, exp)) {
			return nodeapi.EnrolGrant{}, errors.New("wrong proof")
		}
		ca := identitytest.CA(cfg.Cluster)
		pub, err := x509.ParsePKIXPublicKey(o.TLSKey)
		if err != nil {
			return nodeapi.EnrolGrant{}, err
		}
		cert, err := ca.IssueNodeKey(cfg.Name, nil, pub)
		if err != nil {
			return nodeapi.EnrolGrant{}, err
		}
		grant, err := identity.GrantKey(ca, identity.Claim{Cluster: cfg.Cluster, Name: cfg.Name, Role: identity.RoleNode, Nonce: cfg.Nonce}, o.IdentityKey)
		return nodeapi.EnrolGrant{Cert: string(cert), Grant: grant, Keys: [][]byte{testKey}}, err
	}
}

func TestEnrolThenJoin(t *testing.T) {
	ctx := testCtx(t)
	cfg := enrollingConfig(t, "red", time.Now().Add(time.Hour))
	a, c := serveEnrolling(t, cfg)
	// Before enrolment: no gossip, and the API answers nothing but the
	// enrolment.
	if _, err := c.Members(ctx); err == nil {
		t.Error("the API of a node that is not enrolled answered members")
	}
	// A CLI with another token gets an offer it refuses: nothing is given.
	if _, err := c.Enrol(ctx, "red", grantWith(cfg, []byte("another token, not the node's!!"))); !errors.Is(err, nodeapi.ErrNotGranted) || !strings.Contains(err.Error(), "wrong proof") {
		t.Fatalf("enrolment with the wrong token: %v", err)
	}
	if a.Enrolled() {
		t.Fatal("enrolled without a grant")
	}
	o, err := c.Enrol(ctx, "red", grantWith(cfg, cfg.Enrol.Token))
	if err != nil {
		t.Fatal(err)
	}
	if o.Name != "red" || len(o.IdentityKey) != 32 {
		t.Errorf("offer %+v", o)
	}
	// Now it runs gossip, and its API is the CA's.
	deadline := time.Now().Add(10 * time.Second)
	for {
		snap, err := c.Members(ctx)
		if err == nil && len(snap.Members) == 1 && snap.Members[0].Status == nodeapi.StatusAlive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no gossip after enrolment: %+v %v", snap, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A replay is refused, by the node.
	if _, err := c.Enrol(ctx, "red", grantWith(cfg, cfg.Enrol.Token)); !errors.Is(err, nodeapi.ErrEnrolled) {
		t.Errorf("a second enrolment: %v, want ErrEnrolled", err)
	}
	// What it keeps is its own, 0600 in a 0700 directory.
	for _, f := range []string{credentialsFile, keyringFile, identityFile} {
		fi, err := os.Stat(filepath.Join(cfg.StateDir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, fi.Mode(), err)
		}
	}
	if fi, err := os.Stat(cfg.StateDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir: %v %v", fi.Mode(), err)
	}
}

func TestEnrolExpiredToken(t *testing.T) {
	ctx := testCtx(t)
	cfg := enrollingConfig(t, "red", time.Now().Add(-time.Minute))
	_, c := serveEnrolling(t, cfg)
	if _, err := c.Enrol(ctx, "red", grantWith(cfg, cfg.Enrol.Token)); !errors.Is(err, nodeapi.ErrTokenExpired) {
		t.Fatalf("enrolment with an expired token: %v, want ErrTokenExpired", err)
	}
}

// TestEnrolledNodeRestarts: a restarted node uses what it kept; its
// bootstrap token is spent.
func TestEnrolledNodeRestarts(t *testing.T) {
	ctx := testCtx(t)
	cfg := enrollingConfig(t, "red", time.Now().Add(time.Hour))
	_, c := serveEnrolling(t, cfg)
	if _, err := c.Enrol(ctx, "red", grantWith(cfg, cfg.Enrol.Token)); err != nil {
		t.Fatal(err)
	}
	// The same config again (a reboot): enrolled at once, no new keys.
	b, err := os.ReadFile(filepath.Join(cfg.StateDir, credentialsFile))
	if err != nil {
		t.Fatal(err)
	}
	again, err := newAgent(cfg, testLogger(t), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if !again.Enrolled() {
		t.Fatal("a restarted node is not enrolled")
	}
	if after, _ := os.ReadFile(filepath.Join(cfg.StateDir, credentialsFile)); string(after) != string(b) {
		t.Error("a restart changed the node's credentials")
	}
	if _, err := again.Offer(nil); !errors.Is(err, nodeapi.ErrEnrolled) {
		t.Errorf("a restarted node offers an enrolment: %v", err)
	}
}

// BenchmarkEnrol is what enrolment adds on loopback: the CLI's dial (TLS
// 1.3 with its client certificate), the offer, the CLI's checks and
// issuing (a certificate and a grant), and the node's checks and writes
// (0600, synced). The node's key generation at first boot is not in it.
//
//	go test -run '^$' -bench Enrol -benchtime 50x ./agent/
func BenchmarkEnrol(b *testing.B) {
	var took []time.Duration
	for b.Loop() {
		b.StopTimer()
		cfg := enrollingConfig(b, "red", time.Now().Add(time.Hour))
		a, err := newAgent(cfg, nil, testOptions())
		if err != nil {
			b.Fatal(err)
		}
		ln, err := net.Listen("tcp", cfg.API.Addr())
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- nodeapi.Serve(ctx, ln, cfg.API.Credentials(cfg.Cluster), a, nil) }()
		cli, _ := identitytest.CA(cfg.Cluster).IssueCLI()
		c, _ := nodeapi.NewClient(cli, nodeapi.Endpoints(nodeapi.Endpoint{Name: cfg.Name, Addr: cfg.API.Addr()}))
		b.StartTimer()
		start := time.Now()
		if _, err := c.Enrol(ctx, cfg.Name, grantWith(cfg, cfg.Enrol.Token)); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
		b.StopTimer()
		cancel()
		<-served
		b.StartTimer()
	}
	slices.Sort(took)
	b.ReportMetric(percentile(took, 50), "p50-ms")
	b.ReportMetric(percentile(took, 99), "p99-ms")
}

package cluster_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/cloudinit"
	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/internal/pki"
	"github.com/clusterctl/clusterctl/internal/testkit"
	"github.com/clusterctl/clusterctl/nodeapi"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/fake"
)

// secretsIn names the long-lived secrets of the cluster that data holds: a
// private key block, or the gossip key (raw or base64).
func secretsIn(data []byte, gossipKeys [][]byte) []string {
	var found []string
	if bytes.Contains(data, []byte("PRIVATE KEY")) {
		found = append(found, "a PRIVATE KEY block")
	}
	for _, k := range gossipKeys {
		if bytes.Contains(data, k) || bytes.Contains(data, []byte(base64.StdEncoding.EncodeToString(k))) {
			found = append(found, "the gossip key")
		}
	}
	return found
}

// TestUserDataHoldsNoSecret: for a local-VM-shaped and a cloud-shaped
// provider, the rendered user-data, meta-data and network-config, and the
// seed ISO made of them, hold neither a private key nor the gossip key,
// once the cluster has both (after a first up).
func TestUserDataHoldsNoSecret(t *testing.T) {
	for name, p := range map[string]provider.Provider{"local": bootingProvider(t), "cloud": fake.NewCloud()} {
		t.Run(name, func(t *testing.T) {
			m, _ := newManagerIn(t, t.TempDir(), p, "")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if name == "local" {
				if _, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red"}}); err != nil {
					t.Fatal(err)
				}
			}
			dir := t.TempDir()
			r, err := m.Render(ctx, "", "blue", dir)
			if err != nil {
				t.Fatal(err)
			}
			keys, _ := m.Store.ReadKeys()
			if name == "local" && len(keys) == 0 {
				t.Fatal("the cluster has no gossip key after up")
			}
			var seed cloudinit.Rendered
			for _, f := range r.Files {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if s := secretsIn(data, keys); len(s) > 0 {
					t.Errorf("%s holds %s", f, strings.Join(s, ", "))
				}
				switch filepath.Base(f) {
				case "user-data":
					seed.UserData = data
				case "meta-data":
					seed.MetaData = data
				case "network-config":
					seed.NetworkConfig = data
				}
			}
			iso := filepath.Join(dir, "check.iso")
			if err := cloudinit.WriteSeedISO(iso, seed, ""); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(iso)
			if s := secretsIn(data, keys); len(s) > 0 {
				t.Errorf("the seed ISO holds %s", strings.Join(s, ", "))
			}
			if !bytes.Contains(seed.UserData, []byte(`"enrol"`)) {
				t.Errorf("user-data has no bootstrap token:\n%s", seed.UserData)
			}
		})
	}
}

// bootingProvider is the local-VM-shaped fake whose machines run real
// agents.
func bootingProvider(t *testing.T) provider.Provider {
	p, _ := bootingFake(t)
	return p
}

// TestUpWaitsForTheEnrolmentRecord: a node that keeps its grant at once
// joins before its answer to the enrolment reaches the CLI; up still
// returns only once the state records the enrolment (the token gone, the
// node's SSH host key pinned), because a CLI that exits when up returns
// would otherwise never record it.
func TestUpWaitsForTheEnrolmentRecord(t *testing.T) {
	p, b := bootingFake(t)
	b.answerDelay = 2 * time.Second
	m, _ := newManager(t, p, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red", "blue"}}); err != nil {
		t.Fatal(err)
	}
	st, _ := m.Store.Load()
	for _, n := range st.Nodes {
		if n.EnrolledAt.IsZero() || n.EnrolToken != nil || n.HostKey == "" {
			t.Errorf("%s when up returned: enrolled at %v, token kept %v, host key %q; want the enrolment recorded", n.Name, n.EnrolledAt, n.EnrolToken != nil, n.HostKey)
		}
	}
}

// TestEnrolment: up enrols each node over its API; afterwards the state
// forgets the token, pins the SSH host key the node made itself and knows
// its certificate's expiry; a replayed enrolment is refused by the node;
// and the token read from user-data gives nothing.
func TestEnrolment(t *testing.T) {
	ctx, m, b := upFake(t, "red", "blue")
	st, _ := m.Store.Load()
	for _, n := range st.Nodes {
		if n.EnrolledAt.IsZero() || n.EnrolToken != nil || n.EnrolKeys == "" {
			t.Errorf("%s after up: enrolled at %v, token kept %v, keys %q", n.Name, n.EnrolledAt, n.EnrolToken != nil, n.EnrolKeys)
		}
		if life := time.Until(n.CertNotAfter); life > 366*24*time.Hour || life < 364*24*time.Hour {
			t.Errorf("%s's certificate expires %v, want in a year", n.Name, n.CertNotAfter)
		}
		hk, _ := os.ReadFile(b.configs[n.Name].Enrol.SSHHostKey)
		if f := strings.Fields(string(hk)); len(f) < 2 || n.HostKey != f[0]+" "+f[1] {
			t.Errorf("%s's pinned host key %q is not the one the node made (%q)", n.Name, n.HostKey, hk)
		}
	}

	// A replay: the user-data's token, a valid CLI certificate, the node's
	// own address: the node refuses a second enrolment.
	ca, err := pki.Load(m.Store.Dir, m.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := ca.IssueCLI()
	if err != nil {
		t.Fatal(err)
	}
	red := st.Node("red")
	c, err := nodeapi.NewClient(creds, nodeapi.Endpoints(nodeapi.Endpoint{Name: "red", Addr: net.JoinHostPort(red.Address, itoa(m.Cfg.API.Port))}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Enrol(ctx, "red", func(o nodeapi.EnrolOffer, exp []byte) (nodeapi.EnrolGrant, error) {
		t.Error("the enrolled node made an offer")
		return nodeapi.EnrolGrant{}, nil
	})
	if !strings.Contains(err.Error(), nodeapi.ErrEnrolled.Error()) {
		t.Errorf("a second enrolment of red: %v, want it refused as enrolled", err)
	}
}

// TestCertificateRenewal: a command that reaches a node whose certificate
// is past two thirds of its life renews it (status here); status warns
// about a certificate that expires within 30 days.
func TestCertificateRenewal(t *testing.T) {
	p, b := bootingFake(t)
	m, rec := newManager(t, p, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red", "blue"}}); err != nil {
		t.Fatal(err)
	}
	st, _ := m.Store.Load()
	before := st.Node("red").CertNotAfter
	ca, _ := pki.Load(m.Store.Dir, m.Cluster)
	creds, _ := ca.IssueCLI()
	// served is the serial number and expiry of the certificate node n
	// serves (dialled without renewing anything).
	served := func(n cluster.Node) (string, time.Time) {
		c, _ := nodeapi.NewClient(creds, nodeapi.Endpoints(nodeapi.Endpoint{Name: n.Name, Addr: net.JoinHostPort(n.Address, itoa(m.Cfg.API.Port))}))
		conn, _, err := c.DialNode(ctx, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cert := conn.ConnectionState().PeerCertificates[0]
		return cert.SerialNumber.String(), cert.NotAfter
	}
	serials := map[string]string{}
	for _, n := range st.Nodes {
		serials[n.Name], _ = served(n)
	}
	// 250 days on: past two thirds of a year.
	m.Now = func() time.Time { return time.Now().Add(250 * 24 * time.Hour) }
	if _, err := m.Status(ctx, ""); err != nil {
		t.Fatal(err)
	}
	// A renewal runs on the connection that found the old certificate; one
	// that lost the race to another node's answer may end a moment after
	// status returned (in a CLI, the next command that reaches the node
	// brings the state up to date).
	renewed := 0
	testkit.WaitFor(t, "a renewed certificate, served and recorded", waitLimit, func() bool {
		st, _ = m.Store.Load()
		renewed = 0
		for _, n := range st.Nodes {
			serial, notAfter := served(n)
			if serial == serials[n.Name] {
				continue
			}
			if !notAfter.Equal(n.CertNotAfter) {
				return false
			}
			renewed++
		}
		return renewed > 0
	})
	if renewed == 0 {
		t.Fatalf("no certificate renewed by a status 250 days on; notes %q", rec.noted())
	}
	// 360 days on, with no node answering: a warning for each node.
	b.stopAll()
	m.Now = func() time.Time { return before.Add(-5 * 24 * time.Hour) }
	if _, err := m.Status(ctx, ""); err != nil {
		t.Fatal(err)
	}
	warned := false
	for _, note := range rec.noted() {
		if strings.Contains(note, "certificate expires") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning for a certificate that expires within 30 days: %q", rec.noted())
	}
}

// TestUpResumesEnrolment: an up that ended before its node enrolled (here
// the machine booted only after the join deadline) leaves the node in
// state with its token; `up NAME` again enrols it and waits for its join,
// making nothing.
func TestUpResumesEnrolment(t *testing.T) {
	p, b := bootingFake(t)
	var held struct {
		id   string
		spec provider.NodeSpec
	}
	p.OnCreate = func(_ context.Context, id string, spec provider.NodeSpec) error {
		held.id, held.spec = id, spec // the machine boots later
		return nil
	}
	m, _ := newManager(t, p, "timeouts: {join: 2s}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red"}}); err == nil {
		t.Fatal("up succeeded with a machine that never booted")
	}
	st, _ := m.Store.Load()
	if n := st.Node("red"); n == nil || n.EnrolToken == nil || !n.EnrolledAt.IsZero() {
		t.Fatalf("after the failed up: %+v, want red kept, not enrolled, with its token", st.Nodes)
	}
	if _, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red", "blue"}}); err == nil || !strings.Contains(err.Error(), "resumes") {
		t.Fatalf("up of a resumable and a new node together: %v, want it refused", err)
	}
	if err := b.boot(ctx, held.id, held.spec); err != nil {
		t.Fatal(err)
	}
	creates := len(p.CallLog())
	res, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red"}})
	if err != nil || len(res) != 1 || res[0].Phase != cluster.PhaseJoined {
		t.Fatalf("up red again: %+v, %v; want it enrolled and joined", res, err)
	}
	if len(p.CallLog()) != creates {
		t.Errorf("the resumed up called the provider: %q", p.CallLog()[creates:])
	}
	st, _ = m.Store.Load()
	if n := st.Node("red"); n.EnrolledAt.IsZero() || n.EnrolToken != nil || n.Phase != cluster.PhaseJoined {
		t.Errorf("after the resumed up: %+v", n)
	}
}

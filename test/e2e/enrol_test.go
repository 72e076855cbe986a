//go:build e2e

package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/internal/guesttest"
	"github.com/clusterctl/clusterctl/internal/pki"
	"github.com/clusterctl/clusterctl/nodeapi"
	"github.com/clusterctl/clusterctl/test/natlab"
)

// checkEnrolment checks, on a booted and enrolled node, what issue 16
// promises: cloud-init's copies of the user-data on the node hold no
// private key and no gossip key, a replayed enrolment (with the token read
// from those copies and a valid CLI certificate) is refused by the node,
// and it prints how long the node waited for its enrolment.
func (e *env) checkEnrolment(ctx context.Context, name, addr string) {
	t := e.t
	t.Helper()
	dir := filepath.Join(e.home, "clusters", e.cluster)
	keys, err := os.ReadFile(filepath.Join(dir, "gossip.key"))
	if err != nil {
		t.Fatal(err)
	}
	ud, err := e.cli(ctx, "ssh", name, "--", "sudo cat /var/lib/cloud/instance/user-data.txt")
	if err != nil {
		t.Fatalf("read %s's cloud-init copy of its user-data: %v", name, err)
	}
	if bad := guesttest.Secrets([]byte(ud)); bad != "" {
		t.Errorf("%s's /var/lib/cloud/instance/user-data.txt holds %s", name, bad)
	}
	grep := "sudo grep -rlF"
	for _, k := range strings.Fields(string(keys)) {
		grep += " -e " + shellQuote(k)
	}
	grep += " -e 'PRIVATE KEY' /var/lib/cloud/ /run/cloud-init/ || true"
	if out, err := e.cli(ctx, "ssh", name, "--", grep); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("cloud-init's files on %s hold the gossip key or a private key: %q (%v)", name, out, err)
	}

	// The replay: a valid CLI certificate and the node's own address.
	ca, err := pki.Load(dir, e.cluster)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := ca.IssueCLI()
	if err != nil {
		t.Fatal(err)
	}
	c, err := nodeapi.NewClient(creds, nodeapi.Endpoints(nodeapi.Endpoint{Name: name, Addr: addr + ":7947"}))
	if err != nil {
		t.Fatal(err)
	}
	var replay error
	if err := natlab.Do(e.ns, func() error {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, replay = c.Enrol(rctx, name, func(nodeapi.EnrolOffer, []byte) (nodeapi.EnrolGrant, error) {
			return nodeapi.EnrolGrant{}, errors.New("the enrolled node made an offer")
		})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(replay, nodeapi.ErrEnrolled) {
		t.Errorf("a replayed enrolment of %s: %v, want it refused as enrolled (409)", name, replay)
	}

	// How long the node waited to be enrolled, from its journal.
	out, _ := e.cli(ctx, "ssh", name, "--", "sudo journalctl -u clusterctl-agent --no-pager -o short-iso-precise | grep -e 'waiting for the CLI to enrol' -e 'enrolled: certificate' -e 'refused (a replayed'")
	var waited, enrolled time.Time
	for _, line := range strings.Split(out, "\n") {
		ts, _, _ := strings.Cut(line, " ")
		at, err := time.Parse("2006-01-02T15:04:05.999999-0700", ts)
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(line, "waiting for the CLI to enrol") && waited.IsZero():
			waited = at
		case strings.Contains(line, "enrolled: certificate") && enrolled.IsZero():
			enrolled = at
		}
	}
	if waited.IsZero() || enrolled.IsZero() {
		t.Errorf("%s's journal shows no enrolment:\n%s", name, out)
	} else {
		t.Logf("%s: agent start → enrolled %s (the CLI dials once a second while the node boots)", name, enrolled.Sub(waited).Round(time.Millisecond))
	}
	if !regexp.MustCompile(`refused \(a replayed`).MatchString(out) {
		t.Errorf("%s's journal does not log the refused replay:\n%s", name, out)
	}
}

package openstack_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/openstack/openstacktest"
)

// TestCheckSeedNovaLimit: Nova refuses user_data over 65535 bytes of
// base64; CheckSeed says so before anything is made, at the exact limit.
func TestCheckSeedNovaLimit(t *testing.T) {
	c := newCloud(t, false)
	p := standard(t, c, "")
	s := spec(t, "big")
	s.Seed.UserData = make([]byte, 49149) // 65532 bytes of base64
	if err := p.CheckSeed(s); err != nil {
		t.Fatalf("CheckSeed under the limit: %v", err)
	}
	s.Seed.UserData = make([]byte, 49152) // 65536 bytes of base64
	err := p.CheckSeed(s)
	var ie *usererr.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "65536") || !strings.Contains(err.Error(), "65535") {
		t.Fatalf("CheckSeed over the limit: %v; want an input error with both sizes", err)
	}
	if len(c.Requests()) != 0 {
		t.Error("CheckSeed talked to the cloud")
	}
}

// TestMetadataKeysCheckedAtPreflight: a node.tags key Nova's schema
// refuses is bad input at Preflight, before any server create.
func TestMetadataKeysCheckedAtPreflight(t *testing.T) {
	c := newCloud(t, false)
	p := standard(t, c, "")
	s := spec(t, "red")
	s.Tags = map[string]string{"team/owner": "ops", "ok.key": "v", "long": strings.Repeat("x", 256)}
	err := p.Preflight(ctx(t), []provider.NodeSpec{s})
	var ie *usererr.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), `"team/owner"`) || !strings.Contains(err.Error(), `"long"`) {
		t.Fatalf("Preflight: %v; want input errors naming team/owner and long", err)
	}
	if strings.Contains(err.Error(), "ok.key") {
		t.Errorf("a valid key was reported: %v", err)
	}
	if n := len(c.Servers()); n != 0 {
		t.Errorf("%d servers made", n)
	}
}

// TestRuleOverQuotaIsAQuotaError: Neutron's OverQuota is a 409 like a
// duplicate rule, but it must fail Create with a quota hint. (A duplicate,
// SecurityGroupRuleExists, is fine: TestFirewallRuleRace.)
func TestRuleOverQuotaIsAQuotaError(t *testing.T) {
	c := newCloud(t, false)
	c.SecurityGroupRuleQuota = 1
	p := standard(t, c, "")
	_, err := p.Create(ctx(t), spec(t, "red"))
	var he *usererr.HintError
	if err == nil || !strings.Contains(err.Error(), "quota exceeded") || !errors.As(err, &he) || !strings.Contains(he.Hint, "quota") {
		t.Fatalf("Create over the rule quota: %v; want a quota error with a hint", err)
	}
	if n := len(c.Servers()); n != 0 {
		t.Errorf("a server was made without its gossip rules (%d)", n)
	}

	// A later up (a new provider) on a project at its rule quota, with
	// every rule of the group in place: it asks for no rule, so it works.
	c2 := newCloud(t, false)
	if _, err := standard(t, c2, "").Create(ctx(t), spec(t, "red")); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, g := range c2.SecurityGroups() {
		total += len(g.Rules)
	}
	c2.SecurityGroupRuleQuota = total
	if _, err := standard(t, c2, "").Create(ctx(t), spec(t, "blue")); err != nil {
		t.Fatalf("Create at the quota with the rules already there: %v", err)
	}
}

// TestRegions: clouds.yaml's regions: is honoured, and a catalog with
// several regions and none chosen is bad input listing them.
func TestRegions(t *testing.T) {
	c := newCloud(t, false)
	c.Regions = []string{"RegionOne", "RegionTwo"}
	base := strings.Replace(passwordClouds(c, openstacktest.Password), "    region_name: RegionOne\n", "", 1)
	try := func(extra string) error {
		p := newProvider(t, "cloud: fake\nclouds_file: "+writeClouds(t, base+extra, "")+"\n"+resources, nil)
		return p.Preflight(ctx(t), nil)
	}
	err := try("")
	var ie *usererr.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "RegionOne, RegionTwo") || !strings.Contains(ie.Fix, "region_name") {
		t.Fatalf("no region chosen: %v; want an input error listing both", err)
	}
	if err := try("    region_name: RegionTwo\n"); err != nil {
		t.Errorf("region_name: %v", err)
	}
	if err := try("    regions:\n      - RegionTwo\n"); err != nil {
		t.Errorf("regions: [RegionTwo]: %v", err)
	}
	if err := try("    regions:\n      - name: RegionTwo\n        values:\n          interface: internal\n"); err != nil {
		t.Errorf("regions with values: %v", err)
	}
	err = try("    region_name: RegionOne\n    regions:\n      - RegionTwo\n      - RegionThree\n")
	if !errors.As(err, &ie) || !strings.Contains(ie.Fix, "RegionTwo, RegionThree") {
		t.Errorf("region_name outside regions: %v; want an input error listing them", err)
	}
	if err := try("    regions:\n      - RegionThree\n"); !errors.As(err, &ie) {
		t.Errorf("regions: [RegionThree], not in the catalog: %v; want an input error", err)
	}
}

// TestSoftDeletedIsNotGone: on a cloud with deferred delete, Delete must
// not stop at SOFT_DELETED (the server keeps its ports and group), so that
// down --all can then delete the security group.
func TestSoftDeletedIsNotGone(t *testing.T) {
	c := newCloud(t, false)
	c.SoftDelete = true
	p := standard(t, c, "")
	in, err := p.Create(ctx(t), spec(t, "red"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx(t), in.ID); err != nil {
		t.Fatal(err)
	}
	if s := c.Servers(); len(s) != 0 {
		t.Fatalf("servers left after Delete: %+v", s)
	}
	if err := p.CleanupCluster(ctx(t), testCluster); err != nil {
		t.Fatalf("CleanupCluster after Delete on a soft-delete cloud: %v", err)
	}
	for _, g := range c.SecurityGroups() {
		if g.Name == "clusterctl-"+testCluster {
			t.Error("the cluster's security group is left")
		}
	}
}

// TestStuckInBuildSaysNovaAnswered: a server that stays in BUILD times out
// with what Nova answered, not as a deadline error that the caller reports
// as "no answer from provider".
func TestStuckInBuildSaysNovaAnswered(t *testing.T) {
	c := newCloud(t, false)
	c.BuildPolls = 1 << 30
	p := standard(t, c, "")
	cctx, cancel := context.WithTimeout(ctx(t), 300*time.Millisecond)
	defer cancel()
	in, err := p.Create(cctx, spec(t, "slow"))
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "BUILD") || !strings.Contains(err.Error(), "Nova answered") {
		t.Fatalf("Create stuck in BUILD: %v; want an error saying Nova answered BUILD", err)
	}
	if in.ID == "" {
		t.Error("the server id was not returned for clean-up")
	}
}

// TestImageByIDCommunityOrHidden: Glance's list leaves out community and
// hidden images; given by id they are found.
func TestImageByIDCommunityOrHidden(t *testing.T) {
	c := newCloud(t, false)
	comm := c.AddImageWith("shared-debian", openstacktest.VisibilityCommunity, false)
	hidden := c.AddImageWith("old-debian", openstacktest.VisibilityPrivate, true)
	for _, id := range []string{comm, hidden} {
		p := newProvider(t, strings.Replace(configOf(t, c), "image: debian-12-genericcloud-amd64", "image: "+id, 1), nil)
		if err := p.Preflight(ctx(t), nil); err != nil {
			t.Errorf("image %s by id: %v", id, err)
		}
	}
	p := newProvider(t, strings.Replace(configOf(t, c), "image: debian-12-genericcloud-amd64", "image: not-an-image", 1), nil)
	var ie *usererr.InputError
	if err := p.Preflight(ctx(t), nil); !errors.As(err, &ie) || !strings.Contains(err.Error(), "not found") {
		t.Errorf("unknown image: %v; want not found", err)
	}
}

// configOf is the standard provider section for c.
func configOf(t *testing.T, c *openstacktest.Cloud) string {
	t.Helper()
	return "cloud: fake\nclouds_file: " + writeClouds(t, passwordClouds(c, openstacktest.Password), "") + "\n" + resources
}

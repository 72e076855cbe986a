package openstack_test

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/clusterctl/clusterctl/internal/testkit"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/openstack/openstacktest"
)

// clusterGroup is the cluster's security group at the fake.
func clusterGroup(t *testing.T, c *openstacktest.Cloud) openstacktest.SecurityGroup {
	t.Helper()
	for _, g := range c.SecurityGroups() {
		if g.Name == "clusterctl-"+testCluster {
			return g
		}
	}
	t.Fatalf("no security group clusterctl-%s; have %+v", testCluster, c.SecurityGroups())
	return openstacktest.SecurityGroup{}
}

// wantRules checks that g has exactly the ingress rules want, each
// "proto/min-max/source" with source "self" for the group itself, that
// each rule's ethertype is its source's family, and that none is open to
// the whole internet.
func wantRules(t *testing.T, g openstacktest.SecurityGroup, want ...string) {
	t.Helper()
	var got []string
	for _, r := range g.Rules {
		if r.Direction != "ingress" {
			continue
		}
		src := r.RemoteIPPrefix
		switch {
		case r.RemoteGroupID == g.ID:
			src = "self"
		case r.RemoteGroupID != "":
			src = "group " + r.RemoteGroupID
		case src == "":
			src = "anywhere (" + r.EtherType + ")"
		}
		if fam := map[bool]string{true: "IPv6", false: "IPv4"}[strings.Contains(src, ":")]; r.EtherType != fam {
			t.Errorf("rule from %s has ethertype %s", src, r.EtherType)
		}
		got = append(got, fmt.Sprintf("%s/%d-%d/%s", r.Protocol, r.PortMin, r.PortMax, src))
	}
	sort.Strings(got)
	want = slices.Clone(want)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("ingress rules of %s:\n got %q\nwant %q", g.Name, got, want)
	}
	for _, r := range got {
		if strings.HasSuffix(r, "/0.0.0.0/0") || strings.HasSuffix(r, "/::/0") || strings.Contains(r, "anywhere") {
			t.Errorf("rule %s is open to the whole internet", r)
		}
	}
}

// TestFirewallFromYourLaptop: with no openstack.api_from, Preflight
// detects this machine's public address, and the cluster's group admits
// it, and only it, to the API port and SSH; gossip only among the nodes.
func TestFirewallFromYourLaptop(t *testing.T) {
	c := newCloud(t, false)
	asked := testkit.WhatIsMyIP(t, 200, "198.51.100.23\n")
	p := standardEnv(t, c, provider.Env{Cluster: testCluster, SSH: true}, "floating_ip_pool: public\n")
	if err := p.Preflight(ctx(t), []provider.NodeSpec{spec(t, "a")}); err != nil {
		t.Fatalf("Preflight: %v", err)
	}
	for _, n := range []string{"a", "b"} {
		inst, err := p.Create(ctx(t), spec(t, n))
		if err != nil {
			t.Fatal(err)
		}
		if inst.PublicAddress == "" || inst.PublicAddress == inst.Address {
			t.Errorf("Create %s: %+v; want the floating IP as PublicAddress", n, inst)
		}
	}
	if asked.Load() != 1 {
		t.Errorf("the address was asked %d times, want once per up", asked.Load())
	}
	wantRules(t, clusterGroup(t, c), "tcp/7946-7946/self", "udp/7946-7946/self", "tcp/7947-7947/198.51.100.23/32", "tcp/22-22/198.51.100.23/32")
}

// TestFirewallSSHOffAndListedNetworks: with ssh off nothing opens port 22;
// the networks listed in api_from (IPv4 and IPv6, with the right
// ethertype, which Neutron insists on) are opened to the API port as
// written, and nothing is detected.
func TestFirewallSSHOffAndListedNetworks(t *testing.T) {
	c := newCloud(t, false)
	asked := testkit.WhatIsMyIP(t, 200, "198.51.100.23\n")
	p := standardEnv(t, c, provider.Env{Cluster: testCluster, APIPort: 8443}, "api_from: [192.0.2.0/24, '2001:db8::/32']\n")
	if err := p.Preflight(ctx(t), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Create(ctx(t), spec(t, "a")); err != nil {
		t.Fatal(err)
	}
	if asked.Load() != 0 {
		t.Error("the public address was detected although api_from lists networks")
	}
	wantRules(t, clusterGroup(t, c), "tcp/7946-7946/self", "udp/7946-7946/self", "tcp/8443-8443/192.0.2.0/24", "tcp/8443-8443/2001:db8::/32")
}

// TestFirewallExistingGroupGetsMissingRules: a later up (a new provider)
// with another address and SSH on adds what the group lacks, and nothing
// twice; an up with every rule in place asks for none.
func TestFirewallExistingGroupGetsMissingRules(t *testing.T) {
	c := newCloud(t, false)
	testkit.WhatIsMyIP(t, 200, "198.51.100.23\n")
	if _, err := standardEnv(t, c, provider.Env{Cluster: testCluster}, "api_from: [192.0.2.0/24]\n").Create(ctx(t), spec(t, "a")); err != nil {
		t.Fatal(err)
	}
	wantRules(t, clusterGroup(t, c), "tcp/7946-7946/self", "udp/7946-7946/self", "tcp/7947-7947/192.0.2.0/24")
	if _, err := standardEnv(t, c, provider.Env{Cluster: testCluster, SSH: true}, "").Create(ctx(t), spec(t, "b")); err != nil {
		t.Fatal(err)
	}
	all := []string{"tcp/7946-7946/self", "udp/7946-7946/self", "tcp/7947-7947/192.0.2.0/24", "tcp/7947-7947/198.51.100.23/32", "tcp/22-22/198.51.100.23/32"}
	wantRules(t, clusterGroup(t, c), all...)

	before := ruleCreates(c)
	if _, err := standardEnv(t, c, provider.Env{Cluster: testCluster, SSH: true}, "").Create(ctx(t), spec(t, "c")); err != nil {
		t.Fatal(err)
	}
	if n := ruleCreates(c) - before; n != 0 {
		t.Errorf("an up with every rule in place asked to create %d rules", n)
	}
	wantRules(t, clusterGroup(t, c), all...)
}

// ruleCreates counts the fake's requests to create a rule.
func ruleCreates(c *openstacktest.Cloud) int {
	n := 0
	for _, r := range c.Requests() {
		if r.Method == "POST" && strings.HasSuffix(r.Path, "/security-group-rules") {
			n++
		}
	}
	return n
}

// TestFirewallRuleRace: another clusterctl adds the API rule between our
// look at the group and our request; Neutron answers
// SecurityGroupRuleExists, which is fine.
func TestFirewallRuleRace(t *testing.T) {
	c := newCloud(t, false)
	testkit.WhatIsMyIP(t, 200, "198.51.100.23\n")
	var raced atomic.Bool
	c.BeforeRuleCreate = func() {
		if raced.Swap(true) {
			return
		}
		for _, g := range c.SecurityGroups() {
			if g.Name == "clusterctl-"+testCluster {
				c.AddRule(g.ID, openstacktest.Rule{Direction: "ingress", EtherType: "IPv4", Protocol: "tcp", PortMin: 7947, PortMax: 7947, RemoteIPPrefix: "198.51.100.23/32"})
			}
		}
	}
	p := standardEnv(t, c, provider.Env{Cluster: testCluster}, "")
	if _, err := p.Create(ctx(t), spec(t, "a")); err != nil {
		t.Fatalf("Create after another client added a rule: %v", err)
	}
	if !raced.Load() {
		t.Fatal("the race did not happen")
	}
	wantRules(t, clusterGroup(t, c), "tcp/7946-7946/self", "udp/7946-7946/self", "tcp/7947-7947/198.51.100.23/32")
}

// TestBadAPIFrom: a malformed or host-bits CIDR is bad input when the
// config is loaded, naming the entry; the cloud is not even asked.
func TestBadAPIFrom(t *testing.T) {
	c := newCloud(t, false)
	path := writeClouds(t, passwordClouds(c, openstacktest.Password), "")
	for _, tc := range []struct{ list, want string }{
		{"[203.0.113.7/24]", `openstack.api_from entry 1 "203.0.113.7/24" has host bits set: write 203.0.113.0/24`},
		{"[everyone]", `openstack.api_from entry 1 "everyone" is not a CIDR`},
		{"['2001:db8::1']", `openstack.api_from entry 1 "2001:db8::1" is an address, not a network: write 2001:db8::1/128`},
	} {
		_, err := makeProvider(t, fmt.Sprintf("cloud: fake\nclouds_file: %s\nflavor: m1.small\nimage: debian-12-genericcloud-amd64\nnetwork: private\napi_from: %s\n", path, tc.list), nil)
		var ie *usererr.InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(ie.Fix, "openstack.api_from") {
			t.Errorf("api_from: %s: %v, want bad input saying %q", tc.list, err, tc.want)
		}
	}
	if n := len(c.Requests()); n != 0 {
		t.Errorf("the cloud was asked %d times", n)
	}
}

// TestDetectionFailure: api_from is empty and this machine's address
// cannot be detected: Preflight (and Create) fail with bad input whose
// fix names openstack.api_from, and nothing is made.
func TestDetectionFailure(t *testing.T) {
	c := newCloud(t, false)
	asked := testkit.WhatIsMyIP(t, 502, "bad gateway")
	p := standardEnv(t, c, provider.Env{Cluster: testCluster, SSH: true}, "floating_ip_pool: public\n")
	err := p.Preflight(ctx(t), []provider.NodeSpec{spec(t, "a")})
	var ie *usererr.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "public address could not be detected") || !strings.Contains(ie.Fix, "openstack.api_from") {
		t.Fatalf("Preflight: %T %v; want bad input with a fix naming openstack.api_from", err, err)
	}
	if asked.Load() == 0 {
		t.Fatal("the endpoint was never asked")
	}
	if _, err := p.Create(ctx(t), spec(t, "a")); !errors.As(err, &ie) {
		t.Errorf("Create: %v, want the same bad input", err)
	}
	if s := c.Servers(); len(s) != 0 {
		t.Errorf("servers made: %+v", s)
	}
	for _, g := range c.SecurityGroups() {
		if g.Name != "default" {
			t.Errorf("security group %q made", g.Name)
		}
	}
	if f := c.FloatingIPs(); len(f) != 0 {
		t.Errorf("floating IPs made: %+v", f)
	}
}

// TestGossipFromRemoved: a config still using the member observer's
// openstack.gossip_from is refused by the strict decoder, with a fix that
// points to openstack.api_from.
func TestGossipFromRemoved(t *testing.T) {
	_, err := makeProvider(t, "flavor: a\nimage: b\nnetwork: c\ngossip_from: [10.0.0.5/32]\n", nil)
	var ie *usererr.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "gossip_from") || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("error %v, want the unknown key gossip_from at line 4", err)
	}
	if !strings.Contains(ie.Fix, "openstack.api_from") {
		t.Errorf("fix %q does not point to openstack.api_from", ie.Fix)
	}
}

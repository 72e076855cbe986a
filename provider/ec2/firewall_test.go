package ec2_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/clusterctl/clusterctl/internal/testkit"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/ec2"
)

// clusterGroup is the security group clusterctl made for cluster.
func clusterGroup(t *testing.T, endpoint, cluster string) types.SecurityGroup {
	t.Helper()
	out, err := ec2Client(t, endpoint).DescribeSecurityGroups(context.Background(), &awsec2.DescribeSecurityGroupsInput{
		Filters: []types.Filter{{Name: aws.String("tag:" + ec2.TagCluster), Values: []string{cluster}}}})
	if err != nil || len(out.SecurityGroups) != 1 {
		t.Fatalf("security groups of cluster %s: %v %+v", cluster, err, out)
	}
	return out.SecurityGroups[0]
}

// wantRules checks that group g (id self) has exactly the ingress rules
// want, each "proto/port/source" with source "self" for the group itself,
// and none open to the whole internet.
func wantRules(t *testing.T, g types.SecurityGroup, self string, want ...string) {
	t.Helper()
	var got []string
	for _, perm := range g.IpPermissions {
		proto := aws.ToString(perm.IpProtocol)
		from, to := aws.ToInt32(perm.FromPort), aws.ToInt32(perm.ToPort)
		port := fmt.Sprint(from)
		if from != to {
			port = fmt.Sprintf("%d-%d", from, to)
		}
		for _, p := range perm.UserIdGroupPairs {
			src := aws.ToString(p.GroupId)
			if src == self {
				src = "self"
			}
			got = append(got, proto+"/"+port+"/"+src)
		}
		for _, r := range perm.IpRanges {
			got = append(got, proto+"/"+port+"/"+aws.ToString(r.CidrIp))
		}
		for _, r := range perm.Ipv6Ranges {
			got = append(got, proto+"/"+port+"/"+aws.ToString(r.CidrIpv6))
		}
	}
	sort.Strings(got)
	want = slices.Clone(want)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("ingress rules of %s:\n got %q\nwant %q", aws.ToString(g.GroupName), got, want)
	}
	for _, r := range got {
		if strings.HasSuffix(r, "/0.0.0.0/0") || strings.HasSuffix(r, "/::/0") {
			t.Errorf("rule %s is open to the whole internet", r)
		}
	}
}

// TestFirewallFromYourLaptop: with no ec2.api_from, Preflight detects this
// machine's public address, and the cluster's group admits it, and only
// it, to the API port and SSH; gossip only among the nodes. The node's
// public address is reported by Create (when known), Status and List.
func TestFirewallFromYourLaptop(t *testing.T) {
	srv := moto(t)
	ctx := context.Background()
	asked := testkit.WhatIsMyIP(t, 200, "198.51.100.23\n")
	f := newProviderEnv(t, srv.URL, provider.Env{Cluster: "lap", SSH: true}, "")
	if err := f.p.Preflight(ctx, nil); err != nil {
		t.Fatalf("Preflight: %v", err)
	}
	if asked.Load() != 1 {
		t.Errorf("the address was asked %d times by Preflight, want 1", asked.Load())
	}
	a, err := f.p.Create(ctx, spec(t, "lap", "a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.Create(ctx, spec(t, "lap", "b")); err != nil {
		t.Fatal(err)
	}
	if asked.Load() != 1 {
		t.Errorf("the address was asked %d times in all, want once per up", asked.Load())
	}
	g := clusterGroup(t, srv.URL, "lap")
	self := aws.ToString(g.GroupId)
	wantRules(t, g, self, "tcp/7946/self", "udp/7946/self", "tcp/7947/198.51.100.23/32", "tcp/22/198.51.100.23/32")

	in := describeOne(t, ec2Client(t, srv.URL), a.ID)
	pub := aws.ToString(in.PublicIpAddress)
	if pub == "" {
		t.Fatal("moto gave the instance in the default subnet no public address")
	}
	if a.PublicAddress != "" && a.PublicAddress != pub {
		t.Errorf("Create's PublicAddress %q, EC2 says %q", a.PublicAddress, pub)
	}
	st, err := f.p.Status(ctx, a.ID)
	if err != nil || st.PublicAddress != pub || st.Address != aws.ToString(in.PrivateIpAddress) || st.Address == pub {
		t.Errorf("Status = %+v, %v; want public %s and private %s", st, err, pub, aws.ToString(in.PrivateIpAddress))
	}
	list, err := f.p.List(ctx, "lap")
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	for _, i := range list {
		if i.PublicAddress == "" || i.PublicAddress == i.Address {
			t.Errorf("List: %+v has no public address of its own", i)
		}
	}
}

// TestFirewallSSHOffAndListedNetworks: with ssh off nothing opens port 22;
// the networks listed in api_from (IPv4 and IPv6) are opened to the API
// port as written, and nothing is detected.
func TestFirewallSSHOffAndListedNetworks(t *testing.T) {
	srv := moto(t)
	ctx := context.Background()
	asked := testkit.WhatIsMyIP(t, 200, "198.51.100.23\n")
	f := newProviderEnv(t, srv.URL, provider.Env{Cluster: "nossh", APIPort: 8443}, "api_from: [192.0.2.0/24, '2001:db8::/32']\n")
	if err := f.p.Preflight(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.Create(ctx, spec(t, "nossh", "a")); err != nil {
		t.Fatal(err)
	}
	if asked.Load() != 0 {
		t.Errorf("the public address was detected although api_from lists networks")
	}
	g := clusterGroup(t, srv.URL, "nossh")
	wantRules(t, g, aws.ToString(g.GroupId), "tcp/7946/self", "udp/7946/self", "tcp/8443/192.0.2.0/24", "tcp/8443/2001:db8::/32")
}

// TestFirewallExistingGroupGetsMissingRules: a later up (a new provider)
// on a group made with fewer rules (ssh off, or by an older clusterctl
// with gossip rules only) adds the missing ones, adds nothing twice, and
// a third up adds nothing at all.
func TestFirewallExistingGroupGetsMissingRules(t *testing.T) {
	srv := moto(t)
	ctx := context.Background()
	testkit.WhatIsMyIP(t, 200, "198.51.100.23\n")
	first := newProviderEnv(t, srv.URL, provider.Env{Cluster: "again"}, "")
	if _, err := first.p.Create(ctx, spec(t, "again", "a")); err != nil {
		t.Fatal(err)
	}
	g := clusterGroup(t, srv.URL, "again")
	self := aws.ToString(g.GroupId)
	wantRules(t, g, self, "tcp/7946/self", "udp/7946/self", "tcp/7947/198.51.100.23/32")
	// An older clusterctl's group had no API rule: take it away.
	if _, err := ec2Client(t, srv.URL).RevokeSecurityGroupIngress(ctx, &awsec2.RevokeSecurityGroupIngressInput{GroupId: aws.String(self),
		IpPermissions: []types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(7947), ToPort: aws.Int32(7947), IpRanges: []types.IpRange{{CidrIp: aws.String("198.51.100.23/32")}}}}}); err != nil {
		t.Fatal(err)
	}

	second := newProviderEnv(t, srv.URL, provider.Env{Cluster: "again", SSH: true}, "")
	if _, err := second.p.Create(ctx, spec(t, "again", "b")); err != nil {
		t.Fatal(err)
	}
	wantRules(t, clusterGroup(t, srv.URL, "again"), self, "tcp/7946/self", "udp/7946/self", "tcp/7947/198.51.100.23/32", "tcp/22/198.51.100.23/32")
	if n := second.p.Calls()["EC2:CreateSecurityGroup"]; n != 0 {
		t.Errorf("the second up made %d security groups, want it to reuse the group", n)
	}

	third := newProviderEnv(t, srv.URL, provider.Env{Cluster: "again", SSH: true}, "")
	if _, err := third.p.Create(ctx, spec(t, "again", "c")); err != nil {
		t.Fatal(err)
	}
	if n := third.p.Calls()["EC2:AuthorizeSecurityGroupIngress"]; n != 0 {
		t.Errorf("an up with every rule in place asked to add rules %d times", n)
	}
	wantRules(t, clusterGroup(t, srv.URL, "again"), self, "tcp/7946/self", "udp/7946/self", "tcp/7947/198.51.100.23/32", "tcp/22/198.51.100.23/32")
}

// TestFirewallRuleRaceAndQuota: another clusterctl adds a rule between
// our look at the group and our call (on AWS, InvalidPermission.Duplicate
// then fails the whole call): the rules are added one by one and the
// duplicate ignored. A rule quota is reported as a quota, and no instance
// is made.
func TestFirewallRuleRaceAndQuota(t *testing.T) {
	srv := moto(t)
	fp := newFaultProxy(t, srv.URL)
	ctx := context.Background()
	testkit.WhatIsMyIP(t, 200, "198.51.100.23\n")
	var raced atomic.Bool
	fp.deny = func(r *http.Request, action string) *fault {
		if action != "AuthorizeSecurityGroupIngress" || raced.Swap(true) {
			return nil
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		_, err := ec2Client(t, srv.URL).AuthorizeSecurityGroupIngress(ctx, &awsec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(form.Get("GroupId")),
			IpPermissions: []types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(7947), ToPort: aws.Int32(7947), IpRanges: []types.IpRange{{CidrIp: aws.String("198.51.100.23/32")}}}}})
		if err != nil {
			t.Errorf("the other clusterctl's rule: %v", err)
		}
		return nil // moto answers, the rule being there now
	}
	f := newProviderEnv(t, fp.URL, provider.Env{Cluster: "race", SSH: true}, "")
	if _, err := f.p.Create(ctx, spec(t, "race", "a")); err != nil {
		t.Fatalf("Create after a duplicate rule: %v", err)
	}
	if !raced.Load() {
		t.Fatal("no rule was added: the race did not happen")
	}
	// One call refused as a whole, then one per rule.
	if n := f.p.Calls()["EC2:AuthorizeSecurityGroupIngress"]; n != 5 {
		t.Errorf("%d AuthorizeSecurityGroupIngress calls, want 1 refused + 4 single rules", n)
	}
	g := clusterGroup(t, srv.URL, "race")
	wantRules(t, g, aws.ToString(g.GroupId), "tcp/7946/self", "udp/7946/self", "tcp/7947/198.51.100.23/32", "tcp/22/198.51.100.23/32")

	quota := newProviderEnv(t, fp.URL, provider.Env{Cluster: "quota", SSH: true}, "")
	fp.inject("AuthorizeSecurityGroupIngress", fault{status: 400, code: "RulesPerSecurityGroupLimitExceeded", message: "The maximum number of rules per security group has been reached."})
	_, err := quota.p.Create(ctx, spec(t, "quota", "a"))
	var he *usererr.HintError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "RulesPerSecurityGroupLimitExceeded") || !strings.Contains(he.Hint, "quota") {
		t.Fatalf("Create over the rule quota: %v; want a quota error with a hint", err)
	}
	out, err := ec2Client(t, srv.URL).DescribeInstances(ctx, &awsec2.DescribeInstancesInput{Filters: []types.Filter{{Name: aws.String("tag:" + ec2.TagCluster), Values: []string{"quota"}}}})
	if err != nil || len(out.Reservations) != 0 {
		t.Errorf("an instance was made without its rules: %v %d", err, len(out.Reservations))
	}
}

// TestBadAPIFrom: a malformed or host-bits CIDR is bad input when the
// config is loaded, naming the entry; nothing is made.
func TestBadAPIFrom(t *testing.T) {
	srv := moto(t)
	for _, tc := range []struct{ list, want string }{
		{"[203.0.113.7/24]", `ec2.api_from entry 1 "203.0.113.7/24" has host bits set: write 203.0.113.0/24`},
		{"[everyone]", `ec2.api_from entry 1 "everyone" is not a CIDR`},
		{"['']", `ec2.api_from entry 1 "" is empty`},
	} {
		text := fmt.Sprintf("region: %s\nendpoint_url: %s\napi_from: %s\n", testRegion, srv.URL, tc.list)
		_, err := ec2.New(provider.Env{Cluster: "bad", Dir: t.TempDir(), Config: yamlNode(t, text)}, staticCreds())
		var ie *usererr.InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(ie.Fix, "ec2.api_from") {
			t.Errorf("api_from: %s: %v, want bad input saying %q", tc.list, err, tc.want)
		}
	}
	nothingMade(t, srv.URL)
}

// TestDetectionFailure: api_from is empty and this machine's address
// cannot be detected: Preflight (and Create) fail with bad input whose
// fix names ec2.api_from, and nothing is made.
func TestDetectionFailure(t *testing.T) {
	srv := moto(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		status int
		body   string
	}{
		{"endpoint fails", 503, "busy"},
		{"a private address", 200, "10.1.2.3\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked := testkit.WhatIsMyIP(t, tc.status, tc.body)
			f := newProviderEnv(t, srv.URL, provider.Env{Cluster: "nodetect", SSH: true}, "")
			err := f.p.Preflight(ctx, nil)
			var ie *usererr.InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), "public address could not be detected") || !strings.Contains(ie.Fix, "ec2.api_from") {
				t.Fatalf("Preflight: %T %v; want bad input with a fix naming ec2.api_from", err, err)
			}
			if asked.Load() == 0 {
				t.Fatal("the endpoint was never asked")
			}
			if _, err := f.p.Create(ctx, spec(t, "nodetect", "one")); !errors.As(err, &ie) {
				t.Errorf("Create: %v, want the same bad input", err)
			}
			nothingMade(t, srv.URL)
		})
	}
	// A group of the user's is used as it is: nothing to detect.
	t.Run("own security group", func(t *testing.T) {
		testkit.WhatIsMyIP(t, 503, "busy")
		c := ec2Client(t, srv.URL)
		subs, err := c.DescribeSubnets(ctx, &awsec2.DescribeSubnetsInput{Filters: []types.Filter{{Name: aws.String("default-for-az"), Values: []string{"true"}}}})
		if err != nil || len(subs.Subnets) == 0 {
			t.Fatal(err)
		}
		sg, err := c.CreateSecurityGroup(ctx, &awsec2.CreateSecurityGroupInput{GroupName: aws.String("mine"), Description: aws.String("x"), VpcId: subs.Subnets[0].VpcId})
		if err != nil {
			t.Fatal(err)
		}
		f := newProviderEnv(t, srv.URL, provider.Env{Cluster: "own"}, "security_group_id: "+aws.ToString(sg.GroupId)+"\n")
		if err := f.p.Preflight(ctx, nil); err != nil {
			t.Errorf("Preflight with ec2.security_group_id: %v", err)
		}
	})
}

package openstack_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/openstack"
	"github.com/clusterctl/clusterctl/provider/openstack/openstacktest"
	"github.com/clusterctl/clusterctl/provider/providertest"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestConformance(t *testing.T) {
	c := newCloud(t, false)
	p := standard(t, c, "")
	providertest.Run(t, providertest.Harness{
		Provider: p, Cluster: testCluster, Timeout: 30 * time.Second,
		Spec: func(t *testing.T, name string) provider.NodeSpec { return spec(t, name) },
	})
	if s := c.Servers(); len(s) != 0 {
		t.Errorf("servers left after the suite: %+v", s)
	}
}

func TestCreateSendsWhatWasConfigured(t *testing.T) {
	c := newCloud(t, false)
	c.AddKeypair("ops", "ssh-ed25519 AAAA ops@example")
	imageID := c.ImageID("ubuntu-24.04-server")
	path := writeClouds(t, passwordClouds(c, openstacktest.Password), "")
	// Flavor by id, image by id, network by id.
	p := newProvider(t, fmt.Sprintf("cloud: fake\nclouds_file: %s\nflavor: \"2\"\nimage: %s\nnetwork: %s\nkey_name: ops\nconfig_drive: true\npoll_interval: 1ms\n",
		path, imageID, c.NetworkID(openstacktest.NetworkPrivate)), nil)

	sp := spec(t, "red")
	// User-data that is itself valid base64 must still be encoded once.
	sp.Seed.UserData = []byte("QUJDRA==")
	inst, err := p.Create(ctx(t), sp)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if inst.State != provider.StateRunning {
		t.Errorf("state after Create = %q, want running", inst.State)
	}
	if a, err := netip.ParseAddr(inst.Address); err != nil || !netip.MustParsePrefix(openstacktest.PrivateCIDR).Contains(a) {
		t.Errorf("address %q is not in the cluster network %s", inst.Address, openstacktest.PrivateCIDR)
	}
	servers := c.Servers()
	if len(servers) != 1 {
		t.Fatalf("servers at the cloud: %d, want 1", len(servers))
	}
	s := servers[0]
	if !bytes.Equal(s.UserData, sp.Seed.UserData) {
		t.Errorf("the guest would see user-data %q, want %q (encoded exactly once)", s.UserData, sp.Seed.UserData)
	}
	if s.FlavorID != "2" || s.ImageID != imageID || s.KeyName != "ops" || !s.ConfigDrive {
		t.Errorf("server flavor=%s image=%s key=%s config_drive=%v", s.FlavorID, s.ImageID, s.KeyName, s.ConfigDrive)
	}
	want := map[string]string{openstack.MetaCluster: testCluster, openstack.MetaNode: "red", openstack.MetaManagedBy: "clusterctl", "env": "test"}
	for k, v := range want {
		if s.Metadata[k] != v {
			t.Errorf("metadata %s = %q, want %q", k, s.Metadata[k], v)
		}
	}
	if s.FixedIP != inst.Address {
		t.Errorf("Instance.Address %q, server's port has %q", inst.Address, s.FixedIP)
	}
	// The cluster's security group.
	var sg *openstacktest.SecurityGroup
	for _, g := range c.SecurityGroups() {
		if g.Name == "clusterctl-"+testCluster {
			sg = &g
		}
	}
	if sg == nil {
		t.Fatalf("no security group clusterctl-%s; have %+v", testCluster, c.SecurityGroups())
	}
	if len(s.SecurityGroups) != 1 || s.SecurityGroups[0] != sg.ID {
		t.Errorf("server security groups %v, want [%s]", s.SecurityGroups, sg.ID)
	}
	// Gossip among the nodes only; the API port from this machine's
	// detected address; no SSH (provider.Env.SSH is off).
	wantRules(t, *sg, "tcp/7946-7946/self", "udp/7946-7946/self", "tcp/7947-7947/"+defaultPublicIP+"/32")
	// Every compute request carried the microversion.
	for _, r := range c.Requests() {
		if strings.HasPrefix(r.Path, "/compute/") && r.Path != "/compute/v2.1/" && r.Microversion != openstack.ComputeMicroversion {
			t.Errorf("%s %s asked for microversion %q, want %s", r.Method, r.Path, r.Microversion, openstack.ComputeMicroversion)
		}
	}
	st, err := p.Status(ctx(t), inst.ID)
	if err != nil || st.State != provider.StateRunning || st.Address != inst.Address || !strings.Contains(st.Detail, "flavor m1.small") {
		t.Errorf("Status = %+v, %v; want running at %s with the flavor named", st, err, inst.Address)
	}
	if err := p.Delete(ctx(t), inst.ID); err != nil {
		t.Fatal(err)
	}
	if n := c.Ports(); n != 0 {
		t.Errorf("%d ports left after Delete", n)
	}
}

func TestSecurityGroupMadeOnceAndRemovedByCleanup(t *testing.T) {
	c := newCloud(t, false)
	p := standard(t, c, "api_from: [198.51.100.7/32, 192.0.2.0/24]\n")
	var ids []string
	for _, n := range []string{"a", "b", "c"} {
		inst, err := p.Create(ctx(t), spec(t, n))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, inst.ID)
	}
	count, rules := 0, 0
	for _, g := range c.SecurityGroups() {
		if g.Name == "clusterctl-"+testCluster {
			count++
			for _, r := range g.Rules {
				if r.Direction == "ingress" {
					rules++
				}
			}
		}
	}
	if count != 1 || rules != 4 {
		t.Errorf("security groups named clusterctl-%s: %d with %d ingress rules, want 1 with 4 (gossip tcp+udp from itself, the API from 2 CIDRs)", testCluster, count, rules)
	}
	// In use: clean-up must fail and say so, not pretend.
	if err := p.CleanupCluster(ctx(t), testCluster); err == nil {
		t.Error("CleanupCluster with servers still using the group: no error")
	}
	for _, id := range ids {
		if err := p.Delete(ctx(t), id); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.CleanupCluster(ctx(t), testCluster); err != nil {
		t.Fatalf("CleanupCluster: %v", err)
	}
	for _, g := range c.SecurityGroups() {
		if g.Name != "default" {
			t.Errorf("security group %q left after CleanupCluster", g.Name)
		}
	}
	// A new node after clean-up makes the group again.
	inst, err := p.Create(ctx(t), spec(t, "d"))
	if err != nil {
		t.Fatalf("Create after CleanupCluster: %v", err)
	}
	_ = p.Delete(ctx(t), inst.ID)
}

func TestErrorStateFailsAtOnceWithFault(t *testing.T) {
	c := newCloud(t, false)
	c.BuildPolls = 3
	path := writeClouds(t, passwordClouds(c, openstacktest.Password), "")
	p := newProvider(t, "cloud: fake\nclouds_file: "+path+"\nflavor: g1.huge\nimage: debian-12-genericcloud-amd64\nnetwork: private\npoll_interval: 1ms\n", nil)

	// The context allows far more polls than the build takes: the wait
	// must end because of ERROR, not because of the deadline.
	inst, err := p.Create(ctx(t), spec(t, "big"))
	if err == nil {
		t.Fatal("Create of a server that goes to ERROR: no error")
	}
	if !strings.Contains(err.Error(), openstacktest.NoValidHost) {
		t.Errorf("error %q does not carry the fault message %q", err, openstacktest.NoValidHost)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the wait ran into its deadline instead of stopping on ERROR: %v", err)
	}
	var he *usererr.HintError
	if !errors.As(err, &he) || !strings.Contains(he.Hint, "smaller flavor") {
		t.Errorf("error has no hint about the flavor: %#v", err)
	}
	if inst.ID == "" {
		t.Fatal("Create returned no id for the failed server, so nothing could delete it")
	}
	gets := 0
	for _, r := range c.Requests() {
		if r.Method == "GET" && strings.HasSuffix(r.Path, "/servers/"+inst.ID) {
			gets++
		}
	}
	if gets != c.BuildPolls+1 {
		t.Errorf("Create polled the server %d times; it turned ERROR on poll %d", gets, c.BuildPolls+1)
	}
	st, err := p.Status(ctx(t), inst.ID)
	if err != nil || st.State != provider.StateError || !strings.Contains(st.Detail, "No valid host") {
		t.Errorf("Status of the failed server = %+v, %v; want error with the fault", st, err)
	}
	if err := p.Delete(ctx(t), inst.ID); err != nil {
		t.Fatal(err)
	}
	if len(c.Servers()) != 0 {
		t.Error("the failed server is still there after Delete")
	}
}

func TestFloatingIP(t *testing.T) {
	c := newCloud(t, false)
	p := standard(t, c, "floating_ip_pool: public\n")
	inst, err := p.Create(ctx(t), spec(t, "web"))
	if err != nil {
		t.Fatal(err)
	}
	fips := c.FloatingIPs()
	if len(fips) != 1 {
		t.Fatalf("floating IPs: %+v, want 1", fips)
	}
	if fips[0].FixedIP != inst.Address || !strings.Contains(inst.Detail, fips[0].Address) || inst.PublicAddress != fips[0].Address {
		t.Errorf("floating IP %+v; instance %+v: want it on the node's fixed address, as its PublicAddress and shown in Detail", fips[0], inst)
	}
	if !netip.MustParsePrefix(openstacktest.PrivateCIDR).Contains(netip.MustParseAddr(inst.Address)) {
		t.Errorf("Address %q must stay the fixed address (the agent advertises it), not the floating one", inst.Address)
	}
	st, _ := p.Status(ctx(t), inst.ID)
	if st.Address != inst.Address || st.PublicAddress != fips[0].Address || !strings.Contains(st.Detail, "floating IP "+fips[0].Address) {
		t.Errorf("Status = %+v; want the floating IP %s as PublicAddress", st, fips[0].Address)
	}
	list, err := p.List(ctx(t), testCluster)
	if err != nil || len(list) != 1 || list[0].PublicAddress != fips[0].Address {
		t.Errorf("List = %+v, %v; want the floating IP %s as PublicAddress", list, err, fips[0].Address)
	}
	if err := p.Delete(ctx(t), inst.ID); err != nil {
		t.Fatal(err)
	}
	if f := c.FloatingIPs(); len(f) != 0 {
		t.Errorf("floating IPs left after Delete: %+v", f)
	}
}

func TestListOnlyThisClusterAcrossPages(t *testing.T) {
	c := newCloud(t, false)
	c.PageSize = 2
	p := standard(t, c, "")
	var mine []string
	for i := 0; i < 5; i++ {
		inst, err := p.Create(ctx(t), spec(t, fmt.Sprintf("n%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, inst.ID)
	}
	list, err := p.List(ctx(t), testCluster)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 5 {
		t.Errorf("List found %d servers, want 5 (pages of 2 must all be read)", len(list))
	}
	list, err = p.List(ctx(t), "another")
	if err != nil || len(list) != 0 {
		t.Errorf("List of another cluster = %v, %v; want none", list, err)
	}
	for _, id := range mine {
		_ = p.Delete(ctx(t), id)
	}
}

func TestImageFoundOnALaterPage(t *testing.T) {
	c := newCloud(t, false)
	for i := 0; i < 9; i++ {
		c.AddImage(fmt.Sprintf("filler-%d", i))
	}
	c.AddImage("the-last-one")
	path := writeClouds(t, passwordClouds(c, openstacktest.Password), "")
	p := newProvider(t, "cloud: fake\nclouds_file: "+path+"\nflavor: m1.large\nimage: the-last-one\nnetwork: private\n", nil)
	if err := p.Preflight(ctx(t), nil); err != nil {
		t.Fatalf("Preflight: %v", err)
	}
}

func TestConsoleLog(t *testing.T) {
	c := newCloud(t, false)
	p := standard(t, c, "")
	inst, err := p.Create(ctx(t), spec(t, "red"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Delete(context.Background(), inst.ID)
	c.SetConsole(inst.ID, "boot\ncloud-init: agent download failed: sha256 mismatch\n")
	out, err := p.ConsoleLog(ctx(t), inst.ID)
	if err != nil || !strings.Contains(string(out), "sha256 mismatch") {
		t.Errorf("ConsoleLog = %q, %v", out, err)
	}
}

func TestTokenExpiryReauthenticates(t *testing.T) {
	c := newCloud(t, false)
	p := standard(t, c, "")
	if err := p.Preflight(ctx(t), nil); err != nil {
		t.Fatal(err)
	}
	c.ExpireTokens()
	if _, err := p.List(ctx(t), testCluster); err != nil {
		t.Fatalf("List after the token expired: %v (gophercloud should re-authenticate)", err)
	}
}

func TestNodeCIDR(t *testing.T) {
	c := newCloud(t, false)
	p := standard(t, c, "")
	got, err := p.NodeCIDR(ctx(t))
	if err != nil || got != netip.MustParsePrefix(openstacktest.PrivateCIDR) {
		t.Errorf("NodeCIDR = %v, %v; want %s", got, err, openstacktest.PrivateCIDR)
	}
}

func TestConcurrentCreatesAreBounded(t *testing.T) {
	c := newCloud(t, false)
	c.BuildPolls = 5
	p := standard(t, c, "parallel: 2\n")
	if err := p.Preflight(ctx(t), nil); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 6)
	ids := make(chan string, 6)
	for i := 0; i < 6; i++ {
		go func(i int) {
			inst, err := p.Create(ctx(t), spec(t, fmt.Sprintf("p%d", i)))
			ids <- inst.ID
			errs <- err
		}(i)
	}
	for i := 0; i < 6; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
		if id := <-ids; id != "" {
			defer p.Delete(context.Background(), id)
		}
	}
	if len(c.Servers()) != 6 {
		t.Fatalf("servers: %d, want 6", len(c.Servers()))
	}
	// Create holds its slot until the server is ACTIVE, so the cloud never
	// sees more than 2 servers building at once.
	if n := c.MaxBuilding(); n > 2 {
		t.Errorf("%d servers were building at once; parallel: 2 allows 2", n)
	}
	groups := 0
	for _, g := range c.SecurityGroups() {
		if g.Name == "clusterctl-"+testCluster {
			groups++
		}
	}
	if groups != 1 {
		t.Errorf("concurrent Creates made %d security groups, want 1", groups)
	}
}

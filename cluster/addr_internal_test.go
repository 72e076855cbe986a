package cluster

import (
	"encoding/json"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/cloudinit"
	"github.com/clusterctl/clusterctl/internal/agentconfig"
)

// Gossip addresses join host and port as net.Dial wants them: an IPv6
// address in brackets.
func TestGossipAddrIPv6(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want string
	}{
		{"192.168.56.10", "192.168.56.10:7946"},
		{"fd00:56::10", "[fd00:56::10]:7946"},
		{"red.test.internal", "red.test.internal:7946"},
	} {
		if got := gossipAddr(tc.addr, 7946); got != tc.want {
			t.Errorf("gossipAddr(%q) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// A node on an IPv6 network gets its peers' seeds in brackets and never
// itself as a seed; its API section carries a certificate from the
// cluster's CA for its name and the address clusterctl chose.
func TestRenderInputIPv6Seeds(t *testing.T) {
	m := &Manager{Cfg: &Config{Gossip: GossipConfig{Port: 7946}, API: APIConfig{Port: 7999}}, Cluster: "six"}
	ca, err := m.throwawayCA()
	if err != nil {
		t.Fatal(err)
	}
	self, peer := "fd00:56::10", "fd00:56::11"
	in, err := m.renderInput(renderArgs{
		ca:    ca,
		node:  Node{Name: "red", Nonce: "0123456789abcdef", Address: self, EnrolToken: make([]byte, 32), EnrolExpires: time.Now().Add(time.Hour)},
		bits:  64,
		peers: []cloudinit.Peer{{Name: "red", Address: netip.MustParseAddr(self)}, {Name: "blue", Address: netip.MustParseAddr(peer)}},
		seeds: []string{gossipAddr(self, 7946), gossipAddr(peer, 7946)},
		agent: cloudinit.AgentSource{Kind: cloudinit.AgentPreinstalled},
	})
	if err != nil {
		t.Fatal(err)
	}
	if in.Address != netip.MustParsePrefix("fd00:56::10/64") {
		t.Errorf("address %s, want fd00:56::10/64", in.Address)
	}
	var ac agentconfig.Config
	if err := json.Unmarshal(in.AgentConfig, &ac); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ac.Seeds, []string{"[fd00:56::11]:7946"}) {
		t.Errorf("seeds %q, want only the peer, in brackets", ac.Seeds)
	}
	if ac.API.Port != 7999 || string(ac.API.CA) != string(ca.CertPEM()) {
		t.Errorf("api section: port %d, CA from the cluster %v; want 7999 and true", ac.API.Port, string(ac.API.CA) == string(ca.CertPEM()))
	}
	// No long-lived secret: no certificate or key, no gossip key, no
	// identity key; a bootstrap token for the node to enrol with.
	if ac.API.Cert != "" || ac.API.Key != "" || len(ac.Key) != 0 || ac.Identity.Key != "" || ac.Identity.Grant != nil {
		t.Errorf("the rendered config carries credentials: %s", ac)
	}
	if ac.Enrol == nil || len(ac.Enrol.Token) == 0 || ac.Identity.CA != string(ca.CertPEM()) {
		t.Errorf("the rendered config has no bootstrap token or no CA: %s", ac)
	}
}

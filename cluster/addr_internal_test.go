package cluster

import (
	"encoding/json"
	"net/netip"
	"slices"
	"testing"

	"github.com/clusterctl/clusterctl/cloudinit"
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
// itself as a seed.
func TestRenderInputIPv6Seeds(t *testing.T) {
	m := &Manager{Cfg: &Config{Gossip: GossipConfig{Port: 7946}}, Cluster: "six"}
	self, peer := "fd00:56::10", "fd00:56::11"
	in, err := m.renderInput(renderArgs{
		node:  Node{Name: "red", Nonce: "0123456789abcdef", Address: self},
		bits:  64,
		key:   make([]byte, 32),
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
	var ac struct {
		Seeds []string `json:"seeds"`
	}
	if err := json.Unmarshal(in.AgentConfig, &ac); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ac.Seeds, []string{"[fd00:56::11]:7946"}) {
		t.Errorf("seeds %q, want only the peer, in brackets", ac.Seeds)
	}
}

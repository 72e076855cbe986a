package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
)

// New refuses a node whose tags would not fit memberlist's node meta
// before it starts gossiping.
func TestNewRefusesOversizedTags(t *testing.T) {
	cfg := testConfig("red")
	cfg.Tags = map[string]string{"big": strings.Repeat("x", memberlist.MetaMaxSize)}
	if _, err := New(issued(cfg), nil); err == nil || !strings.Contains(err.Error(), "512") {
		t.Errorf("New with oversized tags: err = %v", err)
	}
}

// agentconfig keeps memberlist's limits and LAN timings as its own
// constants, so that the CLI does not link memberlist: they must stay
// memberlist's.
func TestAgentconfigMatchesMemberlist(t *testing.T) {
	if agentconfig.LabelMaxSize != memberlist.LabelMaxSize {
		t.Errorf("agentconfig.LabelMaxSize = %d, memberlist's is %d", agentconfig.LabelMaxSize, memberlist.LabelMaxSize)
	}
	if agentconfig.MetaMaxSize != memberlist.MetaMaxSize {
		t.Errorf("agentconfig.MetaMaxSize = %d, memberlist's is %d", agentconfig.MetaMaxSize, memberlist.MetaMaxSize)
	}
	lan, d := memberlist.DefaultLANConfig(), agentconfig.DefaultTiming()
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"probe_interval", time.Duration(d.ProbeInterval), lan.ProbeInterval},
		{"probe_timeout", time.Duration(d.ProbeTimeout), lan.ProbeTimeout},
		{"suspicion_mult", d.SuspicionMult, lan.SuspicionMult},
		{"gossip_interval", time.Duration(d.GossipInterval), lan.GossipInterval},
		{"tcp_timeout", time.Duration(d.TCPTimeout), lan.TCPTimeout},
	} {
		if c.got != c.want {
			t.Errorf("DefaultTiming's %s = %v, memberlist's LAN profile has %v", c.name, c.got, c.want)
		}
	}
}

package agent

import (
	"time"

	"github.com/hashicorp/serf/serf"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
)

// ApplyTiming sets t (with defaults) and the agent's wire settings on a
// serf config and its memberlist config: the agent's gossip, and nodeapi's
// detection benchmark, which measures what ships.
func ApplyTiming(t agentconfig.Timing, sc *serf.Config) {
	t = t.WithDefaults()
	mc := sc.MemberlistConfig
	// No LZW: memberlist packs broadcasts into a packet by their
	// uncompressed size, so compression only shrinks bytes on the wire,
	// and it costs an LZW writer (tens of KB allocated) for every packet
	// and push/pull, a sixth of the CPU of a batch start
	// (docs/benchmarks.md). Compressed messages from other members are
	// still read.
	mc.EnableCompression = false
	mc.ProbeInterval = time.Duration(t.ProbeInterval)
	mc.ProbeTimeout = time.Duration(t.ProbeTimeout)
	mc.SuspicionMult = t.SuspicionMult
	mc.GossipInterval = time.Duration(t.GossipInterval)
	mc.GossipNodes = t.GossipNodes
	mc.RetransmitMult = t.RetransmitMult
	mc.PushPullInterval = time.Duration(t.PushPullInterval)
	mc.TCPTimeout = time.Duration(t.TCPTimeout)
	mc.DeadNodeReclaimTime = time.Duration(t.DeadNodeReclaim)
	sc.ReconnectInterval = time.Duration(t.ReconnectInterval)
	sc.ReconnectTimeout = time.Duration(t.ReconnectTimeout)
	sc.TombstoneTimeout = time.Duration(t.TombstoneTimeout)
	// serf's query timeout (key operations) is
	// GossipInterval × QueryTimeoutMult × ceil(log10(N+1)): keep its base at
	// 3.2 s or more, so short gossip intervals do not make a loaded member
	// miss a key operation.
	sc.QueryTimeoutMult = max(16, int((3200*time.Millisecond+mc.GossipInterval-1)/mc.GossipInterval))
	// The reaper must run often enough for the shortest timeout.
	sc.ReapInterval = min(15*time.Second, sc.ReconnectTimeout, sc.TombstoneTimeout)
}

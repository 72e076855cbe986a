package cluster

import (
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/nodeapi"
)

func member(name, nonce string, st nodeapi.MemberStatus) nodeapi.Member {
	return nodeapi.Member{Name: name, Addr: "10.0.0." + name[:1], Status: st, Tags: map[string]string{nodeapi.TagNonce: nonce, agentconfig.TagHostname: "host-" + name}}
}

// The followed node lags: its view has not heard yet of green, which just
// joined (up saw it in another view). green's own view, which holds the
// others alive, counts: status shows green alive, not not-seen.
func TestMergeLaggingFollowedNode(t *testing.T) {
	joined := time.Now()
	red := Node{Name: "red", Nonce: "n-red", JoinedAt: joined}
	blue := Node{Name: "blue", Nonce: "n-blue", JoinedAt: joined}
	green := Node{Name: "green", Nonce: "n-green", JoinedAt: joined}
	lagging := nodeapi.Snapshot{Node: "red", Members: []nodeapi.Member{
		member("red", "n-red", nodeapi.StatusAlive),
		member("blue", "n-blue", nodeapi.StatusSuspect),
	}}
	if got, _ := gossipState(green, mergeViews([]nodeapi.Snapshot{lagging}), true); got != GossipNotSeen {
		t.Fatalf("green in the lagging view alone: %s, want %s (the case the merge is for)", got, GossipNotSeen)
	}
	own := nodeapi.Snapshot{Node: "green", Members: []nodeapi.Member{
		member("green", "n-green", nodeapi.StatusAlive),
		member("red", "n-red", nodeapi.StatusAlive),
		member("blue", "n-blue", nodeapi.StatusSuspect),
	}}
	merged := mergeViews([]nodeapi.Snapshot{lagging, own})
	for _, c := range []struct {
		n    Node
		want GossipState
	}{
		{green, GossipAlive},
		{red, GossipAlive},
		// Nobody counts blue as joined: the first view's word stands.
		{blue, GossipSuspect},
	} {
		got, host := gossipState(c.n, merged, true)
		if got != c.want {
			t.Errorf("%s: %s, want %s", c.n.Name, got, c.want)
		}
		if host != "host-"+c.n.Name {
			t.Errorf("%s: hostname %q, want the member's tag", c.n.Name, host)
		}
	}
	if len(merged) != 3 {
		t.Errorf("merged view %v: want one entry per member", merged)
	}
}

// A member alive in any view that counts beats the first view's failed;
// a node alone in its own view (it joined nobody) does not count, as in
// up's readiness rule.
func TestMergeRuleAliveInAViewThatCounts(t *testing.T) {
	joined := time.Now()
	green := Node{Name: "green", Nonce: "n-green", JoinedAt: joined}
	first := nodeapi.Snapshot{Node: "red", Members: []nodeapi.Member{
		member("red", "n-red", nodeapi.StatusAlive),
		member("green", "n-green", nodeapi.StatusFailed),
	}}
	second := nodeapi.Snapshot{Node: "blue", Members: []nodeapi.Member{
		member("blue", "n-blue", nodeapi.StatusAlive),
		member("red", "n-red", nodeapi.StatusAlive),
		member("green", "n-green", nodeapi.StatusAlive),
	}}
	if got, _ := gossipState(green, mergeViews([]nodeapi.Snapshot{first, second}), true); got != GossipAlive {
		t.Errorf("alive in a second member's view: %s, want alive", got)
	}
	alone := nodeapi.Snapshot{Node: "green", Members: []nodeapi.Member{member("green", "n-green", nodeapi.StatusAlive)}}
	if got, _ := gossipState(green, mergeViews([]nodeapi.Snapshot{first, alone}), true); got != GossipFailed {
		t.Errorf("alive only alone in its own view: %s, want the first view's %s", got, GossipFailed)
	}
	lost := nodeapi.Snapshot{Node: "red", Members: []nodeapi.Member{member("red", "n-red", nodeapi.StatusAlive)}}
	if got, _ := gossipState(green, mergeViews([]nodeapi.Snapshot{lost, alone}), true); got != GossipNotSeen {
		t.Errorf("reported by nobody but itself alone: %s, want %s", got, GossipNotSeen)
	}
	if got, _ := gossipState(Node{Name: "green", Nonce: "n-green"}, mergeViews([]nodeapi.Snapshot{lost, alone}), true); got != GossipNeverJoined {
		t.Errorf("never joined, alone in its own view: %s, want %s", got, GossipNeverJoined)
	}
}

// An older incarnation of a name makes the node stale; the old member
// keeps its own entry (status shows it as unknown).
func TestMergeKeepsIncarnationsApart(t *testing.T) {
	v := mergeViews([]nodeapi.Snapshot{{Node: "red", Members: []nodeapi.Member{
		member("red", "n-red", nodeapi.StatusAlive),
		member("green", "n-old", nodeapi.StatusFailed),
	}}})
	if got, _ := gossipState(Node{Name: "green", Nonce: "n-new", JoinedAt: time.Now()}, v, true); got != GossipStale {
		t.Errorf("green with another nonce in the view: %s, want %s", got, GossipStale)
	}
	if _, ok := v.of("green", "n-old"); !ok || len(v) != 2 {
		t.Errorf("merged view %v: want the old incarnation kept", v)
	}
	if got, _ := gossipState(Node{Name: "green", Nonce: "n-new"}, nil, false); got != GossipUnreachable {
		t.Errorf("no view: %s, want %s", got, GossipUnreachable)
	}
}

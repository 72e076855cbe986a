package agent

import (
	"context"
	"log/slog"
	"sort"
	"sync"

	"github.com/hashicorp/memberlist"
)

// Member states as shown to users.
const (
	StateAlive = "alive"
	StateDead  = "dead" // failed: memberlist declared it dead
	StateLeft  = "left" // left gracefully (announced in its meta, then left)
)

// Member is one node of the cluster as an observer or agent sees it.
type Member struct {
	Name string
	Addr string
	Port int
	// State is alive, dead or left. memberlist reports no event when a
	// node becomes suspect, so a suspect node is alive until declared dead.
	State string
	Meta  Meta
}

// memberTable follows memberlist's events. memberlist hides dead and left
// nodes from Members(), and the *Node it returns there may be changed under
// its lock while we read it; the event delegate is called with that lock
// held, so copying here is race-free. The delegate methods never block on
// anything but the table's own mutex.
type memberTable struct {
	cluster string
	logger  *slog.Logger

	mu      sync.Mutex
	members map[string]Member // by name, every role
	byNonce map[string]Member // latest record of each nonce ever seen alive
	changed chan struct{}     // closed and replaced on every change
}

func newMemberTable(cluster string, logger *slog.Logger) *memberTable {
	return &memberTable{
		cluster: cluster,
		logger:  logger,
		members: map[string]Member{},
		byNonce: map[string]Member{},
		changed: make(chan struct{}),
	}
}

func (t *memberTable) NotifyJoin(n *memberlist.Node)   { t.record(n, "join") }
func (t *memberTable) NotifyUpdate(n *memberlist.Node) { t.record(n, "update") }
func (t *memberTable) NotifyLeave(n *memberlist.Node)  { t.record(n, "leave") }

// record stores n after an event. The state follows from the event, not
// from n.State: memberlist keeps the real state in its own nodeState and
// never sets Node.State. A leave event means "left" when the node had
// announced in its meta that it was leaving, "dead" otherwise.
func (t *memberTable) record(n *memberlist.Node, event string) {
	m := Member{Name: n.Name, Addr: n.Addr.String(), Port: int(n.Port), State: StateAlive}
	meta, err := DecodeMeta(n.Meta)
	if event == "leave" {
		m.State = StateDead
		if err == nil && meta.Leaving {
			m.State = StateLeft
		}
	}
	if err != nil {
		t.logger.Warn("member with unreadable meta", "member", n.Name, "event", event, "err", err)
	} else if meta.Cluster != t.cluster {
		t.logger.Warn("member of another cluster ignored", "member", n.Name, "cluster", meta.Cluster)
		return
	}
	m.Meta = meta
	t.logger.Debug("member "+event, "member", m.Name, "addr", m.Addr, "port", m.Port, "state", m.State, "role", meta.Role, "nonce", meta.Nonce)

	t.mu.Lock()
	defer t.mu.Unlock()
	t.members[m.Name] = m
	if meta.Nonce != "" {
		if _, seen := t.byNonce[meta.Nonce]; seen || m.State == StateAlive {
			t.byNonce[meta.Nonce] = m
		}
	}
	close(t.changed)
	t.changed = make(chan struct{})
}

// snapshot returns the members with the given role (all roles if role is
// ""), sorted by name, and a channel closed at the next change.
func (t *memberTable) snapshot(role string) ([]Member, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Member, 0, len(t.members))
	for _, m := range t.members {
		if role == "" || m.Meta.Role == role {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, t.changed
}

// wait calls check under the table's lock until it reports done or ctx
// ends.
func (t *memberTable) wait(ctx context.Context, check func(t *memberTable) (Member, bool, error)) (Member, error) {
	for {
		t.mu.Lock()
		m, done, err := check(t)
		ch := t.changed
		t.mu.Unlock()
		if done || err != nil {
			return m, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Member{}, ctx.Err()
		}
	}
}

// aliveOthers counts alive members with role node other than self.
func (t *memberTable) aliveOthers(self string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, m := range t.members {
		if m.Name != self && m.Meta.Role == RoleNode && m.State == StateAlive {
			n++
		}
	}
	return n
}

package agent

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/serf/serf"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// Member is one member of the cluster as an agent sees it.
type Member struct {
	Name string
	Addr string
	Port int
	// State is alive, suspect, leaving, left or failed. alive, leaving,
	// left and failed are serf's member status; suspect is an alive member
	// that this member's memberlist failure detector suspects (the line it
	// logs, log.go; pings end it, gossip.go suspicionLoop).
	State nodeapi.MemberStatus
	Meta  agentconfig.Meta
}

// API returns m in nodeapi's form.
func (m Member) API() nodeapi.Member {
	tags, _ := m.Meta.SerfTags()
	if tags == nil { // an unknown role: pass the fields on anyway
		tags = map[string]string{agentconfig.TagName: m.Meta.Name, agentconfig.TagCluster: m.Meta.Cluster, agentconfig.TagRole: m.Meta.Role}
	}
	return nodeapi.Member{Name: m.Name, Addr: m.Addr, Port: m.Port, Status: nodeapi.MemberStatus(m.State), Tags: tags}
}

// memberTable is one member's view: serf's members with their status, the
// suspicion of its own failure detector on top, and the events that follow
// from each change. refresh rebuilds it from serf.Members() after every
// serf event and on a short tick (serf changes some statuses, such as
// leaving, without an event).
type memberTable struct {
	cluster string
	logger  *slog.Logger

	mu      sync.Mutex
	members map[string]Member // by name, every role
	spare   map[string]Member // the map refresh fills next (the one before)
	parsed  map[string]parsed // by name: what refresh last made of serf's record
	byNonce map[string]Member // latest record of each nonce ever seen alive
	suspect map[string]bool   // names this member's failure detector suspects
	changed chan struct{}     // closed and replaced on every change
	subs    map[*subscriber]struct{}
}

type subscriber struct {
	ch   chan nodeapi.Event
	role string
}

// subscriberBuffer is how many events a subscriber may lag behind; one that
// lags more is cut off (its channel closed) and must subscribe again.
const subscriberBuffer = 4096

func newMemberTable(cluster string, logger *slog.Logger) *memberTable {
	return &memberTable{
		cluster: cluster,
		logger:  logger,
		members: map[string]Member{},
		spare:   map[string]Member{},
		parsed:  map[string]parsed{},
		byNonce: map[string]Member{},
		suspect: map[string]bool{},
		changed: make(chan struct{}),
		subs:    map[*subscriber]struct{}{},
	}
}

func fromSerf(sm serf.Member) Member {
	m := Member{Name: sm.Name, Addr: sm.Addr.String(), Port: int(sm.Port), Meta: agentconfig.MetaFromTags(sm.Tags)}
	switch sm.Status {
	case serf.StatusAlive:
		m.State = nodeapi.StatusAlive
	case serf.StatusLeaving:
		m.State = nodeapi.StatusLeaving
	case serf.StatusLeft:
		m.State = nodeapi.StatusLeft
	case serf.StatusFailed:
		m.State = nodeapi.StatusFailed
	default:
		m.State = nodeapi.StatusAlive // StatusNone: only for a moment while joining
	}
	return m
}

// parsed is a member as fromSerf made it from serf's record, with the parts
// of that record it came from. serf gives a member a new tags map when its
// tags change, so an unchanged record is told by a comparison: refresh runs
// after every serf event and on a tick, over every member, and parsing
// every member's meta each time was a fifth of the CPU of a 200-agent start
// (docs/benchmarks.md).
type parsed struct {
	tags   map[string]string
	addr   net.IP
	port   uint16
	status serf.MemberStatus
	m      Member
}

// fromSerfCached is fromSerf(sm), from the cache when sm is unchanged.
// t.mu held.
func (t *memberTable) fromSerfCached(sm serf.Member) Member {
	if c, ok := t.parsed[sm.Name]; ok && c.port == sm.Port && c.status == sm.Status && c.addr.Equal(sm.Addr) && sameTags(c.tags, sm.Tags) {
		return c.m
	}
	m := fromSerf(sm)
	t.parsed[sm.Name] = parsed{tags: sm.Tags, addr: sm.Addr, port: sm.Port, status: sm.Status, m: m}
	return m
}

// sameTags reports whether a and b hold the same tags: at once when they
// are the same map (serf's record unchanged), else by comparing them.
func sameTags(a, b map[string]string) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer() || maps.Equal(a, b)
}

// refresh replaces the view with list, marks suspects, and publishes the
// differences as events.
func (t *memberTable) refresh(list []serf.Member) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	next := t.spare
	clear(next)
	for _, sm := range list {
		m := t.fromSerfCached(sm)
		if m.Meta.Cluster != t.cluster { // the label keeps them out; be sure
			continue
		}
		next[m.Name] = m
	}
	for name := range t.suspect {
		if m, ok := next[name]; ok && m.State == nodeapi.StatusAlive {
			m.State = nodeapi.StatusSuspect
			next[name] = m
		} else {
			delete(t.suspect, name) // failed, left or gone: no longer a suspicion
		}
	}
	var events []nodeapi.Event
	for name, m := range next {
		old, ok := t.members[name]
		if typ, changed := eventFor(old, ok, m); changed {
			events = append(events, nodeapi.Event{Type: typ, Member: m.API(), Time: now})
			t.logger.Info("member "+string(typ), "member", m.Name, "addr", m.Addr, "state", m.State, "role", m.Meta.Role, "nonce", m.Meta.Nonce)
		}
	}
	for name, old := range t.members {
		if _, ok := next[name]; !ok {
			events = append(events, nodeapi.Event{Type: nodeapi.EventReap, Member: old.API(), Time: now})
		}
	}
	if len(events) == 0 {
		return // next holds what members holds
	}
	t.members, t.spare = next, t.members
	for name := range t.parsed {
		if _, ok := next[name]; !ok {
			delete(t.parsed, name)
		}
	}
	for _, m := range next {
		if m.Meta.Nonce == "" {
			continue
		}
		if _, seen := t.byNonce[m.Meta.Nonce]; seen || m.State == nodeapi.StatusAlive || m.State == nodeapi.StatusSuspect {
			t.byNonce[m.Meta.Nonce] = m
		}
	}
	sort.Slice(events, func(i, j int) bool { return events[i].Member.Name < events[j].Member.Name })
	t.publishLocked(events)
}

// eventFor says which event turns old (present when ok) into m.
func eventFor(old Member, ok bool, m Member) (nodeapi.EventType, bool) {
	gone := func(s nodeapi.MemberStatus) bool { return s == nodeapi.StatusFailed || s == nodeapi.StatusLeft }
	switch {
	case !ok || (gone(old.State) && !gone(m.State)):
		switch m.State {
		case nodeapi.StatusFailed:
			return nodeapi.EventFail, true
		case nodeapi.StatusLeft:
			return nodeapi.EventLeave, true
		}
		return nodeapi.EventJoin, true
	case old.State != m.State && m.State == nodeapi.StatusFailed:
		return nodeapi.EventFail, true
	case old.State != m.State && m.State == nodeapi.StatusLeft:
		return nodeapi.EventLeave, true
	case old.State != m.State || old.Addr != m.Addr || old.Port != m.Port || !sameMeta(old.Meta, m.Meta):
		return nodeapi.EventUpdate, true
	}
	return "", false
}

func sameMeta(a, b agentconfig.Meta) bool {
	return a.Cluster == b.Cluster && a.Name == b.Name && a.Nonce == b.Nonce && a.Provider == b.Provider &&
		a.InstanceID == b.InstanceID && a.Hostname == b.Hostname && a.Role == b.Role && maps.Equal(a.Tags, b.Tags)
}

// setSuspect records that this member's failure detector suspects name.
// The suspicion ends when serf declares the member failed or left, or when
// it answers a ping (clearSuspect).
func (t *memberTable) setSuspect(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.members[name]
	if !ok || m.State != nodeapi.StatusAlive {
		return
	}
	t.suspect[name] = true
	m.State = nodeapi.StatusSuspect
	t.members[name] = m
	t.logger.Info("member suspected", "member", name, "state", nodeapi.StatusSuspect)
	t.publishLocked([]nodeapi.Event{{Type: nodeapi.EventUpdate, Member: m.API(), Time: time.Now()}})
}

// clearSuspect ends a suspicion of name (it answered).
func (t *memberTable) clearSuspect(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.suspect[name] {
		return
	}
	delete(t.suspect, name)
	m, ok := t.members[name]
	if !ok || m.State != nodeapi.StatusSuspect {
		return
	}
	m.State = nodeapi.StatusAlive
	t.members[name] = m
	t.logger.Info("member no longer suspected", "member", name, "state", nodeapi.StatusAlive)
	t.publishLocked([]nodeapi.Event{{Type: nodeapi.EventUpdate, Member: m.API(), Time: time.Now()}})
}

// suspects returns the suspected members.
func (t *memberTable) suspects() []Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Member
	for name := range t.suspect {
		if m, ok := t.members[name]; ok {
			out = append(out, m)
		}
	}
	return out
}

// publishLocked wakes waiters and sends events to subscribers. t.mu held.
func (t *memberTable) publishLocked(events []nodeapi.Event) {
	close(t.changed)
	t.changed = make(chan struct{})
	for s := range t.subs {
		for _, e := range events {
			if s.role != "" && e.Member.Tags[agentconfig.TagRole] != s.role {
				continue
			}
			select {
			case s.ch <- e:
			default:
				t.logger.Warn("a subscriber lags too far behind; cutting it off")
				delete(t.subs, s)
				close(s.ch)
			}
			if _, ok := t.subs[s]; !ok {
				break
			}
		}
	}
}

// subscribe returns the members with the role (all if "") and a channel
// of every later change, closed when ctx ends.
func (t *memberTable) subscribe(ctx context.Context, role string) ([]nodeapi.Member, <-chan nodeapi.Event) {
	s := &subscriber{ch: make(chan nodeapi.Event, subscriberBuffer), role: role}
	t.mu.Lock()
	var snap []nodeapi.Member
	for _, m := range t.sortedLocked(role) {
		snap = append(snap, m.API())
	}
	t.subs[s] = struct{}{}
	t.mu.Unlock()
	go func() {
		<-ctx.Done()
		t.mu.Lock()
		defer t.mu.Unlock()
		if _, ok := t.subs[s]; ok {
			delete(t.subs, s)
			close(s.ch)
		}
	}()
	return snap, s.ch
}

func (t *memberTable) sortedLocked(role string) []Member {
	out := make([]Member, 0, len(t.members))
	for _, m := range t.members {
		if role == "" || m.Meta.Role == role {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// snapshot returns the members with the given role (all roles if role is
// ""), sorted by name, and a channel closed at the next change.
func (t *memberTable) snapshot(role string) ([]Member, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sortedLocked(role), t.changed
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

// aliveOthers counts alive or suspect members with role node other than
// self.
func (t *memberTable) aliveOthers(self string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, m := range t.members {
		if m.Name != self && m.Meta.Role == agentconfig.RoleNode && (m.State == nodeapi.StatusAlive || m.State == nodeapi.StatusSuspect) {
			n++
		}
	}
	return n
}

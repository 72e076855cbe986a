package nodeapi

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// serfMember is a test adapter: Membership over a real serf instance on
// loopback. The production implementation is the agent's; this one is
// kept as small as serf allows, and as strict: it drops a subscriber that
// does not keep up rather than losing events silently.
type serfMember struct {
	s     *serf.Serf
	kr    *memberlist.Keyring // nil: no encryption
	nonce string

	mu   sync.Mutex
	subs map[chan Event]struct{}

	// taken, if set (the detection benchmark), is called when a subscriber
	// (the API server) takes an event off its subscription.
	taken func(Event)
}

// serfOptions tune a test member.
type serfOptions struct {
	key   []byte // gossip key; nil = no encryption
	local bool   // memberlist's local-network timings instead of LAN ones
	// tune, if set, changes the config last (the benchmark's product
	// timing, ProductTiming).
	tune func(*serf.Config)
}

func startSerf(t testing.TB, name, nonce string, opt serfOptions) *serfMember {
	t.Helper()
	conf := serf.DefaultConfig()
	conf.NodeName = name
	conf.Tags = map[string]string{TagNonce: nonce, "cluster": "lab"}
	conf.LogOutput = io.Discard
	conf.BroadcastTimeout = time.Second
	conf.LeavePropagateDelay = 100 * time.Millisecond
	if opt.local {
		conf.MemberlistConfig = memberlist.DefaultLocalConfig()
	}
	conf.MemberlistConfig.Name = name
	conf.MemberlistConfig.BindAddr = "127.0.0.1"
	conf.MemberlistConfig.BindPort = 0
	conf.MemberlistConfig.LogOutput = io.Discard
	var kr *memberlist.Keyring
	if opt.key != nil {
		var err error
		if kr, err = memberlist.NewKeyring(nil, opt.key); err != nil {
			t.Fatal(err)
		}
		conf.MemberlistConfig.Keyring = kr
	}
	if opt.tune != nil {
		opt.tune(conf)
	}
	events := make(chan serf.Event, 1024)
	conf.EventCh = events
	s, err := serf.Create(conf)
	if err != nil {
		t.Fatal(err)
	}
	m := &serfMember{s: s, kr: kr, nonce: nonce, subs: map[chan Event]struct{}{}}
	go m.dispatch(events)
	t.Cleanup(func() { s.Shutdown() })
	return m
}

// addr is the member's gossip address.
func (m *serfMember) addr() string {
	l := m.s.LocalMember()
	return net.JoinHostPort(l.Addr.String(), strconv.Itoa(int(l.Port)))
}

func (m *serfMember) join(t testing.TB, other *serfMember) {
	t.Helper()
	if _, err := m.s.Join([]string{other.addr()}, true); err != nil {
		t.Fatal(err)
	}
}

func convertMember(sm serf.Member) Member {
	st := map[serf.MemberStatus]MemberStatus{
		serf.StatusAlive: StatusAlive, serf.StatusLeaving: StatusLeaving,
		serf.StatusLeft: StatusLeft, serf.StatusFailed: StatusFailed,
	}[sm.Status]
	tags := make(map[string]string, len(sm.Tags))
	for k, v := range sm.Tags {
		tags[k] = v
	}
	return Member{Name: sm.Name, Addr: sm.Addr.String(), Port: int(sm.Port), Status: st, Tags: tags}
}

var eventTypes = map[serf.EventType]EventType{
	serf.EventMemberJoin: EventJoin, serf.EventMemberUpdate: EventUpdate,
	serf.EventMemberLeave: EventLeave, serf.EventMemberFailed: EventFail, serf.EventMemberReap: EventReap,
}

func (m *serfMember) dispatch(events <-chan serf.Event) {
	for {
		select {
		case e := <-events:
			me, ok := e.(serf.MemberEvent)
			if !ok {
				continue
			}
			now := time.Now()
			m.mu.Lock()
			for _, sm := range me.Members {
				ev := Event{Type: eventTypes[me.Type], Member: convertMember(sm), Time: now}
				for ch := range m.subs {
					select {
					case ch <- ev:
					default:
						delete(m.subs, ch)
						close(ch)
					}
				}
			}
			m.mu.Unlock()
		case <-m.s.ShutdownCh():
			m.mu.Lock()
			for ch := range m.subs {
				delete(m.subs, ch)
				close(ch)
			}
			m.mu.Unlock()
			return
		}
	}
}

func (m *serfMember) Members() []Member {
	var out []Member
	for _, sm := range m.s.Members() {
		out = append(out, convertMember(sm))
	}
	return out
}

func (m *serfMember) Subscribe(ctx context.Context) ([]Member, <-chan Event) {
	ch := make(chan Event, 1024)
	m.mu.Lock()
	snap := m.Members()
	m.subs[ch] = struct{}{}
	taken := m.taken
	m.mu.Unlock()
	context.AfterFunc(ctx, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if _, ok := m.subs[ch]; ok {
			delete(m.subs, ch)
			close(ch)
		}
	})
	if taken != nil {
		return snap, handOff(ctx, ch, taken)
	}
	return snap, ch
}

// handOff passes in's events through an unbuffered channel, calling taken
// with each the moment the reader took it.
func handOff(ctx context.Context, in <-chan Event, taken func(Event)) <-chan Event {
	out := make(chan Event)
	go func() {
		defer close(out)
		for ev := range in {
			select {
			case out <- ev:
				taken(ev)
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (m *serfMember) Leave(ctx context.Context, nonce string) error {
	if nonce != m.nonce {
		return ErrWrongNonce
	}
	return m.s.Leave()
}

// keyOp changes this member's own keyring, as the agent does.
func (m *serfMember) keyOp(change func(*memberlist.Keyring) error) (KeyReport, error) {
	if m.kr == nil {
		return KeyReport{}, errors.New("encryption not enabled")
	}
	err := change(m.kr)
	rep := KeyReport{NumNodes: 1, NumResp: 1, Keys: map[string]int{}}
	for _, k := range m.kr.GetKeys() {
		rep.Keys[base64.StdEncoding.EncodeToString(k)] = 1
	}
	if err != nil {
		rep.NumErr = 1
	}
	return rep, err
}

func (m *serfMember) KeyList(ctx context.Context) (KeyReport, error) {
	return m.keyOp(func(*memberlist.Keyring) error { return nil })
}

func (m *serfMember) KeyInstall(ctx context.Context, key []byte) (KeyReport, error) {
	return m.keyOp(func(kr *memberlist.Keyring) error { return kr.AddKey(key) })
}

func (m *serfMember) KeyUse(ctx context.Context, key []byte) (KeyReport, error) {
	return m.keyOp(func(kr *memberlist.Keyring) error { return kr.UseKey(key) })
}

func (m *serfMember) KeyRemove(ctx context.Context, key []byte) (KeyReport, error) {
	return m.keyOp(func(kr *memberlist.Keyring) error { return kr.RemoveKey(key) })
}

// aliveCount is how many members m sees alive.
func (m *serfMember) aliveCount() int {
	n := 0
	for _, sm := range m.s.Members() {
		if sm.Status == serf.StatusAlive {
			n++
		}
	}
	return n
}

var _ Membership = (*serfMember)(nil)

package agent

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/clusterctl/clusterctl/internal/identity"
)

// This file is where the agent decides what a gossip sender can do. The
// gossip key lets a sender talk; it proves nothing about who it is. So:
//
//   - memberGate (serf's merge and alive delegate) admits a member only
//     when internal/identity verifies it: its name, role, nonce and cluster
//     granted by the cluster's CA, its address and tags signed by its
//     identity key. memberlist calls it for every alive message and every
//     push/pull merge, before a member enters its table, so a refused member
//     never reaches serf, the snapshot, peers.json, the hosts file or the
//     API.
//   - msgGuard drops serf's keyring queries (install, use, remove and list
//     keys), which serf would otherwise run for any sender holding the key:
//     keys change only through the node's mutually authenticated API, one
//     node at a time (keyring.go).
//
// serf offers no hook for its messages: it sets memberlist's delegate
// itself inside serf.Create. The agent wraps that delegate at the one moment
// nothing else can read it: memberlist's first call of the alive delegate,
// for the node itself, inside memberlist.Create, before memberlist starts
// its timers. Until then gatedTransport holds every packet and connection
// that arrives, so none is handled by the unwrapped delegate.

// memberGate is serf's MergeDelegate.
type memberGate struct {
	verifier *identity.Verifier
	refused  func(name, addr string, err error)
	first    sync.Once
	onFirst  func() // runs at the first call, before anything is checked
}

var _ serf.MergeDelegate = (*memberGate)(nil)

// NotifyMerge admits members (an alive message: one; a push/pull: the
// sender's whole table, refused whole if one member does not verify).
func (g *memberGate) NotifyMerge(members []*serf.Member) error {
	g.first.Do(g.onFirst)
	for _, m := range members {
		addr, _ := netip.AddrFromSlice(m.Addr)
		if _, err := g.verifier.Verify(m.Name, addr.Unmap(), m.Tags); err != nil {
			g.refused(m.Name, addr.String(), err)
			return err
		}
	}
	return nil
}

// msgGuard is memberlist's delegate: serf's, less the keyring queries.
type msgGuard struct {
	memberlist.Delegate
	dropped func(query string)
}

// serf's message types (serf/messages.go) the guard reads.
const (
	serfMessageQuery = 4
	serfQueryPrefix  = serf.InternalQueryPrefix
)

// keyQueries are serf's internal queries that change or reveal keyrings.
var keyQueries = []string{"install-key", "use-key", "remove-key", "list-keys"}

func (g *msgGuard) NotifyMsg(b []byte) {
	if name, ok := keyQuery(b); ok {
		g.dropped(name)
		return
	}
	g.Delegate.NotifyMsg(b)
}

// keyQuery reports whether b is a serf query for a keyring, or a query
// whose name cannot be read (refused too: serf would read it).
func keyQuery(b []byte) (string, bool) {
	if len(b) == 0 || b[0] != serfMessageQuery {
		return "", false
	}
	var q struct{ Name string }
	if err := codec.NewDecoder(bytes.NewReader(b[1:]), &codec.MsgpackHandle{}).Decode(&q); err != nil {
		return "(undecodable)", true
	}
	rest, internal := strings.CutPrefix(q.Name, serfQueryPrefix)
	if !internal {
		return "", false
	}
	for _, k := range keyQueries {
		if rest == k {
			return q.Name, true
		}
	}
	return "", false
}

// gatedTransport is memberlist's NetTransport whose incoming packets and
// connections are held until open is called.
type gatedTransport struct {
	*memberlist.NetTransport
	packets chan *memberlist.Packet
	streams chan net.Conn
	gate    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func newGatedTransport(bind string, port int, logger *log.Logger) (*gatedTransport, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{bind}, BindPort: port, Logger: logger})
	if err != nil {
		return nil, err
	}
	t := &gatedTransport{
		NetTransport: nt,
		packets:      make(chan *memberlist.Packet),
		streams:      make(chan net.Conn),
		gate:         make(chan struct{}),
		done:         make(chan struct{}),
	}
	go forward(t.gate, t.done, nt.PacketCh(), t.packets)
	go forward(t.gate, t.done, nt.StreamCh(), t.streams)
	return t, nil
}

// forward passes what arrives on in to out once gate is closed, until done.
func forward[T any](gate, done <-chan struct{}, in <-chan T, out chan<- T) {
	select {
	case <-gate:
	case <-done:
		return
	}
	for {
		select {
		case v := <-in:
			select {
			case out <- v:
			case <-done:
				return
			}
		case <-done:
			return
		}
	}
}

func (t *gatedTransport) open() { close(t.gate) }

func (t *gatedTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }
func (t *gatedTransport) StreamCh() <-chan net.Conn           { return t.streams }

// Shutdown stops the listeners, then the forwarders. NetTransport.Shutdown
// waits for its listeners, and a listener that has read a packet or taken
// a connection blocks until someone receives it: while they stop, whatever
// they still hand over is dropped here (a held packet before the gate
// opened, or one memberlist no longer reads). memberlist shuts its
// transport down first for the same reason.
func (t *gatedTransport) Shutdown() error {
	stop := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-t.NetTransport.PacketCh():
			case c := <-t.NetTransport.StreamCh():
				c.Close()
			case <-stop:
				return
			}
		}
	}()
	err := t.NetTransport.Shutdown()
	close(stop)
	<-drained
	t.once.Do(func() { close(t.done) })
	return err
}

// errSerfShutdown is Run's error when serf stopped by itself.
var errSerfShutdown = errors.New("gossip (serf) shut itself down")

// serfStopped describes why serf may have shut down by itself.
func serfStopped(s *serf.Serf) error {
	return fmt.Errorf("%w (state %s); exiting so that the service manager restarts the agent with a fresh gossip member", errSerfShutdown, s.State())
}

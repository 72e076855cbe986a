// Package nodeapi is the agents' mutually authenticated API (TLS 1.3,
// certificates from the cluster's CA, see internal/pki) through which the
// CLI watches and steers the cluster: it dials out to any reachable node,
// so it works from behind NAT.
//
// An agent runs Serve with its own credentials and its Membership. The CLI
// makes a Client with its credentials and the nodes' endpoints and calls
// Members (status), Follow and WaitNonce (up), RequestLeave (down) and the
// key operations (key rotate). types.go holds the vocabulary shared by the
// agent (which implements Membership) and the CLI (which reads Events);
// wire.go the paths and bodies on the wire. docs/nodeapi.md has the whole
// picture and the detection benchmark.
//
// Not a stable Go API: see docs/architecture.md, "Public or internal".
package nodeapi

import (
	"context"
	"errors"
	"time"
)

// MemberStatus is a member's state as the gossip library (serf over
// memberlist) reports it; nothing in the member's tags decides it.
type MemberStatus string

const (
	StatusAlive   MemberStatus = "alive"
	StatusSuspect MemberStatus = "suspect" // memberlist suspects it; not yet declared failed
	StatusLeaving MemberStatus = "leaving" // it announced a leave that is under way
	StatusLeft    MemberStatus = "left"    // it left gracefully
	StatusFailed  MemberStatus = "failed"  // it was declared dead without leaving
)

func (s MemberStatus) String() string { return string(s) }

// Member is one member of the gossip cluster as one agent sees it.
type Member struct {
	Name   string            `json:"name"`
	Addr   string            `json:"addr"` // IP address
	Port   int               `json:"port"` // gossip port
	Status MemberStatus      `json:"status"`
	Tags   map[string]string `json:"tags,omitempty"` // cluster, nonce, provider, instance id, hostname, role, user tags
}

// EventType is what happened to a member.
type EventType string

const (
	EventJoin   EventType = "join"
	EventUpdate EventType = "update" // tags changed, or status changed without a join/leave/fail (suspect, alive again)
	EventLeave  EventType = "leave"
	EventFail   EventType = "fail"
	EventReap   EventType = "reap" // forgotten after the reap interval
)

func (t EventType) String() string { return string(t) }

// Event is one membership change, pushed the moment the agent learns it.
type Event struct {
	Type   EventType `json:"type"`
	Member Member    `json:"member"`
	Time   time.Time `json:"time"`
}

// KeyReport is the outcome of a keyring operation on one node (NumNodes
// and NumResp are 1 when it answered; Keys lists its keys after the
// operation, Primary its primary key).
type KeyReport struct {
	NumNodes int               `json:"num_nodes"`
	NumResp  int               `json:"num_resp"`
	NumErr   int               `json:"num_err"`
	Messages map[string]string `json:"messages,omitempty"` // node name -> error
	Keys     map[string]int    `json:"keys,omitempty"`     // base64 key -> how many nodes hold it
	Primary  string            `json:"primary,omitempty"`  // base64 primary key
}

// HandlerFailure is an event handler's run on Node that failed twice (a
// run and its retry) (docs/applications.md).
type HandlerFailure struct {
	Node    string    `json:"node"`
	Run     string    `json:"run"` // the handler's path
	Event   string    `json:"event"`
	Members []string  `json:"members"`
	Exit    int       `json:"exit"` // -1 when it did not exit by itself (timeout, not started)
	Error   string    `json:"error"`
	At      time.Time `json:"at"`
}

// HandlerReporter is what an agent with event handlers offers besides
// Membership: the latest failures, which Snapshot carries.
type HandlerReporter interface {
	HandlerFailures() []HandlerFailure
}

// ErrWrongNonce is returned by Leave when the nonce is not the agent's own:
// an older incarnation of a name is never made to leave.
var ErrWrongNonce = errors.New("nonce does not match this node")

// Membership is what an agent offers the API server. The agent implements
// it on top of serf.
type Membership interface {
	// Members is this agent's current view, itself included.
	Members() []Member
	// Subscribe returns a snapshot of the members and, from that moment on,
	// every membership change, until ctx ends (then the channel is closed).
	Subscribe(ctx context.Context) ([]Member, <-chan Event)
	// Leave makes this agent leave the cluster gracefully, if nonce is its
	// own (else ErrWrongNonce).
	Leave(ctx context.Context, nonce string) error
	// KeyList, KeyInstall, KeyUse and KeyRemove run the keyring operation on
	// this agent's own keyring only (the CLI goes to each node in turn;
	// nothing over gossip changes a key). Keys are raw bytes (16, 24 or 32).
	KeyList(ctx context.Context) (KeyReport, error)
	KeyInstall(ctx context.Context, key []byte) (KeyReport, error)
	KeyUse(ctx context.Context, key []byte) (KeyReport, error)
	KeyRemove(ctx context.Context, key []byte) (KeyReport, error)
}

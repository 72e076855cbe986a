package nodeapi

import (
	"time"

	"github.com/clusterctl/clusterctl/internal/identity"
)

// The API's paths. Every request and response body is JSON.
const (
	PathMembers    = "/v1/members"      // GET: Snapshot
	PathEvents     = "/v1/events"       // GET: newline-delimited StreamLine, a snapshot first
	PathLeave      = "/v1/leave"        // POST LeaveRequest: the node leaves (409 on a wrong nonce)
	PathKeyList    = "/v1/keys/list"    // POST: KeyResponse
	PathKeyInstall = "/v1/keys/install" // POST KeyRequest: KeyResponse
	PathKeyUse     = "/v1/keys/use"     // POST KeyRequest: KeyResponse
	PathKeyRemove  = "/v1/keys/remove"  // POST KeyRequest: KeyResponse
)

// TagNonce is the member tag that holds the nonce the CLI rendered for the
// node: the agent publishes it, WaitMember looks for it.
const TagNonce = identity.TagNonce

// Snapshot is one agent's whole view at one moment.
type Snapshot struct {
	Node    string    `json:"node"` // the agent that answered
	Members []Member  `json:"members"`
	Time    time.Time `json:"time"`
	// HandlerFailures are the answering agent's latest failed event
	// handler runs (status -v).
	HandlerFailures []HandlerFailure `json:"handler_failures,omitempty"`
}

// StreamLine is one line of the event stream: exactly one field is set.
// The first line is a Snapshot; then an Event for each change the moment
// the agent learns it, and a Heartbeat when nothing happened for
// HeartbeatInterval, so that a client notices a dead connection.
type StreamLine struct {
	Snapshot  *Snapshot  `json:"snapshot,omitempty"`
	Event     *Event     `json:"event,omitempty"`
	Heartbeat *time.Time `json:"heartbeat,omitempty"`
}

// LeaveRequest asks the agent that serves it to leave the cluster.
type LeaveRequest struct {
	Nonce string `json:"nonce"`
}

// KeyRequest carries a gossip key (raw 16, 24 or 32 bytes; base64 in JSON).
type KeyRequest struct {
	Key []byte `json:"key"`
}

// KeyResponse is a keyring operation's report, and its error (some members
// failed or did not answer) if any.
type KeyResponse struct {
	Report KeyReport `json:"report"`
	Error  string    `json:"error,omitempty"`
}

// errorBody is the body of every response that is not 200.
type errorBody struct {
	Error string `json:"error"`
}

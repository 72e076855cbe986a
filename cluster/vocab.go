package cluster

import "github.com/clusterctl/clusterctl/nodeapi"

// Phase is where a node is in its life: recorded in state by up and down,
// reported as progress, and shown by status.
type Phase string

// Every phase a node can be in.
const (
	PhaseRecorded Phase = "recorded" // in state; the provider has not been asked yet
	PhaseCreating Phase = "creating" // the provider is making it
	PhaseBooting  Phase = "booting"  // the provider made it; waiting for the agent to join
	PhaseJoined   Phase = "joined"   // its agent joined with the nonce we rendered
	PhaseFailed   Phase = "failed"   // a phase failed; see Error
	PhaseLeaving  Phase = "leaving"  // down has started
	PhaseLeft     Phase = "left"     // down: its agent left the gossip cluster gracefully
	PhaseDeleting Phase = "deleting" // down: the provider is deleting the machine
	PhaseDeleted  Phase = "deleted"  // down: the machine is gone and the node forgotten
	PhaseStray    Phase = "stray"    // status: a machine of the cluster that the state does not know
	PhaseUnknown  Phase = "unknown"  // status: a gossip member that the state does not know
	PhaseStopping Phase = "stopping" // stop: the provider is stopping the machine (no leave: the others see it failed)
	PhaseStopped  Phase = "stopped"  // stop: the machine is stopped, its disk and identity kept
	PhaseStarting Phase = "starting" // start: the provider is starting the stopped machine
)

func (p Phase) String() string { return string(p) }

// Final reports whether p ends a command's work on a node (up, start:
// joined or failed; down: deleted or failed; stop: stopped or failed).
func (p Phase) Final() bool {
	switch p {
	case PhaseJoined, PhaseFailed, PhaseDeleted, PhaseStopped:
		return true
	}
	return false
}

// GossipState is a node's state in the gossip view of status.
type GossipState string

// Every gossip state status shows: the agent's member states, and what
// status concludes when no member reports the node.
const (
	GossipAlive       GossipState = GossipState(nodeapi.StatusAlive)   // a member with the node's nonce is alive
	GossipSuspect     GossipState = GossipState(nodeapi.StatusSuspect) // a member suspects it; not yet declared failed
	GossipLeaving     GossipState = GossipState(nodeapi.StatusLeaving) // its leave is under way
	GossipFailed      GossipState = GossipState(nodeapi.StatusFailed)  // it failed without leaving
	GossipLeft        GossipState = GossipState(nodeapi.StatusLeft)    // it left gracefully
	GossipNeverJoined GossipState = "never-joined"                     // no join with this node's nonce was ever seen
	GossipNotSeen     GossipState = "not-seen"                         // it had joined, but no member reports it now
	GossipStale       GossipState = "stale"                            // a member has the name but another nonce
	GossipUnreachable GossipState = "unreachable"                      // no node's API answered within one connect timeout
	GossipUnknown     GossipState = "unknown"                          // not asked (a stray machine)
)

func (g GossipState) String() string { return string(g) }

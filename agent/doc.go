// Package agent is clusterctl's node agent and the observer the CLI uses to
// watch the cluster.
//
// Every node runs an Agent: a hashicorp/memberlist member (encrypted with
// the cluster's gossip key, labelled with the cluster name) that publishes
// the node's Meta — cluster, name, nonce, provider, instance id, hostname,
// role and tags. A node is ready when its agent has joined; the CLI learns
// this through an Observer, a short-lived member with role "observer" that
// waits for a join whose meta carries the nonce the CLI rendered for the
// node. The observer can also ask a node's agent to leave for good
// (RequestLeave), which `clusterctl down` does before deleting the machine.
//
// The agent optionally keeps a marked block of /etc/hosts up to date with
// one line per alive node, so every node name resolves to its cluster
// address (and not to 127.0.1.1).
package agent

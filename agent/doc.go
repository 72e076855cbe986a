// Package agent is clusterctl's node agent.
//
// Every node runs an Agent: a hashicorp/serf member (memberlist underneath,
// encrypted with the keyring, labelled with the cluster name) whose tags
// carry the node's Meta — cluster, name, nonce, provider, instance id,
// hostname, role and user tags. Serf reconnects to failed members (so
// partitions heal), rejoins the members of its snapshot after a restart,
// and rotates keys across the cluster; the Agent implements
// nodeapi.Membership on top of it. A node is ready when its agent has
// joined; the CLI learns this through the node API (package nodeapi),
// which streams an agent's view, and waits for a member whose tags carry
// the nonce it rendered for the node. It asks a node's agent to leave for
// good through the same API (Leave) before `clusterctl down` deletes the
// machine. Only members whose identity the cluster's CA vouches for are
// members at all (guard.go, internal/identity).
//
// The agent optionally keeps a marked block of /etc/hosts up to date with
// one line per node that has not left, so every node name resolves to its
// cluster address (and not to 127.0.1.1).
//
// Not a stable Go API: see docs/architecture.md, "Public or internal".
package agent

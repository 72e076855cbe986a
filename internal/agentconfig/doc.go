// Package agentconfig is what the CLI and the node agent share: the
// agent's config file (Config, written by the CLI into a node's user-data
// as /etc/clusterctl/agent.json, read by the agent with LoadConfig), the
// gossip timings, the event handlers, and the serf tags every member
// publishes (Meta and the tag names) with their size budget.
//
// It imports neither hashicorp/serf nor hashicorp/memberlist, so that the
// CLI links neither (cmd/clusterctl/deps_test.go); what needs serf (the
// gossip, Timing's application to a serf config) is in package agent.
// It is internal: its API hands out internal types (pki, identity), and
// the contract between CLI and agent is the JSON, not these Go types.
package agentconfig

// Package ports holds the one default of each port clusterctl's agents
// listen on, so that a firewall rule, an agent and the CLI never disagree.
package ports

const (
	// Gossip is the agents' default gossip port, TCP and UDP.
	Gossip = 7946
	// API is the default port of the agents' mutually authenticated API
	// (TCP), the one port the CLI dials.
	API = 7947
	// SSH is the port clusterctl opens, on clouds, for `clusterctl ssh`
	// (when the config's ssh switch is on).
	SSH = 22
)

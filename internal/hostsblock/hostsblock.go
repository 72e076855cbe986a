// Package hostsblock names the marked block of /etc/hosts that clusterctl
// owns: the CLI's user-data writes it first (package cloudinit), the agent
// keeps it up to date afterwards (package agent). Both import these two
// lines from here, so they cannot drift apart.
package hostsblock

// The lines that open and close the block.
const (
	Begin = "# BEGIN clusterctl-agent"
	End   = "# END clusterctl-agent"
)

// Package templates holds the default cloud-config templates that package
// cloudinit renders for every node, embedded in the binary with go:embed.
//
// UserData is a text/template for the node's user-data; the user can replace
// it (see README.md for the data a template receives and the rule that every
// interpolated value goes through the "yaml" quoting function). AgentUnit and
// InstallAgent are static files that the default template writes verbatim.
//
// Not a stable Go API: see docs/architecture.md, "Public or internal".
package templates

import (
	_ "embed"
)

// UserDataName is the name of the default user-data template, used in
// template error messages.
const UserDataName = "user-data.yaml.tmpl"

//go:embed user-data.yaml.tmpl
var userData string

//go:embed clusterctl-agent.service
var agentUnit string

//go:embed install-agent.sh
var installAgent string

// UserData returns the default user-data template source.
func UserData() string { return userData }

// AgentUnit returns the systemd unit that runs the agent.
func AgentUnit() string { return agentUnit }

// InstallAgent returns the /bin/sh script (POSIX sh, no bash-isms) that
// installs the agent binary and what its unit expects. It is run as
//
//	sh -ec SCRIPT clusterctl-agent-install KIND [URL SHA256]
//
// where KIND is "seed" (copy the file "agent" from the NoCloud seed ISO),
// "url" (download URL, check it against SHA256, only then install) or
// "preinstalled" (check that the image has it). Then it makes the system
// user clusterctl-agent in the group clusterctl and turns /etc/hosts into a
// symbolic link to /var/lib/clusterctl-agent-hosts/hosts, the one file
// outside its state directory that the sandboxed agent may write.
func InstallAgent() string { return installAgent }

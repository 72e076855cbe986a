// Package cloudinit turns a node's identity into what it receives at first
// boot: the NoCloud user-data, meta-data and network-config documents, and
// the seed ISO (volume label "cidata") that local providers attach to the VM.
//
// Render validates its Input, executes the user-data template (the embedded
// default from package templates, or the user's own), parses the result back
// as YAML, merges the user's extra cloud-config into it and marshals the
// final document. Every value that reaches a template is quoted by the
// template's quoting functions, so a node name, a peer or an extra value can
// never inject YAML. The user-data sets the hostname, owns /etc/hosts (the
// node's name resolves to its cluster address, never to 127.0.1.1), writes
// the agent's config and systemd unit, and installs and starts the agent.
//
// WriteSeedISO writes the three documents, and optionally the agent binary,
// onto a seed ISO atomically.
//
// Not a stable Go API: see docs/architecture.md, "Public or internal".
package cloudinit

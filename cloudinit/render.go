package cloudinit

import (
	"bytes"
	"fmt"
	"github.com/clusterctl/clusterctl/internal/hostsblock"
	"net"
	"net/netip"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/templates"
)

// Paths on the node that the rendered user-data owns. Extra cloud-config may
// not write files at these paths.
const (
	HostsPath       = "/etc/hosts"
	AgentConfigPath = "/etc/clusterctl/agent.json"
	AgentUnitPath   = "/etc/systemd/system/clusterctl-agent.service"
	AgentUnitName   = "clusterctl-agent.service"
	AgentBinaryPath = "/usr/local/bin/clusterctl-agent"
	// AgentHostsPath is the file the agent keeps up to date (its config's
	// hosts_file): the install command copies what cloud-init wrote to
	// HostsPath there and makes HostsPath a symbolic link to it, so the
	// agent, sandboxed, writes in a directory it owns and never in /etc.
	AgentHostsPath = "/var/lib/clusterctl-agent-hosts/hosts"
)

// The markers around the block of /etc/hosts that lists the other cluster
// members. The agent rewrites only the lines between them.
const (
	HostsBegin = hostsblock.Begin
	HostsEnd   = hostsblock.End
)

// Kinds of AgentSource.
const (
	AgentSeed         = "seed"         // file "agent" on the NoCloud seed ISO
	AgentURL          = "url"          // download URL, verify SHA256
	AgentPreinstalled = "preinstalled" // already at AgentBinaryPath in the image
)

// Peer is another known member of the cluster, listed in /etc/hosts.
type Peer struct {
	Name    string
	Address netip.Addr
}

// AgentSource says how the node gets the agent binary.
type AgentSource struct {
	Kind   string // AgentSeed, AgentURL or AgentPreinstalled
	URL    string // for AgentURL: http(s) address of the binary
	SHA256 string // for AgentURL: hex SHA-256 of the binary
}

// Input is everything Render needs to know about one node.
type Input struct {
	Cluster    string
	Name       string       // RFC 1123 label
	Domain     string       // DNS domain; the node's FQDN is Name + "." + Domain
	InstanceID string       // meta-data instance-id
	Address    netip.Prefix // cluster address and prefix length; invalid when the provider assigns addresses
	MAC        string       // MAC of the cluster NIC (network-config matches it); needed when Address is valid
	// OutboundMAC, when set, is the MAC of a NAT NIC that network-config
	// gives DHCP (only with a valid Address: otherwise there is no
	// network-config and the image's default applies).
	OutboundMAC string
	Peers       []Peer // other known nodes of the cluster
	// AgentConfig is the agent's JSON configuration. It holds the gossip
	// key: it is written to the node with mode 0600 and never appears in
	// an error message.
	AgentConfig []byte
	Agent       AgentSource
	Extra       []byte // optional user cloud-config merged into the user-data
	Template    []byte // optional replacement for the default user-data template
	// SSH, when set, gives the image's default user clusterctl's login key
	// and the node its host key; nil leaves SSH as the image has it.
	SSH *SSH
}

// SSH is what a node gets for `clusterctl ssh`: cloud-init's cc_ssh removes
// the image's host keys (ssh_deletekeys) and makes the node an ed25519 host
// key of its own (ssh_genkeytypes), whose public half the node's agent sends
// the CLI when it enrols; and it adds AuthorizedKeys to the image's default
// user (ssh_authorized_keys). No private key travels in user-data.
type SSH struct {
	// AuthorizedKeys are public keys in authorized_keys form.
	AuthorizedKeys []string
}

// Rendered holds the three NoCloud documents for one node. NetworkConfig is
// nil when the provider assigns addresses. provider.Seed has the same
// fields, so the two convert into each other (cloudinit does not import
// provider).
type Rendered struct {
	UserData, MetaData, NetworkConfig []byte
}

// Render validates in (reporting every problem at once) and renders the
// node's user-data, meta-data and, when in.Address is valid, network-config.
func Render(in Input) (Rendered, error) {
	if err := in.Validate(); err != nil {
		return Rendered{}, err
	}
	user, err := renderUserData(in)
	if err != nil {
		return Rendered{}, err
	}
	meta, err := renderMetaData(in)
	if err != nil {
		return Rendered{}, err
	}
	netcfg, err := renderNetworkConfig(in)
	if err != nil {
		return Rendered{}, err
	}
	return Rendered{UserData: user, MetaData: meta, NetworkConfig: netcfg}, nil
}

// renderUserData executes the template, parses its output, merges Extra and
// marshals the result behind a "#cloud-config" line.
func renderUserData(in Input) ([]byte, error) {
	src, name := templates.UserData(), templates.UserDataName
	if in.Template != nil {
		src, name = string(in.Template), "user template"
	}
	text, err := executeTemplate(name, src, newTemplateData(in))
	if err != nil {
		return nil, err
	}
	doc, err := parseOurs(name, text)
	if err != nil {
		return nil, err
	}
	if len(in.Extra) > 0 {
		extra, err := parseExtra(in.Extra)
		if err != nil {
			return nil, err
		}
		if err := mergeExtra(doc, extra); err != nil {
			return nil, err
		}
	}
	return marshalCloudConfig(doc)
}

// marshalYAML marshals v with two-space indentation.
func marshalYAML(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// marshalCloudConfig writes the mapping node doc as a #cloud-config document.
func marshalCloudConfig(doc *yaml.Node) ([]byte, error) {
	out, err := marshalYAML(doc)
	if err != nil {
		return nil, fmt.Errorf("marshalling user-data: %w", err)
	}
	return append([]byte("#cloud-config\n"), out...), nil
}

type metaData struct {
	InstanceID    string `yaml:"instance-id"`
	LocalHostname string `yaml:"local-hostname"`
}

func renderMetaData(in Input) ([]byte, error) {
	out, err := marshalYAML(metaData{InstanceID: in.InstanceID, LocalHostname: in.Name})
	if err != nil {
		return nil, fmt.Errorf("marshalling meta-data: %w", err)
	}
	return out, nil
}

// ClusterInterface is the name network-config gives the cluster NIC, and
// OutboundInterface the one it gives the outbound (NAT) NIC, if any.
const (
	ClusterInterface  = "cluster0"
	OutboundInterface = "nat0"
)

type networkConfig struct {
	Version   int                 `yaml:"version"`
	Ethernets map[string]ethernet `yaml:"ethernets"`
}

type ethernet struct {
	Match     macMatch `yaml:"match"`
	SetName   string   `yaml:"set-name"`
	Addresses []string `yaml:"addresses,omitempty"`
	DHCP4     bool     `yaml:"dhcp4,omitempty"`
}

type macMatch struct {
	MACAddress string `yaml:"macaddress"`
}

// renderNetworkConfig returns a version 2 network-config that gives the NIC
// with in.MAC the address in.Address, or nil when in.Address is not set.
// The NIC is matched by MAC: cloud-init 22.4 ignores name globs in "match".
func renderNetworkConfig(in Input) ([]byte, error) {
	if !in.Address.IsValid() {
		return nil, nil
	}
	mac, err := net.ParseMAC(in.MAC)
	if err != nil {
		return nil, fmt.Errorf("MAC %q: %w", in.MAC, err)
	}
	cfg := networkConfig{
		Version: 2,
		Ethernets: map[string]ethernet{ClusterInterface: {
			Match:     macMatch{MACAddress: mac.String()},
			SetName:   ClusterInterface,
			Addresses: []string{in.Address.String()},
		}},
	}
	if in.OutboundMAC != "" {
		out, err := net.ParseMAC(in.OutboundMAC)
		if err != nil {
			return nil, fmt.Errorf("outbound MAC %q: %w", in.OutboundMAC, err)
		}
		cfg.Ethernets[OutboundInterface] = ethernet{Match: macMatch{MACAddress: out.String()}, SetName: OutboundInterface, DHCP4: true}
	}
	out, err := marshalYAML(cfg)
	if err != nil {
		return nil, fmt.Errorf("marshalling network-config: %w", err)
	}
	return out, nil
}

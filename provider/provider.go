// Package provider defines the small interface every infrastructure backend
// (QEMU, VirtualBox, EC2, OpenStack, and the in-memory fake) implements, the
// shared types that cross it, optional capabilities, and the registry that maps
// a provider name to its factory.
//
// The interface is deliberately small: everything that is the same for every
// backend (naming, rendering cloud-init, state, waiting for the gossip join)
// lives in package cluster. A provider only makes, reports and deletes
// machines. Capabilities that only some backends have are separate interfaces
// that callers discover with a type assertion.
//
// Not a stable Go API: see docs/architecture.md, "Public or internal".
package provider

import (
	"context"
	"net/netip"
)

// State is a provider-neutral machine state.
type State string

// The states a provider reports. Providers map their own vocabulary onto these.
const (
	StatePending    State = "pending"    // being created or booting
	StateRunning    State = "running"    // the machine runs (its agent may not have joined yet)
	StateStopping   State = "stopping"   // shutting down or being deleted
	StateStopped    State = "stopped"    // exists but does not run
	StateTerminated State = "terminated" // deleted; may still be listed by the provider for a while
	StateNotFound   State = "not-found"  // the provider does not know this id
	StateError      State = "error"      // the provider reports a failure
	StateUnknown    State = "unknown"
)

// Seed is what a node receives at first boot: the three NoCloud documents.
// Cloud providers pass UserData through their API; local providers write all
// three (and the agent binary) onto a NoCloud seed ISO.
type Seed struct {
	UserData      []byte
	MetaData      []byte
	NetworkConfig []byte // nil when the provider configures the network itself
}

// NodeSpec is everything a provider needs to create one node.
type NodeSpec struct {
	Cluster string
	Name    string
	Nonce   string

	// Address is the node's cluster address when clusterctl chose it (see
	// AddressChooser); the zero value when the provider assigns addresses.
	Address netip.Addr
	// MAC is the MAC address of the node's cluster NIC when clusterctl chose
	// it (local providers); network-config matches the NIC by this address.
	MAC string
	// OutboundMAC is the MAC address of the node's outbound (NAT) NIC, for
	// providers that implement OutboundNIC; network-config gives that NIC
	// DHCP so the node can reach package mirrors and the like.
	OutboundMAC string

	CPUs      int
	MemoryMiB int

	Seed Seed
	// AgentBinary is the path of the linux/amd64 agent binary. Local
	// providers put it on the seed ISO as file "agent".
	AgentBinary string

	Tags map[string]string

	// Dir is a directory under the cluster's state directory that belongs to
	// this node; a provider keeps its per-node files there (disk overlay,
	// seed ISO, console log, pid file). It exists when Create is called.
	Dir string
}

// Instance is a provider's view of one machine.
type Instance struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	State   State  `json:"state"`
	Address string `json:"address,omitempty"`
	// PublicAddress is the address the CLI dials the node's API (and SSH)
	// at from outside the cloud network: EC2's public IPv4 address,
	// OpenStack's floating IP. Empty when there is none (yet), and on local
	// providers, where Address is reachable from this machine.
	PublicAddress string `json:"public_address,omitempty"`
	// Detail is a short human-readable note (a fault message, a pid).
	Detail string `json:"detail,omitempty"`
}

// Provider makes, reports and deletes machines. Every method takes a context
// first and honours its deadline. Implementations must pass the conformance
// suite in package providertest.
type Provider interface {
	// Name is the registry name ("qemu", "virtualbox", "ec2", ...).
	Name() string
	// Create makes and starts the machine. It returns as soon as the provider
	// has accepted the machine (it does not wait for the guest to boot). On
	// error it returns whatever Instance.ID it got, so the caller can record
	// it and Delete can clean up.
	Create(ctx context.Context, spec NodeSpec) (Instance, error)
	// Status reports one machine. A machine the provider does not know is
	// reported with StateNotFound and a nil error.
	Status(ctx context.Context, id string) (Instance, error)
	// Delete stops the machine and removes everything Create made for it.
	// Deleting a machine that does not exist is not an error.
	Delete(ctx context.Context, id string) error
	// List returns the machines this provider made for the cluster,
	// including ones clusterctl's state no longer knows (strays).
	List(ctx context.Context, cluster string) ([]Instance, error)
}

// ConsoleLogger is implemented by providers that can show a machine's
// console output (serial log, GetConsoleOutput, os-getConsoleOutput).
type ConsoleLogger interface {
	ConsoleLog(ctx context.Context, id string) ([]byte, error)
}

// PowerManager is implemented by providers that can stop a machine and
// start it again, keeping its disk, seed and identity (`clusterctl stop`,
// `start`, `restart`). Stop asks the guest to shut down (ACPI power button,
// a cloud's graceful stop) and returns once the machine is stopped or ctx
// ends; Start boots the stopped machine again and returns once the
// provider accepted it (it does not wait for the guest). Both are
// idempotent: stopping a stopped machine, or starting a running one,
// succeeds. Errors follow Create's rules (BadInput, WithHint). After Start
// Status reports the machine's current addresses (a cloud may give it a
// new public address).
type PowerManager interface {
	Stop(ctx context.Context, id string) error
	Start(ctx context.Context, id string) error
}

// AddressChooser is implemented by providers on which clusterctl chooses
// each node's cluster address (local host-only style networks). ClusterNetwork
// returns the network's prefix and the host's own address in it (which no
// node gets; this machine reaches the nodes' API through it).
type AddressChooser interface {
	ClusterNetwork(ctx context.Context) (prefix netip.Prefix, host netip.Addr, err error)
}

// Preflighter is implemented by providers that can check, before anything is
// created, that the host and configuration are usable (credentials and
// region first, binaries present, image readable, network exists). up calls
// it before any other provider call but ClusterNetwork, so its specs carry
// names, sizes and (with AddressChooser) addresses and MACs, but no Seed:
// checks of the rendered seed belong in SeedChecker. Problems are returned
// as *InputError so the user gets exit status 2 and nothing half-made.
type Preflighter interface {
	Preflight(ctx context.Context, specs []NodeSpec) error
}

// AgentPublisher is implemented by providers whose nodes cannot get the agent on a seed ISO (clouds).
type AgentPublisher interface {
	// AgentURL returns the URL the nodes will download the agent whose SHA-256 (hex) is sha256 from,
	// making nothing at the provider: it may read and record names in the provider's own files in the
	// state directory, but creates nothing at the provider.
	AgentURL(ctx context.Context, cluster, sha256 string) (string, error)
	// UploadAgent makes AgentURL's URL serve binary, making the bucket or container if needed.
	// up calls it only after its write-ahead record. Idempotent.
	UploadAgent(ctx context.Context, cluster, binary, sha256 string) error
}

// NodeNetwork is implemented by providers that assign addresses themselves
// but know, before creating a node, the network (CIDR) its cluster address
// will be in — a cloud subnet. The agent advertises its interface address
// inside that CIDR.
type NodeNetwork interface {
	NodeCIDR(ctx context.Context) (netip.Prefix, error)
}

// ClusterCleaner is implemented by providers that make cluster-wide
// resources (a security group, a bucket). up records, before it makes
// anything, that the provider may hold such resources for the cluster;
// `down --all` calls CleanupCluster once no node of the cluster is left,
// also when no node was ever created or no state file exists. Cleaning a
// cluster that has nothing left is not an error.
type ClusterCleaner interface {
	CleanupCluster(ctx context.Context, cluster string) error
}

// ResourceLister is implemented by ClusterCleaners that can name, one line
// each and changing nothing, what CleanupCluster would remove; `down --all`
// prints them before it removes them.
type ResourceLister interface {
	ClusterResources(ctx context.Context, cluster string) ([]string, error)
}

// Remainer is implemented by providers that leave something behind on
// purpose after `down --all` (a host-only network other clusters share);
// each line names it with the command that removes it, and `down --all`
// prints them.
type Remainer interface {
	Remains(ctx context.Context, cluster string) ([]string, error)
}

// DryRunner is implemented by providers that can say what Create would do
// without doing it (for example the VBoxManage commands). `clusterctl
// render` prints these lines after the user-data.
type DryRunner interface {
	DryRun(ctx context.Context, spec NodeSpec) ([]string, error)
}

// NetworkPreparer is implemented by providers that may have to make the
// cluster network on the host (a VirtualBox host-only network). `up` calls
// PrepareNetwork after Preflight succeeded and before anything else is made,
// so Preflight itself stays a pure check.
type NetworkPreparer interface {
	PrepareNetwork(ctx context.Context) error
}

// OutboundNIC is implemented by providers whose machines have, besides the
// cluster NIC, a NIC for outbound traffic (VirtualBox's NAT adapter). Since
// network-config then exists, cloud-init configures only the NICs it names:
// clusterctl chooses that NIC's MAC (NodeSpec.OutboundMAC) and gives it DHCP.
type OutboundNIC interface {
	HasOutboundNIC() bool
}

// SeedChecker is implemented by providers that limit what a node's seed may
// be (EC2's 16 KB user-data, Nova's 64 KB). up calls CheckSeed for every
// node once its real seed is rendered (after Preflight and the cloud
// lookups), before its write-ahead record and before anything is made; a
// problem is an *InputError.
type SeedChecker interface {
	CheckSeed(spec NodeSpec) error
}

// InFlightFinder is implemented by providers that can find the machine a
// create made even when that create never returned (up was interrupted
// while the provider's request was on its way), by something the request
// carried (EC2's ClientToken), not only by listing the cluster's machines.
// down calls it for a node recorded without an instance id whose create
// was started.
type InFlightFinder interface {
	// FindInFlight returns the machines, not yet deleted, that a create of
	// the node called name with nonce made. It waits as long as the
	// provider needs to be sure (eventual consistency); nil and no error
	// means the create made nothing. An error means it could not settle
	// what the create made.
	FindInFlight(ctx context.Context, name, nonce string) ([]Instance, error)
}

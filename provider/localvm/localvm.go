// Package localvm is what the providers that run VMs on this machine (qemu,
// virtualbox) share: the layout of a node's directory and the names of its
// files, node.json, the default MAC of a node, the node-name check and the
// Create wrapper that records what was made even when creating fails.
package localvm

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/clusterctl/clusterctl/internal/atomicfile"
	"github.com/clusterctl/clusterctl/internal/dnslabel"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

// Names of the files in a node's directory, for every local-VM provider.
const (
	FileMeta    = "node.json"   // what Create was asked for; written first
	FileSeed    = "seed.iso"    // the NoCloud seed (mode 0600: it holds the gossip key)
	FileConsole = "console.log" // the serial console (ttyS0)

	FileOverlay = "overlay.qcow2" // qemu: the node's disk, an overlay of the base image
	FilePID     = "qemu.pid"      // qemu: the QEMU process id
	FileQMP     = "qmp.sock"      // qemu: the QMP socket
	FileQEMULog = "qemu.log"      // qemu: what QEMU itself printed

	FileDisk = "disk.vdi" // virtualbox: the node's disk (differencing image or copy)
)

// NodeDir is the directory of the node name in the cluster state directory
// stateDir: <stateDir>/nodes/<name>.
func NodeDir(stateDir, name string) string { return filepath.Join(stateDir, "nodes", name) }

// NodesDir is the directory holding every node directory of a cluster.
func NodesDir(stateDir string) string { return filepath.Join(stateDir, "nodes") }

// ValidName reports whether name can be a node's name, and so a directory
// and VM name: a lower-case DNS label (internal/dnslabel).
func ValidName(name string) bool { return dnslabel.Valid(name) }

// CheckName is ValidName as an *InputError naming the provider.
func CheckName(prov, name string) error {
	if ValidName(name) {
		return nil
	}
	return usererr.BadInput(fmt.Sprintf("use a node name of lower-case letters, digits and dashes (at most %d characters, starting and ending with a letter or digit)", dnslabel.MaxLen),
		"%s: bad node name %q", prov, name)
}

// DefaultMAC derives a stable, locally administered unicast MAC in QEMU's
// 52:54:00 range for a node whose spec does not choose one.
func DefaultMAC(cluster, name string) string {
	sum := sha256.Sum256([]byte("mac\x00" + cluster + "\x00" + name))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", sum[0], sum[1], sum[2])
}

// Meta is node.json: what Create was asked for. Fields a provider does not
// use stay empty and out of the file.
type Meta struct {
	Cluster string    `json:"cluster"`
	Name    string    `json:"name"`
	VM      string    `json:"vm,omitempty"` // virtualbox: the VM name
	Address string    `json:"address,omitempty"`
	MAC     string    `json:"mac"`
	Tap     string    `json:"tap,omitempty"`   // qemu: the tap device
	Clone   string    `json:"clone,omitempty"` // virtualbox: linked or full
	Created time.Time `json:"created"`

	// CPUs and MemoryMiB are the size the node was created with (qemu:
	// Start launches it with the same; 0 in files written before they
	// were recorded means the provider's configured size).
	CPUs      int `json:"cpus,omitempty"`
	MemoryMiB int `json:"memory_mib,omitempty"`
}

// WriteMeta creates dir (mode 0700) and writes m to its node.json (mode
// 0600) atomically. It is the first thing Create writes: from then on the
// node is the provider's, and Delete cleans it up.
func WriteMeta(dir string, m Meta) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, FileMeta), append(b, '\n'), 0o600)
}

// ReadMeta reads the node.json in dir.
func ReadMeta(dir string) (Meta, error) {
	var m Meta
	b, err := os.ReadFile(filepath.Join(dir, FileMeta))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", filepath.Join(dir, FileMeta), err)
	}
	return m, nil
}

// Driver is what Create needs of a provider.
type Driver struct {
	// Provider names the provider in errors ("qemu").
	Provider string
	// Dir is the node's directory (NodeDir).
	Dir string
	// ID is the instance id the node gets.
	ID string
	// Make makes and starts the node; whatever it made is in Dir, for
	// Delete to find.
	Make func(ctx context.Context) error
	// Status reports the instance once Make returned.
	Status func(ctx context.Context, id string) (provider.Instance, error)
	// Started reports whether a state after Make counts as started.
	Started func(provider.State) bool
	// Log is the file to read when the VM does not run after Make.
	Log string
}

// Create is the Create of a local-VM provider: it checks the name and the
// spec's directory, runs d.Make, and returns the instance as d.Status sees
// it. On failure it returns the instance id with the error, so that the
// caller records it and Delete can clean up what was made.
func Create(ctx context.Context, d Driver, spec provider.NodeSpec) (provider.Instance, error) {
	if err := CheckName(d.Provider, spec.Name); err != nil {
		return provider.Instance{}, err
	}
	if spec.Dir != "" && filepath.Clean(spec.Dir) != d.Dir {
		return provider.Instance{}, fmt.Errorf("%s: node %q: spec.Dir %q is not %q", d.Provider, spec.Name, spec.Dir, d.Dir)
	}
	inst := provider.Instance{ID: d.ID, Name: spec.Name, State: provider.StatePending}
	if spec.Address.IsValid() {
		inst.Address = spec.Address.String()
	}
	if err := d.Make(ctx); err != nil {
		inst.State = provider.StateError
		return inst, fmt.Errorf("%s: create node %q: %w", d.Provider, spec.Name, err)
	}
	st, err := d.Status(ctx, inst.ID)
	if err != nil {
		return inst, err
	}
	if !d.Started(st.State) {
		return inst, fmt.Errorf("%s: create node %q: the VM was started but is %s (%s); see %s", d.Provider, spec.Name, st.State, st.Detail, d.Log)
	}
	return st, nil
}

// ConsoleLog returns what the VM of the node in dir wrote to its serial
// console (FileConsole) so far: empty before the VM started, ErrNotFound
// without the node's directory. id names the instance in errors.
func ConsoleLog(prov, id, dir string) ([]byte, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: console log of %q: node %w", prov, id, provider.ErrNotFound)
	}
	b, err := os.ReadFile(filepath.Join(dir, FileConsole))
	if errors.Is(err, fs.ErrNotExist) {
		return []byte{}, nil // not started (yet)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: console log of %q: %w", prov, id, err)
	}
	return b, nil
}

// Broadcast is the last (broadcast) address of an IPv4 prefix.
func Broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := 32 - p.Bits()
	for i := 3; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	return netip.AddrFrom4(b)
}

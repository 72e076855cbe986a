package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/cloudinit"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/localvm"
)

// Name is the provider's registry name.
const Name = "qemu"

func init() {
	provider.Register(Name, func(env provider.Env) (provider.Provider, error) { return New(env) })
}

// maxSocketPath is the longest path a unix socket address can hold
// (sun_path is 108 bytes including the terminating NUL).
const maxSocketPath = 107

// Provider runs nodes as local QEMU VMs. Make one with New.
type Provider struct {
	cfg Config
	env provider.Env

	// kvmUsable reports whether /dev/kvm can be opened; a field so that
	// tests can pretend either way.
	kvmUsable func() bool
	// makeTap makes the node's tap device on the bridge (createTap; a
	// field so that tests without CAP_NET_ADMIN can run Start).
	makeTap func(ctx context.Context, tap, bridge string) error
}

var (
	_ provider.Provider       = (*Provider)(nil)
	_ provider.ConsoleLogger  = (*Provider)(nil)
	_ provider.AddressChooser = (*Provider)(nil)
	_ provider.Preflighter    = (*Provider)(nil)
	_ provider.PowerManager   = (*Provider)(nil)
)

// New makes the provider from its environment; it creates nothing.
func New(env provider.Env) (*Provider, error) {
	cfg, err := ParseConfig(env)
	if err != nil {
		return nil, err
	}
	if env.Dir == "" {
		return nil, errors.New("qemu provider: the cluster state directory is not set")
	}
	return &Provider{cfg: cfg, env: env, kvmUsable: kvmOpens, makeTap: createTap}, nil
}

// Name returns "qemu".
func (p *Provider) Name() string { return Name }

// Config returns the provider's configuration with defaults filled in.
func (p *Provider) Config() Config { return p.cfg }

// nodePaths are the files of one node.
type nodePaths struct {
	Dir, Meta, Overlay, Seed, PID, QMP, Console, Log string
}

func pathsIn(dir string) nodePaths {
	j := func(f string) string { return filepath.Join(dir, f) }
	return nodePaths{Dir: dir, Meta: j(localvm.FileMeta), Overlay: j(localvm.FileOverlay), Seed: j(localvm.FileSeed),
		PID: j(localvm.FilePID), QMP: j(localvm.FileQMP), Console: j(localvm.FileConsole), Log: j(localvm.FileQEMULog)}
}

// nodeDir is where the node with this id (its name) keeps its files.
func (p *Provider) nodeDir(id string) string { return localvm.NodeDir(p.env.Dir, id) }

// tapName is the node's tap device: "cctl" and 11 hex digits of a hash of
// cluster and node name, 15 characters (the kernel's limit).
func tapName(cluster, name string) string {
	sum := sha256.Sum256([]byte(cluster + "\x00" + name))
	return "cctl" + hex.EncodeToString(sum[:])[:11]
}

// Create makes the node's disk overlay, seed ISO and tap device and starts
// QEMU as a daemon. It returns once QEMU runs; it does not wait for the guest.
// On failure it returns the instance id with the error: whatever was made is
// in the node's directory (and its tap), and Delete removes it.
func (p *Provider) Create(ctx context.Context, spec provider.NodeSpec) (provider.Instance, error) {
	dir := p.nodeDir(spec.Name)
	return localvm.Create(ctx, localvm.Driver{
		Provider: Name, Dir: dir, ID: spec.Name,
		Make:    func(ctx context.Context) error { return p.create(ctx, spec, dir) },
		Status:  p.Status,
		Started: func(s provider.State) bool { return s == provider.StateRunning },
		Log:     filepath.Join(dir, localvm.FileConsole),
	}, spec)
}

func (p *Provider) create(ctx context.Context, spec provider.NodeSpec, dir string) error {
	np := pathsIn(dir)
	if st, err := p.Status(ctx, spec.Name); err != nil {
		return err
	} else if st.State == provider.StateRunning {
		return fmt.Errorf("it already runs (%s); delete it first", st.Detail)
	}
	if err := checkPaths(np); err != nil {
		return err
	}
	mac := spec.MAC
	if mac == "" {
		mac = localvm.DefaultMAC(p.env.Cluster, spec.Name)
	}
	if err := checkMAC(mac); err != nil {
		return usererr.BadInput("use a unicast MAC address like 52:54:00:12:34:56", "%v", err)
	}
	meta := localvm.Meta{Cluster: p.env.Cluster, Name: spec.Name, MAC: mac, Tap: tapName(p.env.Cluster, spec.Name),
		CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB, Created: time.Now().UTC()}
	if spec.Address.IsValid() {
		meta.Address = spec.Address.String()
	}

	// node.json goes first: from here on the node is ours and Delete cleans it.
	if err := localvm.WriteMeta(dir, meta); err != nil {
		return err
	}
	// Leftovers of an earlier attempt would confuse Status and ConsoleLog.
	for _, f := range []string{np.PID, np.QMP, np.Console, np.Log, np.Overlay} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}

	// A KVM that cannot be used is bad input: found before anything is made.
	if _, err := p.accel(); err != nil {
		return err
	}
	format := p.cfg.ImageFormat
	var err error
	if format == "" {
		if format, err = imageFormat(ctx, p.cfg.QemuImg, p.cfg.Image); err != nil {
			return err
		}
	}
	if err := run(ctx, p.cfg.QemuImg, "create", "-q", "-f", "qcow2", "-F", format, "-b", p.cfg.Image, np.Overlay); err != nil {
		return fmt.Errorf("disk overlay: %w", err)
	}
	if err := cloudinit.WriteSeedISO(np.Seed, cloudinit.Rendered(spec.Seed), spec.AgentBinary); err != nil {
		return err
	}
	if err := p.makeTap(ctx, meta.Tap, p.cfg.Bridge); err != nil {
		return err
	}
	return p.boot(ctx, np, meta)
}

// boot starts the node's QEMU from its files (overlay, seed ISO) on its
// tap with its MAC, as the daemon Create and Start launch.
func (p *Provider) boot(ctx context.Context, np nodePaths, meta localvm.Meta) error {
	accel, err := p.accel()
	if err != nil {
		return err
	}
	cpus, mem := meta.CPUs, meta.MemoryMiB
	if cpus <= 0 {
		cpus = p.cfg.CPUs
	}
	if mem <= 0 {
		mem = p.cfg.Memory
	}
	argv := qemuArgs(launch{
		Binary: p.cfg.Binary, Name: meta.Name + "." + p.env.Cluster,
		Machine: p.cfg.Machine, Accel: accel, Memory: mem, CPUs: cpus,
		Overlay: np.Overlay, Seed: np.Seed, Tap: meta.Tap, MAC: meta.MAC,
		PIDFile: np.PID, QMP: np.QMP, Console: np.Console,
		Kernel: p.cfg.Kernel, Initrd: p.cfg.Initrd, Append: p.cfg.Append,
	})
	return startDaemon(ctx, argv, np.Log)
}

// checkPaths rejects node directories QEMU cannot use: the QMP socket path
// must fit a unix socket address, and QEMU's option syntax has no escape for
// a comma in the -qmp and -serial paths.
func checkPaths(np nodePaths) error {
	if len(np.QMP) > maxSocketPath {
		return usererr.BadInput("use a shorter cluster state directory",
			"the QMP socket path %q is %d bytes, longer than a unix socket allows (%d)", np.QMP, len(np.QMP), maxSocketPath)
	}
	if strings.Contains(np.Dir, ",") {
		return usererr.BadInput("use a cluster state directory without commas", "the node directory %q contains a comma", np.Dir)
	}
	return nil
}

// startDaemon runs QEMU with -daemonize: the command returns once the VM
// runs. QEMU's own output goes to logPath and is quoted on failure.
func startDaemon(ctx context.Context, argv []string, logPath string) error {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logPath)
		return fmt.Errorf("start %s: %w: %s", argv[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// accel resolves the configured accelerator.
func (p *Provider) accel() (string, error) {
	switch p.cfg.Accel {
	case "auto":
		if p.kvmUsable() {
			return "kvm", nil
		}
		return "tcg", nil
	case "kvm":
		if !p.kvmUsable() {
			return "", kvmError()
		}
	}
	return p.cfg.Accel, nil
}

func kvmOpens() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func kvmError() error {
	return usererr.BadInput("use accel: tcg (or auto), or enable KVM on this host (load kvm_intel/kvm_amd, give the user access to /dev/kvm)",
		"qemu config: accel is kvm but /dev/kvm cannot be opened")
}

// imageFormat asks qemu-img for the format of the image at path.
func imageFormat(ctx context.Context, qemuImg, path string) (string, error) {
	out, err := output(ctx, qemuImg, "info", "--output=json", path)
	if err != nil {
		return "", fmt.Errorf("image format of %q: %w", path, err)
	}
	var info struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.Format == "" {
		return "", fmt.Errorf("image format of %q: cannot read qemu-img info output: %q", path, out)
	}
	return info.Format, nil
}

// Status reports the node: running when its QEMU process is alive, stopped
// when its directory exists without one, not-found without a directory.
func (p *Provider) Status(ctx context.Context, id string) (provider.Instance, error) {
	inst := provider.Instance{ID: id, Name: id, State: provider.StateNotFound}
	if !localvm.ValidName(id) {
		return inst, nil
	}
	np := pathsIn(p.nodeDir(id))
	if _, err := os.Stat(np.Dir); errors.Is(err, fs.ErrNotExist) {
		return inst, nil
	} else if err != nil {
		return inst, fmt.Errorf("qemu: status of %q: %w", id, err)
	}
	if m, err := localvm.ReadMeta(np.Dir); err == nil {
		inst.Address = m.Address
	}
	pid, alive, err := qemuProcess(np.PID)
	if err != nil {
		inst.State = provider.StateUnknown
		return inst, fmt.Errorf("qemu: status of %q: %w", id, err)
	}
	if alive {
		inst.State = provider.StateRunning
		inst.Detail = fmt.Sprintf("pid %d", pid)
	} else {
		inst.State = provider.StateStopped
		inst.Detail = "no QEMU process"
	}
	return inst, nil
}

// Delete powers the VM down (ACPI via QMP, then SIGTERM, then SIGKILL),
// removes its tap device and its directory. It is idempotent and cleans up
// a node whose Create stopped half-way.
func (p *Provider) Delete(ctx context.Context, id string) error {
	if !localvm.ValidName(id) {
		return nil
	}
	np := pathsIn(p.nodeDir(id))
	if err := stopVM(ctx, np, p.cfg.PowerdownTimeout); err != nil {
		return fmt.Errorf("qemu: delete %q: %w", id, err)
	}
	tap := tapName(p.env.Cluster, id)
	if m, err := localvm.ReadMeta(np.Dir); err == nil && m.Tap != "" {
		tap = m.Tap
	}
	if err := deleteTap(ctx, tap); err != nil {
		return fmt.Errorf("qemu: delete %q: %w", id, err)
	}
	if err := os.RemoveAll(np.Dir); err != nil {
		return fmt.Errorf("qemu: delete %q: %w", id, err)
	}
	return nil
}

// List returns every node directory of the cluster with its state.
func (p *Provider) List(ctx context.Context, cluster string) ([]provider.Instance, error) {
	if cluster != p.env.Cluster {
		return nil, nil // this provider only sees its own cluster's directory
	}
	entries, err := os.ReadDir(localvm.NodesDir(p.env.Dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("qemu: list: %w", err)
	}
	var out []provider.Instance
	for _, e := range entries {
		if !e.IsDir() || !localvm.ValidName(e.Name()) {
			continue
		}
		inst, err := p.Status(ctx, e.Name())
		if err != nil {
			return out, err
		}
		if inst.State != provider.StateNotFound {
			out = append(out, inst)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ConsoleLog returns what the VM wrote to its serial console so far.
func (p *Provider) ConsoleLog(ctx context.Context, id string) ([]byte, error) {
	if !localvm.ValidName(id) {
		return nil, fmt.Errorf("qemu: console log of %q: %w", id, provider.ErrNotFound)
	}
	return localvm.ConsoleLog(Name, id, p.nodeDir(id))
}

// ClusterNetwork returns the configured cidr and the bridge's own address in
// it (which no node may get).
func (p *Provider) ClusterNetwork(ctx context.Context) (netip.Prefix, netip.Addr, error) {
	host, err := bridgeAddr(p.cfg.Bridge, p.cfg.Prefix())
	if err != nil {
		return netip.Prefix{}, netip.Addr{}, err
	}
	return p.cfg.Prefix(), host, nil
}

// checkMAC accepts a 6-byte unicast MAC address written with colons.
func checkMAC(mac string) error {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return fmt.Errorf("bad MAC %q: %w", mac, err)
	}
	if len(hw) != 6 || hw[0]&1 != 0 || strings.Count(mac, ":") != 5 {
		return fmt.Errorf("bad MAC %q: want a unicast address like 52:54:00:12:34:56", mac)
	}
	return nil
}

package virtualbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clusterctl/clusterctl/cloudinit"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/localvm"
)

// Name is the provider's registry name.
const Name = "virtualbox"

func init() {
	provider.Register(Name, func(env provider.Env) (provider.Provider, error) { return New(env) })
}

// Provider runs nodes as VirtualBox VMs through VBoxManage. Make one with New.
type Provider struct {
	cfg Config
	env provider.Env

	// Host facts, fields so that tests can set them.
	goos          string
	networksConf  string
	routes        func() ([]hostRoute, error)
	pollInterval  time.Duration // how often Delete looks whether ACPI power-off finished, or the session was released
	unlockTimeout time.Duration // how long Delete waits for a powered-off VM's session to be released
	retryBackoff  time.Duration

	runMu sync.Mutex
	run   *runner

	netMu sync.Mutex
	net   *hostOnly // found or made by ensureHostOnly
}

var (
	_ provider.Provider        = (*Provider)(nil)
	_ provider.ConsoleLogger   = (*Provider)(nil)
	_ provider.AddressChooser  = (*Provider)(nil)
	_ provider.Preflighter     = (*Provider)(nil)
	_ provider.DryRunner       = (*Provider)(nil)
	_ provider.NetworkPreparer = (*Provider)(nil)
	_ provider.OutboundNIC     = (*Provider)(nil)
	_ provider.ClusterCleaner  = (*Provider)(nil)
	_ provider.Remainer        = (*Provider)(nil)
)

// New makes the provider from its environment. It creates nothing and does
// not need VirtualBox: VBoxManage is looked up on first use, so that render
// works on a machine without it.
func New(env provider.Env) (*Provider, error) {
	cfg, err := ParseConfig(env)
	if err != nil {
		return nil, err
	}
	if env.Dir == "" {
		return nil, errors.New("virtualbox provider: the cluster state directory is not set")
	}
	return &Provider{
		cfg: cfg, env: env,
		goos: runtime.GOOS, networksConf: networksConf, routes: systemRoutes,
		pollInterval: time.Second, unlockTimeout: 30 * time.Second, retryBackoff: time.Second,
	}, nil
}

// Name returns "virtualbox".
func (p *Provider) Name() string { return Name }

// Config returns the provider's configuration with defaults filled in.
func (p *Provider) Config() Config { return p.cfg }

// vbox returns the VBoxManage runner, finding VBoxManage on first use.
func (p *Provider) vbox() (*runner, error) {
	p.runMu.Lock()
	defer p.runMu.Unlock()
	if p.run != nil {
		return p.run, nil
	}
	path, err := findVBoxManage(p.cfg.VBoxManage)
	if err != nil {
		return nil, err
	}
	p.run = &runner{path: path, timeout: p.cfg.CommandTimeout, retries: 3, backoff: p.retryBackoff}
	return p.run, nil
}

// nodePaths are the files of one node. VirtualBox keeps the VM's own files
// (settings, logs) in VMDir: createvm --basefolder Dir --groups G puts them
// in Dir<G>/<vm name>/ (VirtualBox::composeMachineFilename in
// VirtualBoxImpl.cpp: <base_folder><group>/<machine_name>/<machine_name>.vbox).
type nodePaths struct {
	Dir, Meta, Disk, Seed, Console, VMDir string
}

// VBoxLog is the VM process's log, where VirtualBox says why a VM stopped.
func (np nodePaths) VBoxLog() string { return filepath.Join(np.VMDir, "Logs", "VBox.log") }

func (p *Provider) paths(node string) nodePaths {
	dir := localvm.NodeDir(p.env.Dir, node)
	j := func(f string) string { return filepath.Join(dir, f) }
	return nodePaths{Dir: dir, Meta: j(localvm.FileMeta), Disk: j(localvm.FileDisk), Seed: j(localvm.FileSeed), Console: j(localvm.FileConsole),
		VMDir: filepath.Join(dir, filepath.FromSlash(vmGroup(p.env.Cluster)), p.vmName(node))}
}

// vmGroup is the VirtualBox group of the cluster's VMs.
func vmGroup(cluster string) string { return "/clusterctl/" + cluster }

// vmName is the VirtualBox VM name of a node, which is also its instance
// id: VM names are global to the host user, so the cluster is part of it.
func (p *Provider) vmName(node string) string { return node + "." + p.env.Cluster }

// nodeOf returns the node name of an instance id of this cluster.
func (p *Provider) nodeOf(id string) (string, bool) {
	node, ok := strings.CutSuffix(id, "."+p.env.Cluster)
	if !ok || !localvm.ValidName(node) {
		return "", false
	}
	return node, true
}

// vboxMAC writes a MAC the way modifyvm --macaddressN wants it: 12 hex
// digits, no separators.
func vboxMAC(mac string) (string, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 || hw[0]&1 != 0 {
		return "", fmt.Errorf("bad MAC %q: want a unicast address like 52:54:00:12:34:56", mac)
	}
	return strings.ToUpper(strings.ReplaceAll(hw.String(), ":", "")), nil
}

// createPlan is everything the create commands are made of, resolved.
type createPlan struct {
	VM, Cluster    string
	OSType         string
	Memory, CPUs   int
	Base, Clone    string
	Controller     string
	Net            hostOnly
	MAC            string // as modifyvm wants it
	OutboundMAC    string // NIC1 (NAT), as modifyvm wants it; "" = VirtualBox picks
	Dir            string // --basefolder
	Disk, Seed     string
	Console        string
	ControllerName string
}

// commands returns the VBoxManage argument lists that make and start the
// VM, in order. It is a pure function so the sequence is pinned by golden
// files and shown by render.
func (c createPlan) commands() [][]string {
	var clone []string
	if c.Clone == CloneFull {
		clone = []string{"clonemedium", "disk", c.Base, c.Disk, "--format", "VDI"}
	} else {
		clone = []string{"createmedium", "disk", "--filename", c.Disk, "--diffparent", c.Base, "--format", "VDI"}
	}
	modify := []string{"modifyvm", c.VM,
		"--memory", strconv.Itoa(c.Memory), "--cpus", strconv.Itoa(c.CPUs),
		"--ioapic", "on", "--rtcuseutc", "on",
		"--boot1", "disk", "--boot2", "none", "--boot3", "none", "--boot4", "none",
		"--nic1", "nat", "--nictype1", "virtio"}
	if c.OutboundMAC != "" {
		modify = append(modify, "--macaddress1", c.OutboundMAC)
	}
	modify = append(modify, c.Net.modifyvmArgs(2)...)
	modify = append(modify, "--nictype2", "virtio", "--macaddress2", c.MAC,
		"--uart1", "0x3F8", "4", "--uartmode1", "file", c.Console)
	ctl := []string{"storagectl", c.VM, "--name", c.ControllerName}
	if c.Controller == "virtio" {
		ctl = append(ctl, "--add", "virtio", "--controller", "VirtIO")
	} else {
		ctl = append(ctl, "--add", "sata", "--controller", "IntelAhci")
	}
	ctl = append(ctl, "--portcount", "2", "--bootable", "on")
	return [][]string{
		clone,
		{"createvm", "--name", c.VM, "--groups", vmGroup(c.Cluster), "--ostype", c.OSType, "--basefolder", c.Dir, "--register"},
		modify,
		ctl,
		{"storageattach", c.VM, "--storagectl", c.ControllerName, "--port", "0", "--device", "0", "--type", "hdd", "--medium", c.Disk},
		{"storageattach", c.VM, "--storagectl", c.ControllerName, "--port", "1", "--device", "0", "--type", "dvddrive", "--medium", c.Seed},
		startArgs(c.VM),
	}
}

func (p *Provider) plan(spec provider.NodeSpec, net hostOnly) (createPlan, error) {
	np := p.paths(spec.Name)
	mac := spec.MAC
	if mac == "" {
		mac = localvm.DefaultMAC(p.env.Cluster, spec.Name)
	}
	vm, err := vboxMAC(mac)
	if err != nil {
		return createPlan{}, usererr.BadInput("use a unicast MAC address like 52:54:00:12:34:56", "virtualbox: node %q: %v", spec.Name, err)
	}
	var outbound string
	if spec.OutboundMAC != "" {
		if outbound, err = vboxMAC(spec.OutboundMAC); err != nil {
			return createPlan{}, usererr.BadInput("use a unicast MAC address like 52:54:00:12:34:56", "virtualbox: node %q: outbound NIC: %v", spec.Name, err)
		}
	}
	cpus, mem := spec.CPUs, spec.MemoryMiB
	if cpus <= 0 {
		cpus = p.cfg.CPUs
	}
	if mem <= 0 {
		mem = p.cfg.Memory
	}
	ctlName := "SATA"
	if p.cfg.Controller == "virtio" {
		ctlName = "VirtIO"
	}
	return createPlan{
		VM: p.vmName(spec.Name), Cluster: p.env.Cluster, OSType: p.cfg.OSType,
		Memory: mem, CPUs: cpus, Base: p.cfg.Image, Clone: p.cfg.Clone,
		Controller: p.cfg.Controller, ControllerName: ctlName, Net: net, MAC: vm, OutboundMAC: outbound,
		Dir: np.Dir, Disk: np.Disk, Seed: np.Seed, Console: np.Console,
	}, nil
}

// Create writes the node's seed ISO, clones the base disk, registers and
// configures the VM and starts it headless. It returns once VirtualBox has
// started the VM; it does not wait for the guest. On failure it returns the
// instance id with the error: node.json is written before anything else, so
// Delete finds and removes whatever was made.
func (p *Provider) Create(ctx context.Context, spec provider.NodeSpec) (provider.Instance, error) {
	np := p.paths(spec.Name)
	return localvm.Create(ctx, localvm.Driver{
		Provider: Name, Dir: np.Dir, ID: p.vmName(spec.Name),
		Make:   func(ctx context.Context) error { return p.create(ctx, spec, np) },
		Status: p.Status,
		Started: func(s provider.State) bool {
			return s == provider.StateRunning || s == provider.StatePending
		},
		Log: np.VBoxLog(),
	}, spec)
}

func (p *Provider) create(ctx context.Context, spec provider.NodeSpec, np nodePaths) error {
	r, err := p.vbox()
	if err != nil {
		return err
	}
	vm := p.vmName(spec.Name)
	if info, err := p.showVM(ctx, r, vm); err != nil {
		return err
	} else if info != nil {
		if p.ours(info, spec.Name) {
			return usererr.BadInput("remove it first with `clusterctl down "+spec.Name+"`", "a VM %q of this node is already registered (%s)", vm, info["VMState"])
		}
		return errForeignVM(vm, info)
	}
	net, err := p.ensureHostOnly(ctx, r)
	if err != nil {
		return err
	}
	pl, err := p.plan(spec, net)
	if err != nil {
		return err
	}
	meta := localvm.Meta{Cluster: p.env.Cluster, Name: spec.Name, VM: vm, MAC: spec.MAC, Clone: pl.Clone, Created: time.Now().UTC()}
	if spec.Address.IsValid() {
		meta.Address = spec.Address.String()
	}
	// node.json goes first: from here on the node is ours and Delete cleans it.
	if err := localvm.WriteMeta(np.Dir, meta); err != nil {
		return err
	}
	for _, f := range []string{np.Console, np.Disk} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := cloudinit.WriteSeedISO(np.Seed, cloudinit.Rendered(spec.Seed), spec.AgentBinary); err != nil {
		return err
	}
	for _, args := range pl.commands() {
		if _, err := r.run(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

// errForeignVM is the error for a VM that has a node's name but was not
// made by clusterctl for this cluster.
func errForeignVM(vm string, info map[string]string) error {
	return usererr.BadInput("choose another node name, or rename that VM (VBoxManage modifyvm OLD --name NEW)",
		"virtualbox: a VirtualBox VM named %q already exists and was not made by clusterctl for this cluster (settings file %s)", vm, info["CfgFile"])
}

// showVM returns the VM's `showvminfo --machinereadable` fields, or nil
// when VirtualBox does not know the VM.
func (p *Provider) showVM(ctx context.Context, r *runner, vm string) (map[string]string, error) {
	out, err := r.run(ctx, "showvminfo", vm, "--machinereadable")
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseMachineReadable(out), nil
}

// ours reports whether the VM's settings file lies in the node's directory
// of this cluster: only clusterctl puts VMs there.
func (p *Provider) ours(info map[string]string, node string) bool {
	cfg := info["CfgFile"]
	if cfg == "" {
		return false
	}
	rel, err := filepath.Rel(p.paths(node).Dir, filepath.Clean(cfg))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// mapState maps VirtualBox's machine state (VMState in showvminfo
// --machinereadable) onto the provider's states.
// vboxLog is the VM's VBox.log, named in the detail of error states.
func mapState(vmState, vboxLog string) (provider.State, string) {
	switch vmState {
	case "running":
		return provider.StateRunning, "running"
	case "starting", "restoring", "settingup", "teleportingin":
		return provider.StatePending, vmState
	case "stopping", "saving", "teleporting":
		return provider.StateStopping, vmState
	case "poweroff", "saved", "teleported":
		return provider.StateStopped, vmState
	case "paused", "teleportingpausedvm":
		return provider.StateStopped, "paused"
	case "aborted", "aborted-saved":
		return provider.StateError, vmState + ": the VM process ended unexpectedly (see " + vboxLog + ")"
	case "gurumeditation":
		return provider.StateError, "guru meditation: the VM hit a fatal error (see " + vboxLog + ")"
	case "":
		return provider.StateUnknown, "VirtualBox reports no state (inaccessible VM?)"
	}
	return provider.StateUnknown, vmState
}

// Status reports the node's VM by its showvminfo VMState. A node whose
// directory exists but whose VM is not registered is an error state (a
// create that stopped half-way; `down` removes it); without either it is
// not-found.
func (p *Provider) Status(ctx context.Context, id string) (provider.Instance, error) {
	inst := provider.Instance{ID: id, Name: id, State: provider.StateNotFound}
	node, ok := p.nodeOf(id)
	if !ok {
		return inst, nil
	}
	inst.Name = node
	np := p.paths(node)
	if m, err := localvm.ReadMeta(np.Dir); err == nil {
		inst.Address = m.Address
	}
	r, err := p.vbox()
	if err != nil {
		inst.State = provider.StateUnknown
		return inst, err
	}
	info, err := p.showVM(ctx, r, id)
	if err != nil {
		inst.State = provider.StateUnknown
		return inst, fmt.Errorf("virtualbox: status of %q: %w", id, err)
	}
	if info == nil || !p.ours(info, node) {
		if _, err := os.Stat(np.Meta); err == nil {
			inst.State = provider.StateError
			inst.Detail = "no VM registered: leftovers of an interrupted create (`clusterctl down " + node + "` removes them)"
		}
		return inst, nil
	}
	inst.State, inst.Detail = mapState(info["VMState"], np.VBoxLog())
	return inst, nil
}

// Delete stops the VM (ACPI power button, then after powerdown_timeout a
// hard power-off), unregisters it with --delete (its disk, settings and
// logs), closes every medium VirtualBox still has registered from the
// node's directory (the seed ISO, a disk a crashed create left unattached)
// and removes the directory. It is idempotent and cleans up a node whose
// Create stopped half-way. A VM of the same name that clusterctl did not
// make is never touched.
func (p *Provider) Delete(ctx context.Context, id string) error {
	node, ok := p.nodeOf(id)
	if !ok {
		return nil
	}
	np := p.paths(node)
	r, err := p.vbox()
	if err != nil {
		if _, statErr := os.Stat(np.Dir); errors.Is(statErr, fs.ErrNotExist) {
			return nil // nothing of ours can exist
		}
		return err
	}
	info, err := p.showVM(ctx, r, id)
	if err != nil {
		return fmt.Errorf("virtualbox: delete %q: %w", id, err)
	}
	if info != nil && p.ours(info, node) {
		if err := p.powerOff(ctx, r, id, info["VMState"]); err != nil {
			return fmt.Errorf("virtualbox: delete %q: %w", id, err)
		}
		if err := p.unregister(ctx, r, id); err != nil && !isNotFound(err) {
			return fmt.Errorf("virtualbox: delete %q: %w", id, err)
		}
	}
	if err := p.closeMedia(ctx, r, np.Dir); err != nil {
		return fmt.Errorf("virtualbox: delete %q: %w", id, err)
	}
	if err := os.RemoveAll(np.Dir); err != nil {
		return fmt.Errorf("virtualbox: delete %q: %w", id, err)
	}
	return nil
}

// powerOff presses the ACPI power button and waits for the guest to shut
// down; after powerdown_timeout it pulls the plug.
func (p *Provider) powerOff(ctx context.Context, r *runner, vm, state string) error {
	switch state {
	case "poweroff", "aborted", "aborted-saved", "saved", "teleported", "":
		return nil
	case "running":
		if _, err := r.run(ctx, "controlvm", vm, "acpipowerbutton"); err == nil {
			deadline := time.Now().Add(p.cfg.PowerdownTimeout)
			for time.Now().Before(deadline) {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(p.pollInterval):
				}
				info, err := p.showVM(ctx, r, vm)
				if err != nil {
					return err
				}
				if info == nil || info["VMState"] == "poweroff" {
					return nil
				}
			}
		}
	}
	if _, err := r.run(ctx, "controlvm", vm, "poweroff"); err != nil {
		// It may have stopped meanwhile.
		if info, e := p.showVM(ctx, r, vm); e == nil && (info == nil || info["VMState"] == "poweroff" || info["VMState"] == "aborted") {
			return nil
		}
		return err
	}
	return nil
}

// unregister runs unregistervm --delete. Right after a power-off the VM
// process may still hold the machine's session for a moment, and VirtualBox
// refuses with VBOX_E_INVALID_OBJECT_STATE, "Cannot unregister the machine
// '...' while it is locked" (Machine::unregister in MachineImpl.cpp); that
// is retried every pollInterval until the session is released, at most for
// unlockTimeout.
func (p *Provider) unregister(ctx context.Context, r *runner, vm string) error {
	deadline := time.Now().Add(p.unlockTimeout)
	for {
		_, err := r.run(ctx, "unregistervm", vm, "--delete")
		if err == nil || !isSessionLocked(err) || !time.Now().Before(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (while VirtualBox still held the VM's session)", ctx.Err())
		case <-time.After(p.pollInterval):
		}
	}
}

// closeMedia closes, and for hard disks deletes, every medium VirtualBox
// has registered from dir.
func (p *Provider) closeMedia(ctx context.Context, r *runner, dir string) error {
	for _, kind := range []struct{ list, close string }{{"hdds", "disk"}, {"dvds", "dvd"}} {
		out, err := r.run(ctx, "list", kind.list)
		if err != nil {
			return err
		}
		recs := parseRecords(out, "UUID")
		// Differencing disks before base disks: VirtualBox refuses to close
		// a medium that still has children.
		sort.SliceStable(recs, func(i, j int) bool { return recs[i]["Parent UUID"] != "base" && recs[j]["Parent UUID"] == "base" })
		for _, rec := range recs {
			loc := rec["Location"]
			if loc == "" || !within(dir, loc) {
				continue
			}
			args := []string{"closemedium", kind.close, rec["UUID"]}
			if kind.close == "disk" {
				args = append(args, "--delete")
			}
			if _, err := r.run(ctx, args...); err != nil {
				return err
			}
		}
	}
	return nil
}

func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, filepath.Clean(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// List returns the VMs of the cluster: every registered VM named
// NODE.CLUSTER whose settings live in that node's directory, and every
// node directory whose create stopped before the VM was registered.
func (p *Provider) List(ctx context.Context, cluster string) ([]provider.Instance, error) {
	if cluster != p.env.Cluster {
		return nil, nil // this provider only sees its own cluster's directory
	}
	seen := map[string]bool{}
	var out []provider.Instance
	r, err := p.vbox()
	if err != nil {
		return nil, err
	}
	vms, err := r.run(ctx, "list", "vms")
	if err != nil {
		return nil, fmt.Errorf("virtualbox: list: %w", err)
	}
	for _, e := range parseVMList(vms) {
		if _, ok := p.nodeOf(e.Name); !ok {
			continue
		}
		inst, err := p.Status(ctx, e.Name)
		if err != nil {
			return out, err
		}
		if inst.State != provider.StateNotFound {
			seen[inst.ID] = true
			out = append(out, inst)
		}
	}
	entries, err := os.ReadDir(localvm.NodesDir(p.env.Dir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return out, fmt.Errorf("virtualbox: list: %w", err)
	}
	for _, e := range entries {
		id := p.vmName(e.Name())
		if !e.IsDir() || !localvm.ValidName(e.Name()) || seen[id] {
			continue
		}
		if _, err := os.Stat(filepath.Join(localvm.NodeDir(p.env.Dir, e.Name()), localvm.FileMeta)); err != nil {
			continue
		}
		inst, err := p.Status(ctx, id)
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

// ConsoleLog returns what the VM wrote to its first serial port (ttyS0),
// which VirtualBox writes to console.log in the node's directory.
func (p *Provider) ConsoleLog(ctx context.Context, id string) ([]byte, error) {
	node, ok := p.nodeOf(id)
	if !ok {
		return nil, fmt.Errorf("virtualbox: console log of %q: %w", id, provider.ErrNotFound)
	}
	return localvm.ConsoleLog(Name, id, p.paths(node).Dir)
}

// ClusterNetwork returns the configured host-only network and the host's
// address in it. It asks VirtualBox nothing: Preflight makes sure the
// host-only network exists with exactly this address before up allocates
// the nodes' addresses in it.
func (p *Provider) ClusterNetwork(ctx context.Context) (netip.Prefix, netip.Addr, error) {
	return p.cfg.Prefix(), p.cfg.Host(), nil
}

// Preflight checks the host and the node specs before anything is made,
// and reports every problem at once: VBoxManage is there and the kernel
// driver loaded, the base image is a VDI (VMDK, VHD), each node's size is
// in range, its address is usable, no VM has its name, cidr is in the
// ranges VirtualBox allows and collides with no network of the host.
// It changes nothing: PrepareNetwork makes the host-only network.
func (p *Provider) Preflight(ctx context.Context, specs []provider.NodeSpec) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(checkImage(p.cfg.Image))
	add(p.checkSpecs(specs))

	r, err := p.vbox()
	if err != nil {
		add(err)
		add(p.checkAllowedRange())
		add(p.checkRoutes("", false))
		return errors.Join(errs...)
	}
	// The Linux wrapper script warns about a missing kernel driver on every
	// call; --version is the cheapest one.
	if out, err := r.run(ctx, "--version"); err != nil {
		add(asInput(err))
	} else if w := driverWarning(out); w != "" {
		add(usererr.BadInput(fixDriver, "virtualbox: the VirtualBox kernel driver is not loaded (/dev/vboxdrv): %s", w))
	}

	if vms, err := r.run(ctx, "list", "vms"); err != nil {
		add(asInput(err))
	} else {
		names := map[string]bool{}
		for _, e := range parseVMList(vms) {
			names[e.Name] = true
		}
		for _, s := range specs {
			vm := p.vmName(s.Name)
			if !names[vm] {
				continue
			}
			info, err := p.showVM(ctx, r, vm)
			switch {
			case err != nil:
				add(asInput(err))
			case info == nil:
			case p.ours(info, s.Name):
				add(usererr.BadInput("remove it first with `clusterctl down "+s.Name+"` (clusterctl's state lost it)", "virtualbox: node %q: its VM %q is still registered", s.Name, vm))
			default:
				add(errForeignVM(vm, info))
			}
		}
	}

	var h hostOnly
	found := false
	if kind, err := p.hostOnlyKind(ctx, r); err != nil {
		add(asInput(err))
	} else {
		h, found, err = p.findHostOnly(ctx, r, kind)
		add(asInput(err))
	}
	if !found {
		add(p.checkAllowedRange())
	}
	add(p.checkRoutes(h.Name, found))
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// HasOutboundNIC implements provider.OutboundNIC: NIC1 is VirtualBox's
// NAT adapter, which network-config must give DHCP.
func (p *Provider) HasOutboundNIC() bool { return true }

// PrepareNetwork finds or creates the host-only network, through which the
// CLI reaches the nodes' API at their addresses on it. up calls it once
// Preflight found nothing wrong.
func (p *Provider) PrepareNetwork(ctx context.Context) error {
	r, err := p.vbox()
	if err != nil {
		return err
	}
	if _, err := p.ensureHostOnly(ctx, r); err != nil {
		return asInput(err)
	}
	return nil
}

// asInput makes a classified VirtualBox failure found during preflight an
// *InputError (exit status 2: nothing was created), keeping its fix.
func asInput(err error) error {
	var ie *usererr.InputError
	if errors.As(err, &ie) {
		return err
	}
	var he *usererr.HintError
	if errors.As(err, &he) {
		return &usererr.InputError{Err: he.Err, Fix: he.Hint}
	}
	return err
}

// driverWarning returns the warning VirtualBox's Linux wrapper prints when
// vboxdrv is not loaded, or "".
func driverWarning(out string) string {
	for _, w := range []string{"The vboxdrv kernel module is not loaded", "The character device /dev/vboxdrv does not exist"} {
		if strings.Contains(out, w) {
			return "VBoxManage warns: " + w
		}
	}
	return ""
}

// checkSpecs checks each node's size, address and MAC.
func (p *Provider) checkSpecs(specs []provider.NodeSpec) error {
	var errs []error
	prefix, host := p.cfg.Prefix(), p.cfg.Host()
	addrs := map[netip.Addr]string{}
	macs := map[string]string{}
	for _, s := range specs {
		if !localvm.ValidName(s.Name) {
			errs = append(errs, usererr.BadInput("use a node name of lower-case letters, digits and dashes", "virtualbox: bad node name %q", s.Name))
			continue
		}
		mem, cpus := s.MemoryMiB, s.CPUs
		if mem == 0 {
			mem = p.cfg.Memory
		}
		if cpus == 0 {
			cpus = p.cfg.CPUs
		}
		errs = append(errs, checkSize(s.Name, mem, cpus)...)
		if n := runtime.NumCPU(); cpus > n && cpus <= MaxCPUs {
			errs = append(errs, usererr.BadInput(fmt.Sprintf("set cpus to at most %d, the number of CPUs of this machine", n),
				"virtualbox: node %q: cpus %d is more than this machine has (%d); VirtualBox will not start the VM", s.Name, cpus, n))
		}
		if a := s.Address; a.IsValid() {
			switch {
			case !prefix.Contains(a):
				errs = append(errs, usererr.BadInput(fmt.Sprintf("choose an address in %s (the virtualbox cidr:)", prefix),
					"virtualbox: node %q: address %s is outside the host-only network %s", s.Name, a, prefix))
			case a == host:
				errs = append(errs, usererr.BadInput(fmt.Sprintf("choose another address in %s; %s is the host's", prefix, host),
					"virtualbox: node %q: address %s is the host's own address", s.Name, a))
			case a == prefix.Addr() || a == localvm.Broadcast(prefix):
				errs = append(errs, usererr.BadInput(fmt.Sprintf("choose a host address in %s", prefix),
					"virtualbox: node %q: address %s is the network's or broadcast address", s.Name, a))
			case addrs[a] != "":
				errs = append(errs, usererr.BadInput("give each node its own address", "virtualbox: nodes %q and %q both ask for address %s", addrs[a], s.Name, a))
			default:
				addrs[a] = s.Name
			}
		}
		if s.MAC != "" {
			if _, err := vboxMAC(s.MAC); err != nil {
				errs = append(errs, usererr.BadInput("use a unicast MAC address like 52:54:00:12:34:56", "virtualbox: node %q: %v", s.Name, err))
			} else if other := macs[s.MAC]; other != "" {
				errs = append(errs, usererr.BadInput("give each node its own MAC address", "virtualbox: nodes %q and %q both ask for MAC %s", other, s.Name, s.MAC))
			} else {
				macs[s.MAC] = s.Name
			}
		}
	}
	return errors.Join(errs...)
}

// DryRun returns the VBoxManage command lines up would run for spec: the
// commands that make the host-only network when it does not exist yet (up
// runs them once, in PrepareNetwork), a line saying which seed ISO it would
// write, and the commands of Create. The lines hold paths, names and sizes,
// never the seed's contents (the gossip key is in it). The host-only
// network is looked up if VirtualBox is installed; nothing is created.
func (p *Provider) DryRun(ctx context.Context, spec provider.NodeSpec) ([]string, error) {
	if err := localvm.CheckName(Name, spec.Name); err != nil {
		return nil, err
	}
	net, makeNet, err := p.dryRunNetwork(ctx)
	if err != nil {
		return nil, err
	}
	pl, err := p.plan(spec, net)
	if err != nil {
		return nil, err
	}
	var lines []string
	if len(makeNet) > 0 {
		lines = append(lines, "# make the host-only network (once per host, before the first node)")
		lines = append(lines, commandLines(makeNet)...)
	}
	lines = append(lines, fmt.Sprintf("# write the NoCloud seed ISO %s (user-data, meta-data, network-config, agent)", shellQuote(pl.Seed)))
	return append(lines, commandLines(pl.commands())...), nil
}

// dryRunNetwork returns the host-only network Create would attach NIC 2
// to, and the commands PrepareNetwork would run to make it (none when it
// exists). Without VirtualBox, the network is taken not to exist, except
// a configured hostonly_name.
func (p *Provider) dryRunNetwork(ctx context.Context) (hostOnly, [][]string, error) {
	kind := "hostonlyif"
	if p.cfg.HostOnly == "hostonlynet" {
		kind = "hostonlynet"
	}
	var r *runner
	if rr, err := p.vbox(); err == nil {
		if k, err := p.hostOnlyKind(ctx, rr); err == nil {
			kind, r = k, rr
		}
	}
	if r != nil {
		h, ok, err := p.findHostOnly(ctx, r, kind)
		if err != nil {
			return h, nil, asInput(err)
		}
		if ok {
			return h, nil, nil
		}
	}
	name := p.cfg.HostOnlyName
	switch {
	case kind == "hostonlynet":
		if name == "" {
			name = defaultNetName
		}
		return hostOnly{Kind: kind, Name: name}, [][]string{p.hostOnlyNetAdd(name)}, nil
	case name != "" && r != nil:
		return hostOnly{}, nil, errNoInterface(name)
	case name != "":
		return hostOnly{Kind: kind, Name: name}, nil, nil
	}
	// VirtualBox names the interface (vboxnetN) when it makes it.
	name = "<new host-only interface " + p.cfg.Host().String() + ">"
	return hostOnly{Kind: kind, Name: name}, [][]string{hostOnlyIfCreate, p.hostOnlyIfIPConfig(name)}, nil
}

// commandLines writes each argument list as a shell command line.
func commandLines(cmds [][]string) []string {
	lines := make([]string, 0, len(cmds))
	for _, args := range cmds {
		q := make([]string, 0, len(args)+1)
		q = append(q, "VBoxManage")
		for _, a := range args {
			q = append(q, shellQuote(a))
		}
		lines = append(lines, strings.Join(q, " "))
	}
	return lines
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

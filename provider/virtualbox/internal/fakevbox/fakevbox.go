// Package fakevbox is a stand-in for VBoxManage that the virtualbox
// provider's tests run instead of VirtualBox, which cannot be installed
// where clusterctl's CI runs.
//
// It follows the syntax of the VirtualBox manual (chapter "VBoxManage") for
// the subcommands the provider uses, and prints what VBoxManage prints: the
// --machinereadable key="value" format, the "Key:   value" records of
// list, progress lines, and failures as "VBoxManage: error:" lines with
// Details and Context lines and exit status 1 (2 for syntax errors).
// Unknown subcommands and options are rejected. It keeps VirtualBox's
// registry (machines, media, host-only networks) in a JSON file in
// $VBOX_USER_HOME, the directory where VirtualBox keeps VirtualBox.xml, under
// a file lock so that concurrent calls behave; it refuses to run without
// that variable, so it never touches a real VirtualBox configuration.
//
// Machines do not execute: startvm sets the state to running and creates
// the serial-port file as VirtualBox does. Conditions of the host that
// VirtualBox reports as errors (no kernel driver, no VT-x, no vboxnetctl,
// the host-only ranges of /etc/vbox/networks.conf) and faults (a transient
// "object is not ready", a VBoxManage killed mid-create) are set by the test
// in $VBOX_USER_HOME/faults.json (see Faults). Every call is appended to
// $VBOX_USER_HOME/calls.jsonl so tests can compare command sequences.
package fakevbox

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Faults describes the host and the failures the fake simulates.
type Faults struct {
	// Version is what --version prints (default "7.0.20r163906").
	Version string `json:"version,omitempty"`
	// NoDriver: the vboxdrv kernel module is not loaded. Like the Linux
	// wrapper script, every call warns on stdout; startvm fails.
	NoDriver bool `json:"no_driver,omitempty"`
	// NoVTx: hardware virtualization is unavailable; startvm fails.
	NoVTx bool `json:"no_vtx,omitempty"`
	// NoNetCtl: /dev/vboxnetctl is missing; hostonlyif create fails.
	NoNetCtl bool `json:"no_netctl,omitempty"`
	// NetworksConf is the path VirtualBox reads allowed host-only ranges
	// from ("" = none: only 192.168.56.0/21 is allowed).
	NetworksConf string `json:"networks_conf,omitempty"`
	// ACPIIgnored: guests do not react to the ACPI power button.
	ACPIIgnored bool `json:"acpi_ignored,omitempty"`
	// Transient maps a subcommand to how many of its next calls fail with
	// "The object is not ready" before it works.
	Transient map[string]int `json:"transient,omitempty"`
	// Kill maps a subcommand to how many of its calls succeed before one
	// is killed (exit status 137, nothing printed, nothing done).
	Kill map[string]int `json:"kill,omitempty"`
	// ErrorExitZero maps a subcommand to an error message it prints as an
	// error: line while exiting with status 0 and doing nothing.
	ErrorExitZero map[string]string `json:"error_exit_zero,omitempty"`
}

// Machine is a registered VM.
type Machine struct {
	Name        string            `json:"name"`
	UUID        string            `json:"uuid"`
	CfgFile     string            `json:"cfg_file"`
	Groups      []string          `json:"groups"`
	OSType      string            `json:"ostype"`
	Memory      int               `json:"memory"`
	CPUs        int               `json:"cpus"`
	IOAPIC      string            `json:"ioapic"`
	RTCUseUTC   string            `json:"rtcuseutc"`
	Boot        [4]string         `json:"boot"`
	NICs        map[string]string `json:"nics"` // modifyvm key (nic2, nictype2, ...) -> value
	UART        map[string]string `json:"uart"` // uart1, uartmode1
	Controllers []*Controller     `json:"controllers"`
	State       string            `json:"state"`
	StateSince  time.Time         `json:"state_since"`
}

// Controller is a storage controller and what is attached to it.
type Controller struct {
	Name      string            `json:"name"`
	Bus       string            `json:"bus"`
	Type      string            `json:"type"`
	PortCount int               `json:"port_count"`
	Bootable  string            `json:"bootable"`
	Attached  map[string]string `json:"attached"` // "port-device" -> medium UUID
}

// Medium is a registered hard disk or DVD image.
type Medium struct {
	UUID     string `json:"uuid"`
	Kind     string `json:"kind"` // "hdd" or "dvd"
	Location string `json:"location"`
	Format   string `json:"format"`
	Parent   string `json:"parent,omitempty"`
}

// HostOnlyIf is a host-only interface (hostonlyif).
type HostOnlyIf struct {
	Name    string `json:"name"`
	IP      string `json:"ip"`
	Netmask string `json:"netmask"`
}

// HostOnlyNet is a host-only network (hostonlynet, VirtualBox 7).
type HostOnlyNet struct {
	Name    string `json:"name"`
	UUID    string `json:"uuid"`
	Netmask string `json:"netmask"`
	LowerIP string `json:"lower_ip"`
	UpperIP string `json:"upper_ip"`
	Enabled bool   `json:"enabled"`
}

// Registry is the fake VirtualBox's persistent state.
type Registry struct {
	Machines     []*Machine     `json:"machines"`
	Media        []*Medium      `json:"media"`
	HostOnlyIfs  []*HostOnlyIf  `json:"hostonlyifs"`
	HostOnlyNets []*HostOnlyNet `json:"hostonlynets"`
	Faults       Faults         `json:"-"`
}

// Files in $VBOX_USER_HOME.
const (
	RegistryFile = "registry.json"
	FaultsFile   = "faults.json"
	CallsFile    = "calls.jsonl"
	lockFile     = "registry.lock"
)

// exit statuses of VBoxManage (RTEXITCODE_*).
const (
	exitOK      = 0
	exitFailure = 1
	exitSyntax  = 2
	exitKilled  = 137
)

// failure is a VBoxManage error: its lines and exit status.
type failure struct {
	lines []string
	code  int
}

func (f *failure) Error() string { return strings.Join(f.lines, "\n") }

// comErr is a COM failure as VBoxManage prints it.
func comErr(msg, code, component, iface, context, file string) *failure {
	hex := map[string]string{
		"NS_ERROR_FAILURE": "0x80004005", "E_ACCESSDENIED": "0x80070005", "E_INVALIDARG": "0x80070057",
		"VBOX_E_OBJECT_NOT_FOUND": "0x80bb0001", "VBOX_E_INVALID_VM_STATE": "0x80bb0002",
		"VBOX_E_FILE_ERROR": "0x80bb0004", "VBOX_E_IPRT_ERROR": "0x80bb0005",
		"VBOX_E_INVALID_OBJECT_STATE": "0x80bb0007", "VBOX_E_OBJECT_IN_USE": "0x80bb000c",
	}[code]
	return &failure{code: exitFailure, lines: []string{
		"VBoxManage: error: " + msg,
		fmt.Sprintf("VBoxManage: error: Details: code %s (%s), component %s, interface %s, callee nsISupports", code, hex, component, iface),
		fmt.Sprintf("VBoxManage: error: Context: %q at line 1 of file %s", context, file),
	}}
}

func syntaxErr(format string, args ...any) *failure {
	return &failure{code: exitSyntax, lines: []string{"VBoxManage: error: " + fmt.Sprintf(format, args...)}}
}

// Main runs one VBoxManage invocation (args without the program name) and
// returns its exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	home := os.Getenv("VBOX_USER_HOME")
	if home == "" {
		fmt.Fprintln(stderr, "VBoxManage: error: fake VBoxManage: VBOX_USER_HOME is not set (refusing to touch a real VirtualBox configuration)")
		return exitFailure
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		fmt.Fprintln(stderr, "VBoxManage: error:", err)
		return exitFailure
	}
	unlock, err := lock(filepath.Join(home, lockFile))
	if err != nil {
		fmt.Fprintln(stderr, "VBoxManage: error:", err)
		return exitFailure
	}
	defer unlock()
	logCall(home, args)

	reg, err := load(home)
	if err != nil {
		fmt.Fprintln(stderr, "VBoxManage: error: fake VBoxManage: registry:", err)
		return exitFailure
	}
	if reg.Faults.NoDriver {
		fmt.Fprint(stdout, driverWarning)
	}
	verb := ""
	if len(args) > 0 {
		verb = args[0]
	}
	// Faults that stop the call before it does anything.
	if n, ok := reg.Faults.Kill[verb]; ok {
		if n == 0 {
			delete(reg.Faults.Kill, verb)
			_ = saveFaults(home, reg.Faults)
			return exitKilled
		}
		reg.Faults.Kill[verb] = n - 1
		_ = saveFaults(home, reg.Faults)
	}
	if n := reg.Faults.Transient[verb]; n > 0 {
		reg.Faults.Transient[verb] = n - 1
		_ = saveFaults(home, reg.Faults)
		f := comErr("The object is not ready", "E_ACCESSDENIED", "SessionMachine", "IMachine", "LockMachine(a->session, LockType_Write)", "VBoxManage.cpp")
		fmt.Fprintln(stderr, f.Error())
		return f.code
	}
	if msg, ok := reg.Faults.ErrorExitZero[verb]; ok {
		fmt.Fprintln(stderr, "VBoxManage: error: "+msg)
		return exitOK
	}

	out, err := dispatch(reg, args)
	fmt.Fprint(stdout, out)
	if err != nil {
		var f *failure
		if !errors.As(err, &f) {
			f = &failure{code: exitFailure, lines: []string{"VBoxManage: error: " + err.Error()}}
		}
		fmt.Fprintln(stderr, f.Error())
		return f.code
	}
	if err := save(home, reg); err != nil {
		fmt.Fprintln(stderr, "VBoxManage: error: fake VBoxManage: registry:", err)
		return exitFailure
	}
	return exitOK
}

const driverWarning = `WARNING: The vboxdrv kernel module is not loaded. Either there is no module
         available for the current kernel (6.1.0-fake-amd64) or it failed to
         load. Please recompile the kernel module and install it by

           sudo /sbin/vboxconfig

         You will not be able to start VMs until this problem is fixed.
`

func dispatch(reg *Registry, args []string) (string, error) {
	if len(args) == 0 {
		return "", syntaxErr("No command given")
	}
	rest := args[1:]
	switch args[0] {
	case "--version", "-v", "-version":
		if len(rest) > 0 {
			return "", syntaxErr("Unknown option: %s", rest[0])
		}
		v := reg.Faults.Version
		if v == "" {
			v = "7.0.20r163906"
		}
		return v + "\n", nil
	case "list":
		return cmdList(reg, rest)
	case "showvminfo":
		return cmdShowVMInfo(reg, rest)
	case "createvm":
		return cmdCreateVM(reg, rest)
	case "modifyvm":
		return cmdModifyVM(reg, rest)
	case "storagectl":
		return cmdStorageCtl(reg, rest)
	case "storageattach":
		return cmdStorageAttach(reg, rest)
	case "startvm":
		return cmdStartVM(reg, rest)
	case "controlvm":
		return cmdControlVM(reg, rest)
	case "unregistervm":
		return cmdUnregisterVM(reg, rest)
	case "clonemedium", "clonehd", "clonevdi":
		return cmdCloneMedium(reg, rest)
	case "createmedium", "createhd", "createvdi":
		return cmdCreateMedium(reg, rest)
	case "closemedium":
		return cmdCloseMedium(reg, rest)
	case "hostonlyif":
		return cmdHostOnlyIf(reg, rest)
	case "hostonlynet":
		return cmdHostOnlyNet(reg, rest)
	}
	return "", syntaxErr("Invalid command '%s'", args[0])
}

// --- option parsing -------------------------------------------------------

// opts parses "--opt value", "--opt=value" and bare flags. spec maps an
// option (or a pattern with N for a digit run, e.g. "--nicN") to its number
// of values. Positional arguments are returned in order.
type parsed struct {
	vals map[string][]string
	pos  []string
	ord  []string // options in the order given
}

// machineOpts parses "VM --option value ...": the machine named first, then
// options only (no positional arguments), as storagectl and storageattach
// take them.
func machineOpts(r *Registry, args []string, spec map[string]int) (*Machine, parsed, error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return nil, parsed{}, syntaxErr("Not enough parameters")
	}
	m, err := r.machine(args[0])
	if err != nil {
		return nil, parsed{}, err
	}
	p, err := parseOpts(args[1:], spec)
	if err != nil {
		return nil, parsed{}, err
	}
	if len(p.pos) > 0 {
		return nil, parsed{}, syntaxErr("Invalid parameter '%s'", p.pos[0])
	}
	return m, p, nil
}

func parseOpts(args []string, spec map[string]int) (parsed, error) {
	p := parsed{vals: map[string][]string{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			p.pos = append(p.pos, a)
			continue
		}
		name, inline, hasInline := strings.Cut(a, "=")
		n, ok := lookupSpec(spec, name)
		if !ok {
			return p, syntaxErr("Unknown option: %s", name)
		}
		var vals []string
		if hasInline {
			if n == 0 {
				return p, syntaxErr("Option %s takes no value", name)
			}
			vals = append(vals, inline)
			n--
		}
		for ; n > 0; n-- {
			i++
			if i >= len(args) {
				return p, syntaxErr("Missing value for option %s", name)
			}
			vals = append(vals, args[i])
		}
		p.vals[name] = vals
		p.ord = append(p.ord, name)
	}
	return p, nil
}

var digits = regexp.MustCompile(`[0-9]+$`)

func lookupSpec(spec map[string]int, name string) (int, bool) {
	if n, ok := spec[name]; ok {
		return n, true
	}
	if d := digits.FindString(name); d != "" {
		if n, ok := spec[strings.TrimSuffix(name, d)+"N"]; ok {
			if i, _ := strconv.Atoi(d); i >= 1 && i <= 8 {
				return n, true
			}
		}
	}
	return 0, false
}

func (p parsed) has(k string) bool { _, ok := p.vals[k]; return ok }
func (p parsed) get(k string) string {
	if v := p.vals[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func onOff(opt, v string) error {
	if v != "on" && v != "off" {
		return syntaxErr("Invalid %s argument '%s'", opt, v)
	}
	return nil
}

func atoi(opt, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, syntaxErr("Invalid %s argument '%s'", opt, v)
	}
	return n, nil
}

// --- machines -------------------------------------------------------------

func (r *Registry) machine(nameOrUUID string) (*Machine, error) {
	for _, m := range r.Machines {
		if m.Name == nameOrUUID || m.UUID == nameOrUUID {
			return m, nil
		}
	}
	return nil, comErr(fmt.Sprintf("Could not find a registered machine named '%s'", nameOrUUID),
		"VBOX_E_OBJECT_NOT_FOUND", "VirtualBoxWrap", "IVirtualBox", "FindMachine(Bstr(VMNameOrUuid).raw(), machine.asOutParam())", "VBoxManageInfo.cpp")
}

func running(m *Machine) bool { return m.State == "running" || m.State == "paused" }

func errLocked(m *Machine) error {
	return comErr(fmt.Sprintf("The machine '%s' is already locked for a session (or being unlocked)", m.Name),
		"VBOX_E_INVALID_OBJECT_STATE", "MachineWrap", "IMachine", "LockMachine(a->session, LockType_Write)", "VBoxManageModifyVM.cpp")
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

var osTypes = map[string]string{
	"Debian_64": "Debian (64-bit)", "Debian12_64": "Debian 12 Bookworm (64-bit)", "Ubuntu_64": "Ubuntu (64-bit)",
	"Ubuntu22_LTS_64": "Ubuntu 22.04 LTS (Jammy Jellyfish) (64-bit)", "Linux_64": "Other Linux (64-bit)", "Other": "Other/Unknown",
}

func cmdCreateVM(r *Registry, args []string) (string, error) {
	p, err := parseOpts(args, map[string]int{"--name": 1, "--groups": 1, "--ostype": 1, "--basefolder": 1, "--register": 0, "--uuid": 1, "--default": 0})
	if err != nil {
		return "", err
	}
	if len(p.pos) > 0 {
		return "", syntaxErr("Invalid parameter '%s'", p.pos[0])
	}
	name := p.get("--name")
	if name == "" {
		return "", syntaxErr("Parameter --name is required")
	}
	ostype := p.get("--ostype")
	if ostype == "" {
		ostype = "Other"
	}
	if _, ok := osTypes[ostype]; !ok {
		return "", comErr(fmt.Sprintf("Guest OS type '%s' is invalid", ostype), "E_INVALIDARG", "VirtualBoxWrap", "IVirtualBox",
			"CreateMachine(bstrSettingsFile.raw(), Bstr(pszName).raw(), ...)", "VBoxManageMisc.cpp")
	}
	base := p.get("--basefolder")
	if base == "" {
		base = filepath.Join(os.Getenv("VBOX_USER_HOME"), "VirtualBox VMs")
	}
	cfg := filepath.Join(base, name, name+".vbox")
	if _, err := os.Stat(cfg); err == nil {
		return "", comErr(fmt.Sprintf("Machine settings file '%s' already exists", cfg), "VBOX_E_FILE_ERROR", "MachineWrap", "IMachine",
			"CreateMachine(bstrSettingsFile.raw(), Bstr(pszName).raw(), ...)", "VBoxManageMisc.cpp")
	}
	var groups []string
	if g := p.get("--groups"); g != "" {
		for _, s := range strings.Split(g, ",") {
			if !strings.HasPrefix(s, "/") {
				return "", comErr(fmt.Sprintf("Invalid machine group '%s'", s), "E_INVALIDARG", "MachineWrap", "IMachine", "CreateMachine", "VBoxManageMisc.cpp")
			}
			groups = append(groups, s)
		}
	} else {
		groups = []string{"/"}
	}
	m := &Machine{Name: name, UUID: p.get("--uuid"), CfgFile: cfg, Groups: groups, OSType: ostype, Memory: 128, CPUs: 1,
		IOAPIC: "on", RTCUseUTC: "off", Boot: [4]string{"floppy", "dvd", "disk", "none"},
		NICs: map[string]string{"nic1": "nat", "nictype1": "82540EM"}, UART: map[string]string{},
		State: "poweroff", StateSince: time.Now().UTC()}
	if m.UUID == "" {
		m.UUID = newUUID()
	}
	if err := os.MkdirAll(filepath.Dir(cfg), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(cfg, []byte("<?xml version=\"1.0\"?>\n<!-- fake VBoxManage settings of "+name+" -->\n"), 0o600); err != nil {
		return "", err
	}
	var b strings.Builder
	if p.has("--register") {
		for _, o := range r.Machines {
			if o.UUID == m.UUID {
				return "", comErr(fmt.Sprintf("Trying to open a VM config '%s' which has the same UUID as an existing virtual machine", cfg),
					"VBOX_E_OBJECT_IN_USE", "VirtualBoxWrap", "IVirtualBox", "RegisterMachine(machine)", "VBoxManageMisc.cpp")
			}
		}
		r.Machines = append(r.Machines, m)
		fmt.Fprintf(&b, "Virtual machine '%s' is created and registered.\n", name)
	} else {
		fmt.Fprintf(&b, "Virtual machine '%s' is created.\n", name)
	}
	fmt.Fprintf(&b, "UUID: %s\nSettings file: '%s'\n", m.UUID, cfg)
	return b.String(), nil
}

var nicTypes = map[string]bool{"Am79C970A": true, "Am79C973": true, "Am79C960": true, "82540EM": true, "82543GC": true, "82545EM": true, "virtio": true}
var nicModes = map[string]bool{"none": true, "null": true, "nat": true, "natnetwork": true, "bridged": true, "intnet": true, "hostonly": true, "hostonlynet": true, "generic": true, "cloud": true}
var macRE = regexp.MustCompile(`^[0-9A-Fa-f]{12}$`)

func cmdModifyVM(r *Registry, args []string) (string, error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", syntaxErr("Not enough parameters")
	}
	m, err := r.machine(args[0])
	if err != nil {
		return "", err
	}
	spec := map[string]int{
		"--name": 1, "--ostype": 1, "--memory": 1, "--cpus": 1, "--ioapic": 1, "--rtcuseutc": 1,
		"--bootN": 1, "--nicN": 1, "--nictypeN": 1, "--hostonlyadapterN": 1, "--host-only-adapterN": 1,
		"--host-only-netN": 1, "--macaddressN": 1, "--cableconnectedN": 1, "--uartN": 2, "--uartmodeN": 1,
		"--description": 1, "--groups": 1,
	}
	// --uartN takes "off" or "IO IRQ"; --uartmodeN takes one value, or two for file/server/client/tcp*.
	var fixed []string
	for i := 1; i < len(args); i++ {
		a := args[i]
		fixed = append(fixed, a)
		if strings.HasPrefix(a, "--uart") && !strings.HasPrefix(a, "--uartmode") && i+1 < len(args) && args[i+1] == "off" {
			fixed = append(fixed, "off", "")
			i++
		}
		if strings.HasPrefix(a, "--uartmode") && i+1 < len(args) {
			switch args[i+1] {
			case "file", "server", "client", "tcpserver", "tcpclient":
				if i+2 < len(args) {
					fixed = append(fixed, args[i+1]+","+args[i+2])
					i += 2
				}
			}
		}
	}
	p, err := parseOpts(fixed, spec)
	if err != nil {
		return "", err
	}
	if len(p.pos) > 0 {
		return "", syntaxErr("Invalid parameter '%s'", p.pos[0])
	}
	if running(m) {
		return "", errLocked(m)
	}
	for _, o := range p.ord {
		v := p.vals[o]
		d := digits.FindString(o)
		base := strings.TrimSuffix(o, d)
		switch base {
		case "--name":
			m.Name = v[0]
		case "--ostype":
			if _, ok := osTypes[v[0]]; !ok {
				return "", comErr(fmt.Sprintf("Guest OS type '%s' is invalid", v[0]), "E_INVALIDARG", "MachineWrap", "IMachine", "COMSETTER(OSTypeId)", "VBoxManageModifyVM.cpp")
			}
			m.OSType = v[0]
		case "--memory":
			n, err := atoi(o, v[0])
			if err != nil {
				return "", err
			}
			if n < 4 || n > 2097152 {
				return "", comErr(fmt.Sprintf("Invalid RAM size: %d MB (must be in range [4, 2097152] MB)", n), "E_INVALIDARG", "MachineWrap", "IMachine", "COMSETTER(MemorySize)(ValueUnion.u32)", "VBoxManageModifyVM.cpp")
			}
			m.Memory = n
		case "--cpus":
			n, err := atoi(o, v[0])
			if err != nil {
				return "", err
			}
			if n < 1 || n > 64 {
				return "", comErr(fmt.Sprintf("Invalid virtual CPU count: %d (must be in range [1, 64])", n), "E_INVALIDARG", "MachineWrap", "IMachine", "COMSETTER(CPUCount)(ValueUnion.u32)", "VBoxManageModifyVM.cpp")
			}
			m.CPUs = n
		case "--ioapic", "--rtcuseutc":
			if err := onOff(o, v[0]); err != nil {
				return "", err
			}
			if base == "--ioapic" {
				m.IOAPIC = v[0]
			} else {
				m.RTCUseUTC = v[0]
			}
		case "--boot":
			i, _ := strconv.Atoi(d)
			if i < 1 || i > 4 {
				return "", syntaxErr("Invalid boot slot number in '%s'", o)
			}
			switch v[0] {
			case "none", "floppy", "dvd", "disk", "net":
			default:
				return "", syntaxErr("Invalid boot device '%s'", v[0])
			}
			m.Boot[i-1] = v[0]
		case "--nic":
			if !nicModes[v[0]] {
				return "", syntaxErr("Invalid type '%s' specfied for NIC %s", v[0], d)
			}
			m.NICs["nic"+d] = v[0]
		case "--nictype":
			if !nicTypes[v[0]] {
				return "", syntaxErr("Invalid NIC type '%s' specified for NIC %s", v[0], d)
			}
			m.NICs["nictype"+d] = v[0]
		case "--hostonlyadapter", "--host-only-adapter":
			m.NICs["hostonlyadapter"+d] = v[0]
		case "--host-only-net":
			m.NICs["hostonly-network"+d] = v[0]
		case "--macaddress":
			if v[0] != "auto" && !macRE.MatchString(v[0]) {
				return "", comErr(fmt.Sprintf("Invalid MAC address format '%s'", v[0]), "E_INVALIDARG", "NetworkAdapterWrap", "INetworkAdapter", "COMSETTER(MACAddress)", "VBoxManageModifyVM.cpp")
			}
			m.NICs["macaddress"+d] = strings.ToUpper(v[0])
		case "--cableconnected":
			if err := onOff(o, v[0]); err != nil {
				return "", err
			}
			m.NICs["cableconnected"+d] = v[0]
		case "--uart":
			if v[0] == "off" {
				m.UART["uart"+d] = "off"
				continue
			}
			io, err1 := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(v[0]), "0x"), 16, 16)
			irq, err2 := strconv.Atoi(v[1])
			if err1 != nil || err2 != nil || irq > 255 {
				return "", syntaxErr("Invalid --uart%s arguments '%s %s'", d, v[0], v[1])
			}
			m.UART["uart"+d] = fmt.Sprintf("0x%04x,%d", io, irq)
		case "--uartmode":
			mode, path, _ := strings.Cut(v[0], ",")
			switch mode {
			case "disconnected":
			case "file", "server", "client", "tcpserver", "tcpclient":
				if path == "" {
					return "", syntaxErr("Missing argument to --uartmode%s %s", d, mode)
				}
			default:
				if !strings.HasPrefix(mode, "/") {
					return "", syntaxErr("Invalid --uartmode%s argument '%s'", d, mode)
				}
			}
			m.UART["uartmode"+d] = v[0]
		case "--description", "--groups":
		}
	}
	return "", nil
}

var buses = map[string]string{"ide": "PIIX4", "sata": "IntelAhci", "scsi": "LsiLogic", "sas": "LsiLogicSas", "floppy": "I82078", "usb": "USB", "pcie": "NVMe", "virtio": "VirtIO"}
var ctlTypes = map[string]string{"PIIX3": "ide", "PIIX4": "ide", "ICH6": "ide", "IntelAhci": "sata", "LSILogic": "scsi", "LsiLogic": "scsi", "BusLogic": "scsi", "LSILogicSAS": "sas", "LsiLogicSas": "sas", "I82078": "floppy", "USB": "usb", "NVMe": "pcie", "VirtIO": "virtio"}

func cmdStorageCtl(r *Registry, args []string) (string, error) {
	m, p, err := machineOpts(r, args, map[string]int{"--name": 1, "--add": 1, "--controller": 1, "--portcount": 1, "--hostiocache": 1, "--bootable": 1, "--remove": 0, "--rename": 1})
	if err != nil {
		return "", err
	}
	name := p.get("--name")
	if name == "" {
		return "", syntaxErr("Storage controller name not specified")
	}
	if running(m) {
		return "", errLocked(m)
	}
	if p.has("--remove") {
		for i, c := range m.Controllers {
			if c.Name == name {
				m.Controllers = append(m.Controllers[:i], m.Controllers[i+1:]...)
				return "", nil
			}
		}
		return "", comErr(fmt.Sprintf("Could not find a storage controller named '%s'", name), "VBOX_E_OBJECT_NOT_FOUND", "SessionMachine", "IMachine", "RemoveStorageController", "VBoxManageStorageController.cpp")
	}
	bus := p.get("--add")
	typ, ok := buses[bus]
	if !ok {
		return "", syntaxErr("Invalid --add argument '%s'", bus)
	}
	if c := p.get("--controller"); c != "" {
		if ctlTypes[c] != bus {
			return "", syntaxErr("Invalid --controller argument '%s'", c)
		}
		typ = c
	}
	for _, c := range m.Controllers {
		if c.Name == name {
			return "", comErr(fmt.Sprintf("Storage controller named '%s' already exists", name), "VBOX_E_OBJECT_IN_USE", "SessionMachine", "IMachine", "AddStorageController", "VBoxManageStorageController.cpp")
		}
	}
	ports := 1
	if bus == "ide" {
		ports = 2
	}
	if v := p.get("--portcount"); v != "" {
		if ports, err = atoi("--portcount", v); err != nil {
			return "", err
		}
	}
	bootable := "on"
	if v := p.get("--bootable"); v != "" {
		if err := onOff("--bootable", v); err != nil {
			return "", err
		}
		bootable = v
	}
	m.Controllers = append(m.Controllers, &Controller{Name: name, Bus: bus, Type: typ, PortCount: ports, Bootable: bootable, Attached: map[string]string{}})
	return "", nil
}

func cmdStorageAttach(r *Registry, args []string) (string, error) {
	m, p, err := machineOpts(r, args, map[string]int{"--storagectl": 1, "--port": 1, "--device": 1, "--type": 1, "--medium": 1, "--mtype": 1, "--nonrotational": 1, "--discard": 1})
	if err != nil {
		return "", err
	}
	if running(m) {
		return "", errLocked(m)
	}
	var ctl *Controller
	for _, c := range m.Controllers {
		if c.Name == p.get("--storagectl") {
			ctl = c
		}
	}
	if ctl == nil {
		return "", comErr(fmt.Sprintf("Could not find a controller named '%s'", p.get("--storagectl")), "VBOX_E_OBJECT_NOT_FOUND", "SessionMachine", "IMachine", "GetStorageControllerByName", "VBoxManageStorageController.cpp")
	}
	port, err := atoi("--port", p.get("--port"))
	if err != nil {
		return "", err
	}
	dev, err := atoi("--device", p.get("--device"))
	if err != nil {
		return "", err
	}
	if port >= ctl.PortCount || dev != 0 && ctl.Bus != "ide" {
		return "", comErr(fmt.Sprintf("The port and/or device parameter are out of range: port=%d (must be in range [0, %d]), device=%d", port, ctl.PortCount-1, dev),
			"E_INVALIDARG", "SessionMachine", "IMachine", "AttachDevice", "VBoxManageStorageController.cpp")
	}
	slot := fmt.Sprintf("%d-%d", port, dev)
	medium := p.get("--medium")
	if medium == "none" {
		delete(ctl.Attached, slot)
		return "", nil
	}
	var kind string
	switch p.get("--type") {
	case "hdd":
		kind = "hdd"
	case "dvddrive":
		kind = "dvd"
	case "fdd":
		kind = "fdd"
	default:
		return "", syntaxErr("Invalid --type argument '%s'", p.get("--type"))
	}
	if ctl.Bus == "pcie" && kind != "hdd" {
		return "", comErr("NVMe controllers only support hard disks", "E_INVALIDARG", "SessionMachine", "IMachine", "AttachDevice", "VBoxManageStorageController.cpp")
	}
	if medium == "" {
		return "", syntaxErr("Missing --medium argument")
	}
	med, err := r.open(kind, medium)
	if err != nil {
		return "", err
	}
	if kind == "hdd" {
		for _, o := range r.Machines {
			for _, c := range o.Controllers {
				for s, u := range c.Attached {
					if u == med.UUID && (o != m || c != ctl || s != slot) {
						return "", comErr(fmt.Sprintf("Medium '%s' is already attached to virtual machine '%s'", med.Location, o.Name),
							"VBOX_E_OBJECT_IN_USE", "SessionMachine", "IMachine", "AttachDevice", "VBoxManageStorageController.cpp")
					}
				}
			}
		}
	}
	ctl.Attached[slot] = med.UUID
	return "", nil
}

// --- media ----------------------------------------------------------------

func (r *Registry) medium(kind, ref string) *Medium {
	for _, md := range r.Media {
		if md.Kind == kind && (md.UUID == ref || md.Location == ref) {
			return md
		}
	}
	return nil
}

// open finds a registered medium or opens (registers) the file, as
// VirtualBox does when a command names a medium by path.
func (r *Registry) open(kind, ref string) (*Medium, error) {
	if md := r.medium(kind, ref); md != nil {
		return md, nil
	}
	if !filepath.IsAbs(ref) {
		if md := r.mediumByUUID(ref); md != nil {
			return nil, comErr(fmt.Sprintf("Medium '%s' is a %s, not a %s", md.Location, md.Kind, kind), "E_INVALIDARG", "VirtualBoxWrap", "IVirtualBox", "OpenMedium", "VBoxManageDisk.cpp")
		}
		abs, err := filepath.Abs(ref)
		if err != nil {
			return nil, err
		}
		ref = abs
		if md := r.medium(kind, ref); md != nil {
			return md, nil
		}
	}
	if _, err := os.Stat(ref); err != nil {
		return nil, comErr(fmt.Sprintf("Could not find file for the medium '%s' (VERR_FILE_NOT_FOUND)", ref), "VBOX_E_FILE_ERROR", "MediumWrap", "IMedium",
			"OpenMedium(Bstr(pszFilenameOrUuid).raw(), enmDevType, enmAccessMode, fForceNewUuidOnOpen, pMedium.asOutParam())", "VBoxManageDisk.cpp")
	}
	format := "RAW"
	if kind == "hdd" {
		var err error
		if format, err = DiskFormat(ref); err != nil {
			return nil, comErr(fmt.Sprintf("Could not get the storage format of the medium '%s' (VERR_NOT_SUPPORTED)", ref), "VBOX_E_IPRT_ERROR", "MediumWrap", "IMedium",
				"OpenMedium(Bstr(pszFilenameOrUuid).raw(), enmDevType, enmAccessMode, fForceNewUuidOnOpen, pMedium.asOutParam())", "VBoxManageDisk.cpp")
		}
	}
	md := &Medium{UUID: newUUID(), Kind: kind, Location: ref, Format: format}
	r.Media = append(r.Media, md)
	return md, nil
}

func (r *Registry) mediumByUUID(u string) *Medium {
	for _, md := range r.Media {
		if md.UUID == u {
			return md
		}
	}
	return nil
}

// DiskFormat returns the VirtualBox format name of a disk image file by its
// header, or an error for files VirtualBox has no backend for (raw files
// without a .img extension, and qcow2 here: VirtualBox's QCOW backend does
// not read the compressed clusters cloud images use).
func DiskFormat(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case n >= 68 && binary.LittleEndian.Uint32(head[64:68]) == VDISignature:
		return "VDI", nil
	case strings.HasPrefix(string(head), "KDMV"), strings.HasPrefix(string(head), "# Disk DescriptorFile"):
		return "VMDK", nil
	case strings.HasPrefix(string(head), "conectix"):
		return "VHD", nil
	}
	return "", errors.New("unknown format")
}

// VDISignature is the signature at offset 64 of a VDI header.
const VDISignature = 0xbeda107f

// WriteVDI writes a minimal VDI header of the given virtual size, as the
// fake's createmedium does and as tests use for a base image.
func WriteVDI(path string, parent string, size int64) error {
	h := make([]byte, 512)
	copy(h, "<<< Oracle VM VirtualBox Disk Image >>>\n")
	binary.LittleEndian.PutUint32(h[64:], VDISignature)
	binary.LittleEndian.PutUint32(h[68:], 0x00010001)
	typ := uint32(1) // dynamic
	if parent != "" {
		typ = 4 // differencing
	}
	binary.LittleEndian.PutUint32(h[76:], typ)
	binary.LittleEndian.PutUint64(h[368:], uint64(size))
	return os.WriteFile(path, h, 0o600)
}

func mediumKind(s string) (string, bool) {
	switch s {
	case "disk":
		return "hdd", true
	case "dvd":
		return "dvd", true
	case "floppy":
		return "fdd", true
	}
	return "", false
}

func cmdCloneMedium(r *Registry, args []string) (string, error) {
	kind := "hdd"
	if len(args) > 0 {
		if k, ok := mediumKind(args[0]); ok {
			kind, args = k, args[1:]
		}
	}
	p, err := parseOpts(args, map[string]int{"--format": 1, "--variant": 1, "--existing": 0})
	if err != nil {
		return "", err
	}
	if len(p.pos) != 2 {
		return "", syntaxErr("Mandatory UUID or input file parameter missing")
	}
	format := p.get("--format")
	if format == "" {
		format = "VDI"
	}
	switch format {
	case "VDI", "VMDK", "VHD", "RAW":
	default:
		return "", syntaxErr("Invalid format '%s'", format)
	}
	src, err := r.open(kind, p.pos[0])
	if err != nil {
		return "", err
	}
	dst, err := filepath.Abs(p.pos[1])
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(dst); err == nil && !p.has("--existing") {
		return "", comErr(fmt.Sprintf("Cannot create the clone medium '%s' because a file with this name already exists (VERR_ALREADY_EXISTS)", dst),
			"VBOX_E_FILE_ERROR", "MediumWrap", "IMedium", "CloneTo(pDstMedium, ComSafeArrayAsInParam(l_variants), NULL, pProgress.asOutParam())", "VBoxManageDisk.cpp")
	}
	if err := copyFile(src.Location, dst); err != nil {
		return "", comErr(fmt.Sprintf("Could not create the clone medium '%s' (%v)", dst, err), "VBOX_E_FILE_ERROR", "MediumWrap", "IMedium", "CloneTo", "VBoxManageDisk.cpp")
	}
	md := &Medium{UUID: newUUID(), Kind: kind, Location: dst, Format: format}
	r.Media = append(r.Media, md)
	return progress + fmt.Sprintf("Clone medium created in format '%s'. UUID: %s\n", format, md.UUID), nil
}

const progress = "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%\n"

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func cmdCreateMedium(r *Registry, args []string) (string, error) {
	kind := "hdd"
	if len(args) > 0 {
		if k, ok := mediumKind(args[0]); ok {
			kind, args = k, args[1:]
		}
	}
	p, err := parseOpts(args, map[string]int{"--filename": 1, "--size": 1, "--sizebyte": 1, "--diffparent": 1, "--format": 1, "--variant": 1})
	if err != nil {
		return "", err
	}
	if len(p.pos) > 0 {
		return "", syntaxErr("Invalid parameter '%s'", p.pos[0])
	}
	if kind != "hdd" {
		return "", syntaxErr("Only hard disks can be created")
	}
	fn := p.get("--filename")
	if fn == "" {
		return "", syntaxErr("Parameters --filename is required")
	}
	fn, _ = filepath.Abs(fn)
	format := p.get("--format")
	if format == "" {
		format = "VDI"
	}
	if format != "VDI" {
		return "", syntaxErr("Invalid format '%s' (the fake makes VDI only)", format)
	}
	var parent *Medium
	var size int64
	if dp := p.get("--diffparent"); dp != "" {
		if p.has("--size") || p.has("--sizebyte") {
			return "", syntaxErr("Differencing images take the size of their parent; --size is not allowed")
		}
		if parent, err = r.open("hdd", dp); err != nil {
			return "", err
		}
	} else {
		mb, err := atoi("--size", p.get("--size"))
		if err != nil || mb == 0 {
			return "", syntaxErr("Parameter --size is required")
		}
		size = int64(mb) << 20
	}
	if _, err := os.Stat(fn); err == nil {
		return "", comErr(fmt.Sprintf("Failed to create medium\nVBoxManage: error: Could not create the medium storage unit '%s'.\nVBoxManage: error: VDI: cannot create image '%s' (VERR_ALREADY_EXISTS)", fn, fn),
			"VBOX_E_FILE_ERROR", "MediumWrap", "IMedium", "RTEXITCODE handleCreateMedium(HandlerArg *)", "VBoxManageDisk.cpp")
	}
	md := &Medium{UUID: newUUID(), Kind: "hdd", Location: fn, Format: format}
	if parent != nil {
		md.Parent = parent.UUID
	}
	if err := WriteVDI(fn, md.Parent, size); err != nil {
		return "", err
	}
	r.Media = append(r.Media, md)
	return progress + fmt.Sprintf("Medium created. UUID: %s\n", md.UUID), nil
}

func (r *Registry) attachedTo(u string) []*Machine {
	var out []*Machine
	for _, m := range r.Machines {
		for _, c := range m.Controllers {
			for _, a := range c.Attached {
				if a == u {
					out = append(out, m)
				}
			}
		}
	}
	return out
}

func (r *Registry) children(u string) int {
	n := 0
	for _, md := range r.Media {
		if md.Parent == u {
			n++
		}
	}
	return n
}

func (r *Registry) removeMedium(u string) {
	for i, md := range r.Media {
		if md.UUID == u {
			r.Media = append(r.Media[:i], r.Media[i+1:]...)
			return
		}
	}
}

func cmdCloseMedium(r *Registry, args []string) (string, error) {
	kind := "hdd"
	if len(args) > 0 {
		if k, ok := mediumKind(args[0]); ok {
			kind, args = k, args[1:]
		}
	}
	p, err := parseOpts(args, map[string]int{"--delete": 0})
	if err != nil {
		return "", err
	}
	if len(p.pos) != 1 {
		return "", syntaxErr("Mandatory UUID or input file parameter missing")
	}
	ref := p.pos[0]
	if filepath.IsAbs(ref) || strings.ContainsRune(ref, '/') {
		ref, _ = filepath.Abs(ref)
	}
	md := r.medium(kind, ref)
	if md == nil {
		// VirtualBox opens the file to close it; a missing one is an error.
		return "", comErr(fmt.Sprintf("Could not find file for the medium '%s' (VERR_FILE_NOT_FOUND)", ref), "VBOX_E_FILE_ERROR", "MediumWrap", "IMedium", "OpenMedium", "VBoxManageDisk.cpp")
	}
	if ms := r.attachedTo(md.UUID); len(ms) > 0 {
		return "", comErr(fmt.Sprintf("Cannot close medium '%s' because it is still attached to %d virtual machines", md.Location, len(ms)),
			"VBOX_E_OBJECT_IN_USE", "MediumWrap", "IMedium", "Close()", "VBoxManageDisk.cpp")
	}
	if n := r.children(md.UUID); n > 0 {
		return "", comErr(fmt.Sprintf("Cannot close medium '%s' because it has %d child media", md.Location, n),
			"VBOX_E_OBJECT_IN_USE", "MediumWrap", "IMedium", "Close()", "VBoxManageDisk.cpp")
	}
	out := ""
	if p.has("--delete") {
		if kind != "hdd" {
			return "", comErr("Only hard disk images can be deleted", "E_INVALIDARG", "MediumWrap", "IMedium", "DeleteStorage", "VBoxManageDisk.cpp")
		}
		if err := os.Remove(md.Location); err != nil && !os.IsNotExist(err) {
			return "", err
		}
		out = progress
	}
	r.removeMedium(md.UUID)
	return out, nil
}

// --- running machines -----------------------------------------------------

func cmdStartVM(r *Registry, args []string) (string, error) {
	p, err := parseOpts(args, map[string]int{"--type": 1, "--putenv": 1, "-E": 1})
	if err != nil {
		return "", err
	}
	if len(p.pos) == 0 {
		return "", syntaxErr("VM name required")
	}
	switch p.get("--type") {
	case "", "gui", "headless", "sdl", "separate":
	default:
		return "", syntaxErr("Invalid session type '%s'", p.get("--type"))
	}
	var out strings.Builder
	for _, name := range p.pos {
		m, err := r.machine(name)
		if err != nil {
			return out.String(), err
		}
		if running(m) {
			return out.String(), comErr(fmt.Sprintf("The machine '%s' is already locked by a session (or being locked or unlocked)", m.Name),
				"VBOX_E_INVALID_OBJECT_STATE", "MachineWrap", "IMachine", "LaunchVMProcess(a->session, sessionType.raw(), ComSafeArrayAsInParam(aBstrEnv), progress.asOutParam())", "VBoxManageMisc.cpp")
		}
		fmt.Fprintf(&out, "Waiting for VM \"%s\" to power on...\n", m.Name)
		if f := r.startProblem(m); f != nil {
			return out.String(), f
		}
		m.State, m.StateSince = "running", time.Now().UTC()
		if mode, path, _ := strings.Cut(m.UART["uartmode1"], ","); mode == "file" {
			// VirtualBox creates the file when the VM powers on.
			if f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
				f.Close()
			}
		}
		fmt.Fprintf(&out, "VM \"%s\" has been successfully started.\n", m.Name)
	}
	return out.String(), nil
}

// startProblem is why the VM process would fail to power the VM on.
func (r *Registry) startProblem(m *Machine) error {
	ctx := "LaunchVMProcess(a->session, sessionType.raw(), ComSafeArrayAsInParam(aBstrEnv), progress.asOutParam())"
	if r.Faults.NoDriver {
		return comErr(fmt.Sprintf("The virtual machine '%s' has terminated unexpectedly during startup with exit code 1 (0x1).  More details may be available in '%s'", m.Name,
			filepath.Join(filepath.Dir(m.CfgFile), "Logs", "VBoxHardening.log")), "NS_ERROR_FAILURE", "MachineWrap", "IMachine", ctx, "VBoxManageMisc.cpp")
	}
	if r.Faults.NoVTx {
		return comErr("VT-x is not available (VERR_VMX_NO_VMX)", "NS_ERROR_FAILURE", "ConsoleWrap", "IConsole", ctx, "VBoxManageMisc.cpp")
	}
	for _, c := range m.Controllers {
		for _, u := range c.Attached {
			md := r.mediumByUUID(u)
			if md == nil {
				continue
			}
			if _, err := os.Stat(md.Location); err != nil {
				return comErr(fmt.Sprintf("Could not open the medium '%s'. VD: error VERR_FILE_NOT_FOUND opening image file '%s' (VERR_FILE_NOT_FOUND)", md.Location, md.Location),
					"NS_ERROR_FAILURE", "ConsoleWrap", "IConsole", ctx, "VBoxManageMisc.cpp")
			}
		}
	}
	for k, mode := range m.NICs {
		d := digits.FindString(k)
		if k != "nic"+d {
			continue
		}
		switch mode {
		case "hostonly":
			name := m.NICs["hostonlyadapter"+d]
			found := false
			for _, h := range r.HostOnlyIfs {
				found = found || h.Name == name
			}
			if !found {
				return comErr(fmt.Sprintf("Nonexistent host networking interface, name '%s' (VERR_INTERNAL_ERROR)", name), "NS_ERROR_FAILURE", "ConsoleWrap", "IConsole", ctx, "VBoxManageMisc.cpp")
			}
		case "hostonlynet":
			name := m.NICs["hostonly-network"+d]
			found := false
			for _, h := range r.HostOnlyNets {
				found = found || h.Name == name && h.Enabled
			}
			if !found {
				return comErr(fmt.Sprintf("Host-only network '%s' does not exist or is disabled", name), "NS_ERROR_FAILURE", "ConsoleWrap", "IConsole", ctx, "VBoxManageMisc.cpp")
			}
		}
	}
	return nil
}

func cmdControlVM(r *Registry, args []string) (string, error) {
	if len(args) < 2 {
		return "", syntaxErr("Not enough parameters")
	}
	m, err := r.machine(args[0])
	if err != nil {
		return "", err
	}
	if len(args) > 2 {
		return "", syntaxErr("Too many parameters")
	}
	switch args[1] {
	case "acpipowerbutton", "poweroff", "pause", "resume":
	default:
		return "", syntaxErr("Invalid parameter '%s'", args[1])
	}
	if !running(m) {
		return "", comErr(fmt.Sprintf("Machine '%s' is not currently running", m.Name), "VBOX_E_INVALID_VM_STATE", "MachineWrap", "IMachine", "LockMachine", "VBoxManageControlVM.cpp")
	}
	switch args[1] {
	case "acpipowerbutton":
		if !r.Faults.ACPIIgnored && m.State == "running" {
			m.State, m.StateSince = "poweroff", time.Now().UTC()
		}
		return "", nil
	case "poweroff":
		m.State, m.StateSince = "poweroff", time.Now().UTC()
		return progress, nil
	case "pause":
		m.State = "paused"
	case "resume":
		m.State = "running"
	}
	return "", nil
}

func cmdUnregisterVM(r *Registry, args []string) (string, error) {
	p, err := parseOpts(args, map[string]int{"--delete": 0, "--delete-all": 0})
	if err != nil {
		return "", err
	}
	if len(p.pos) != 1 {
		return "", syntaxErr("VM name required")
	}
	m, err := r.machine(p.pos[0])
	if err != nil {
		return "", err
	}
	if running(m) {
		return "", comErr(fmt.Sprintf("Cannot unregister the machine '%s' while it is locked", m.Name), "VBOX_E_INVALID_OBJECT_STATE", "MachineWrap", "IMachine",
			"Unregister(CleanupMode_DetachAllReturnHardDisksOnly, ComSafeArrayAsOutParam(aMedia))", "VBoxManageMisc.cpp")
	}
	for i, o := range r.Machines {
		if o == m {
			r.Machines = append(r.Machines[:i], r.Machines[i+1:]...)
			break
		}
	}
	out := ""
	if p.has("--delete") || p.has("--delete-all") {
		// The hard disks the VM used (not shared with another VM) go, and
		// so do the settings, logs and the VM directory if then empty. DVD
		// images are detached, not deleted; they stay registered.
		for _, c := range m.Controllers {
			for _, u := range c.Attached {
				md := r.mediumByUUID(u)
				if md == nil || md.Kind != "hdd" || len(r.attachedTo(u)) > 0 || r.children(u) > 0 {
					continue
				}
				_ = os.Remove(md.Location)
				r.removeMedium(u)
			}
		}
		dir := filepath.Dir(m.CfgFile)
		_ = os.Remove(m.CfgFile)
		_ = os.Remove(m.CfgFile + "-prev")
		_ = os.RemoveAll(filepath.Join(dir, "Logs"))
		_ = os.Remove(dir)
		out = progress
	}
	return out, nil
}

// --- host-only networking -------------------------------------------------

func allowed(conf string, p netip.Prefix) bool {
	ranges := []netip.Prefix{netip.MustParsePrefix("192.168.56.0/21")}
	if conf != "" {
		if b, err := os.ReadFile(conf); err == nil {
			ranges = nil
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Fields(line)
				if len(f) < 2 || f[0] != "*" {
					continue
				}
				for _, s := range f[1:] {
					if q, err := netip.ParsePrefix(s); err == nil {
						ranges = append(ranges, q.Masked())
					}
				}
			}
		}
	}
	for _, r := range ranges {
		if r.Bits() <= p.Bits() && r.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func maskBits(mask string) (int, error) {
	a, err := netip.ParseAddr(mask)
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("bad netmask %q", mask)
	}
	v := binary.BigEndian.Uint32(a.AsSlice())
	bits := 0
	for v&0x80000000 != 0 {
		bits++
		v <<= 1
	}
	if v != 0 {
		return 0, fmt.Errorf("bad netmask %q", mask)
	}
	return bits, nil
}

func cmdHostOnlyIf(r *Registry, args []string) (string, error) {
	if len(args) == 0 {
		return "", syntaxErr("Not enough parameters")
	}
	switch args[0] {
	case "create":
		if len(args) > 1 {
			return "", syntaxErr("Too many parameters")
		}
		if r.Faults.NoNetCtl {
			f := comErr("Failed to create the host-only adapter", "NS_ERROR_FAILURE", "HostNetworkInterfaceWrap", "IHostNetworkInterface", "RTEXITCODE handleCreate(HandlerArg *)", "VBoxManageHostonly.cpp")
			f.lines = append([]string{f.lines[0], "VBoxManage: error: VBoxNetAdpCtl: Error while adding new interface: failed to open /dev/vboxnetctl: No such file or directory"}, f.lines[1:]...)
			return "0%...\nProgress state: NS_ERROR_FAILURE\n", f
		}
		n := 0
		for ; ; n++ {
			taken := false
			for _, h := range r.HostOnlyIfs {
				taken = taken || h.Name == fmt.Sprintf("vboxnet%d", n)
			}
			if !taken {
				break
			}
		}
		h := &HostOnlyIf{Name: fmt.Sprintf("vboxnet%d", n), IP: fmt.Sprintf("192.168.%d.1", 56+n), Netmask: "255.255.255.0"}
		r.HostOnlyIfs = append(r.HostOnlyIfs, h)
		return progress + fmt.Sprintf("Interface '%s' was successfully created\n", h.Name), nil
	case "remove":
		if len(args) != 2 {
			return "", syntaxErr("Not enough parameters")
		}
		for i, h := range r.HostOnlyIfs {
			if h.Name == args[1] {
				r.HostOnlyIfs = append(r.HostOnlyIfs[:i], r.HostOnlyIfs[i+1:]...)
				return progress, nil
			}
		}
		return "", comErr(fmt.Sprintf("Could not find interface '%s'", args[1]), "E_INVALIDARG", "HostWrap", "IHost", "FindHostNetworkInterfaceByName", "VBoxManageHostonly.cpp")
	case "ipconfig":
		if len(args) < 2 {
			return "", syntaxErr("Not enough parameters")
		}
		p, err := parseOpts(args[2:], map[string]int{"--dhcp": 0, "--ip": 1, "--netmask": 1, "--ipv6": 1, "--netmasklengthv6": 1})
		if err != nil {
			return "", err
		}
		var h *HostOnlyIf
		for _, x := range r.HostOnlyIfs {
			if x.Name == args[1] {
				h = x
			}
		}
		if h == nil {
			return "", comErr(fmt.Sprintf("Could not find interface '%s'", args[1]), "E_INVALIDARG", "HostWrap", "IHost", "FindHostNetworkInterfaceByName(Bstr(pszName).raw(), hif.asOutParam())", "VBoxManageHostonly.cpp")
		}
		if !p.has("--ip") {
			return "", syntaxErr("--ip or --dhcp is required")
		}
		ip, err := netip.ParseAddr(p.get("--ip"))
		if err != nil || !ip.Is4() {
			return "", syntaxErr("Invalid IP address '%s'", p.get("--ip"))
		}
		mask := p.get("--netmask")
		if mask == "" {
			mask = "255.255.255.0"
		}
		bits, err := maskBits(mask)
		if err != nil {
			return "", syntaxErr("Invalid netmask '%s'", mask)
		}
		if !allowed(r.Faults.NetworksConf, netip.PrefixFrom(ip, bits).Masked()) {
			return "", &failure{code: exitFailure, lines: []string{
				"VBoxManage: error: Code E_ACCESSDENIED (0x80070005) - Access denied (extended info not available)",
				"VBoxManage: error: Context: \"EnableStaticIPConfig(Bstr(pszIp).raw(), Bstr(pszNetmask).raw())\" at line 242 of file VBoxManageHostonly.cpp",
			}}
		}
		h.IP, h.Netmask = ip.String(), mask
		return "", nil
	}
	return "", syntaxErr("Invalid parameter '%s'", args[0])
}

func cmdHostOnlyNet(r *Registry, args []string) (string, error) {
	if len(args) == 0 {
		return "", syntaxErr("Not enough parameters")
	}
	v := r.Faults.Version
	if v != "" && !strings.HasPrefix(v, "7.") {
		return "", syntaxErr("Invalid command 'hostonlynet'")
	}
	switch args[0] {
	case "add":
		p, err := parseOpts(args[1:], map[string]int{"--name": 1, "--id": 1, "--netmask": 1, "--lower-ip": 1, "--upper-ip": 1, "--enable": 0, "--disable": 0})
		if err != nil {
			return "", err
		}
		if len(p.pos) > 0 {
			return "", syntaxErr("Invalid parameter '%s'", p.pos[0])
		}
		name, mask, lo, hi := p.get("--name"), p.get("--netmask"), p.get("--lower-ip"), p.get("--upper-ip")
		if name == "" || mask == "" || lo == "" || hi == "" {
			return "", syntaxErr("The --name, --netmask, --lower-ip and --upper-ip options are mandatory")
		}
		for _, h := range r.HostOnlyNets {
			if h.Name == name {
				return "", comErr(fmt.Sprintf("Host-only network '%s' already exists", name), "E_INVALIDARG", "VirtualBoxWrap", "IVirtualBox", "CreateHostOnlyNetwork", "VBoxManageHostonly.cpp")
			}
		}
		bits, err := maskBits(mask)
		lower, err1 := netip.ParseAddr(lo)
		upper, err2 := netip.ParseAddr(hi)
		if err != nil || err1 != nil || err2 != nil || upper.Less(lower) {
			return "", syntaxErr("Invalid network mask or address range")
		}
		pfx := netip.PrefixFrom(lower, bits).Masked()
		if !pfx.Contains(upper) {
			return "", syntaxErr("Invalid network mask or address range")
		}
		if !allowed(r.Faults.NetworksConf, pfx) {
			return "", comErr("Access denied (extended info not available)", "E_ACCESSDENIED", "HostOnlyNetworkWrap", "IHostOnlyNetwork", "COMSETTER(LowerIP)(Bstr(pszLowerIp).raw())", "VBoxManageHostonly.cpp")
		}
		r.HostOnlyNets = append(r.HostOnlyNets, &HostOnlyNet{Name: name, UUID: newUUID(), Netmask: mask, LowerIP: lo, UpperIP: hi, Enabled: !p.has("--disable")})
		return "", nil
	case "remove":
		p, err := parseOpts(args[1:], map[string]int{"--name": 1, "--id": 1})
		if err != nil {
			return "", err
		}
		for i, h := range r.HostOnlyNets {
			if h.Name == p.get("--name") || h.UUID == p.get("--id") {
				r.HostOnlyNets = append(r.HostOnlyNets[:i], r.HostOnlyNets[i+1:]...)
				return "", nil
			}
		}
		return "", comErr("Host-only network not found", "VBOX_E_OBJECT_NOT_FOUND", "VirtualBoxWrap", "IVirtualBox", "FindHostOnlyNetworkByName", "VBoxManageHostonly.cpp")
	}
	return "", syntaxErr("Invalid parameter '%s'", args[0])
}

// --- list and showvminfo --------------------------------------------------

func cmdList(r *Registry, args []string) (string, error) {
	p, err := parseOpts(args, map[string]int{"--long": 0, "-l": 0, "--sorted": 0, "-s": 0})
	if err != nil {
		return "", err
	}
	if len(p.pos) != 1 {
		return "", syntaxErr("Missing or too many parameters")
	}
	var b strings.Builder
	switch p.pos[0] {
	case "vms", "runningvms":
		for _, m := range r.Machines {
			if p.pos[0] == "runningvms" && !running(m) {
				continue
			}
			fmt.Fprintf(&b, "\"%s\" {%s}\n", m.Name, m.UUID)
		}
	case "hostonlyifs":
		for i, h := range r.HostOnlyIfs {
			if i > 0 {
				b.WriteString("\n")
			}
			fmt.Fprintf(&b, "Name:            %s\nGUID:            %s\nDHCP:            Disabled\nIPAddress:       %s\nNetworkMask:     %s\n"+
				"IPV6Address:     \nIPV6NetworkMaskPrefixLength: 0\nHardwareAddress: 0a:00:27:00:00:%02x\nMediumType:      Ethernet\nWireless:        No\n"+
				"Status:          Up\nVBoxNetworkName: HostInterfaceNetworking-%s\n",
				h.Name, "786f6276-656e-4074-8000-0a00270000"+fmt.Sprintf("%02x", i), h.IP, h.Netmask, i, h.Name)
		}
	case "hostonlynets":
		if v := r.Faults.Version; v != "" && !strings.HasPrefix(v, "7.") {
			return "", syntaxErr("Invalid parameter 'hostonlynets'")
		}
		for i, h := range r.HostOnlyNets {
			if i > 0 {
				b.WriteString("\n")
			}
			state := "Enabled"
			if !h.Enabled {
				state = "Disabled"
			}
			fmt.Fprintf(&b, "Name:            %s\nGUID:            %s\n\nState:           %s\nNetworkMask:     %s\nLowerIP:         %s\nUpperIP:         %s\nVBoxNetworkName: hostonly-%s\n",
				h.Name, h.UUID, state, h.Netmask, h.LowerIP, h.UpperIP, h.Name)
		}
	case "hdds", "dvds":
		kind := "hdd"
		if p.pos[0] == "dvds" {
			kind = "dvd"
		}
		first := true
		for _, md := range r.Media {
			if md.Kind != kind {
				continue
			}
			if !first {
				b.WriteString("\n")
			}
			first = false
			parent := "base"
			if md.Parent != "" {
				parent = md.Parent
			}
			var inUse []string
			for _, m := range r.attachedTo(md.UUID) {
				inUse = append(inUse, fmt.Sprintf("%s (UUID: %s)", m.Name, m.UUID))
			}
			state := "created"
			if _, err := os.Stat(md.Location); err != nil {
				state = "inaccessible"
			}
			fmt.Fprintf(&b, "UUID:           %s\n", md.UUID)
			if kind == "hdd" {
				fmt.Fprintf(&b, "Parent UUID:    %s\n", parent)
			}
			fmt.Fprintf(&b, "State:          %s\nType:           normal (base)\nLocation:       %s\n", state, md.Location)
			if kind == "hdd" {
				fmt.Fprintf(&b, "Storage format: %s\nCapacity:       2048 MBytes\nEncryption:     disabled\n", md.Format)
			}
			if len(inUse) > 0 {
				fmt.Fprintf(&b, "In use by VMs:  %s\n", strings.Join(inUse, ", "))
			}
		}
	default:
		return "", syntaxErr("Unknown subcommand '%s'", p.pos[0])
	}
	return b.String(), nil
}

// mrQuote quotes a --machinereadable string value.
func mrQuote(s string) string {
	return `"` + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`) + `"`
}

func cmdShowVMInfo(r *Registry, args []string) (string, error) {
	p, err := parseOpts(args, map[string]int{"--machinereadable": 0, "--details": 0, "--log": 1})
	if err != nil {
		return "", err
	}
	if len(p.pos) != 1 {
		return "", syntaxErr("Incorrect number of parameters")
	}
	m, err := r.machine(p.pos[0])
	if err != nil {
		return "", err
	}
	if !p.has("--machinereadable") {
		return fmt.Sprintf("Name:                        %s\nGroups:                      %s\nUUID:                        %s\nConfig file:                 %s\nMemory size:                 %dMB\nNumber of CPUs:              %d\nState:                       %s (since %s)\n",
			m.Name, strings.Join(m.Groups, ","), m.UUID, m.CfgFile, m.Memory, m.CPUs, stateLong[m.State], m.StateSince.Format(time.RFC3339Nano)), nil
	}
	dir := filepath.Dir(m.CfgFile)
	var b strings.Builder
	kv := func(k, v string) { fmt.Fprintf(&b, "%s=%s\n", k, mrQuote(v)) }
	kv("name", m.Name)
	kv("groups", strings.Join(m.Groups, ","))
	kv("ostype", osTypes[m.OSType])
	kv("UUID", m.UUID)
	kv("CfgFile", m.CfgFile)
	kv("SnapFldr", filepath.Join(dir, "Snapshots"))
	kv("LogFldr", filepath.Join(dir, "Logs"))
	fmt.Fprintf(&b, "memory=%d\n", m.Memory)
	kv("firmware", "BIOS")
	fmt.Fprintf(&b, "cpus=%d\n", m.CPUs)
	for i, d := range m.Boot {
		fmt.Fprintf(&b, "boot%d=%s\n", i+1, mrQuote(d))
	}
	kv("ioapic", m.IOAPIC)
	kv("rtcuseutc", m.RTCUseUTC)
	kv("VMState", m.State)
	kv("VMStateChangeTime", m.StateSince.Format("2006-01-02T15:04:05.000000000"))
	for _, c := range m.Controllers {
		i := 0
		fmt.Fprintf(&b, "storagecontrollername%d=%s\nstoragecontrollertype%d=%s\nstoragecontrollerportcount%d=%d\nstoragecontrollerbootable%d=%s\n",
			i, mrQuote(c.Name), i, mrQuote(c.Type), i, c.PortCount, i, mrQuote(c.Bootable))
		slots := make([]string, 0, len(c.Attached))
		for s := range c.Attached {
			slots = append(slots, s)
		}
		sort.Strings(slots)
		for _, s := range slots {
			md := r.mediumByUUID(c.Attached[s])
			loc := "none"
			if md != nil {
				loc = md.Location
			}
			fmt.Fprintf(&b, "%s=%s\n%s=%s\n", mrQuote(c.Name+"-"+s), mrQuote(loc), mrQuote(c.Name+"-ImageUUID-"+s), mrQuote(c.Attached[s]))
		}
	}
	for i := 1; i <= 8; i++ {
		d := strconv.Itoa(i)
		mode := m.NICs["nic"+d]
		if mode == "" {
			mode = "none"
		}
		kv("nic"+d, mode)
		if mode == "none" {
			continue
		}
		switch mode {
		case "hostonly":
			kv("hostonlyadapter"+d, m.NICs["hostonlyadapter"+d])
		case "hostonlynet":
			kv("hostonly-network"+d, m.NICs["hostonly-network"+d])
		}
		mac := m.NICs["macaddress"+d]
		if mac == "" || mac == "AUTO" {
			mac = fmt.Sprintf("080027%06X", i)
		}
		fmt.Fprintf(&b, "macaddress%d=%s\n", i, mrQuote(mac))
		kv("nictype"+d, firstNonEmpty(m.NICs["nictype"+d], "82540EM"))
	}
	for i := 1; i <= 4; i++ {
		d := strconv.Itoa(i)
		u := firstNonEmpty(m.UART["uart"+d], "off")
		kv("uart"+d, u)
		if u != "off" {
			kv("uartmode"+d, firstNonEmpty(m.UART["uartmode"+d], "disconnected"))
		}
	}
	return b.String(), nil
}

var stateLong = map[string]string{"poweroff": "powered off", "running": "running", "paused": "paused", "aborted": "aborted", "saved": "saved"}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// --- persistence ----------------------------------------------------------

func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

func load(home string) (*Registry, error) {
	reg := &Registry{}
	b, err := os.ReadFile(filepath.Join(home, RegistryFile))
	if err == nil {
		if err := json.Unmarshal(b, reg); err != nil {
			return nil, err
		}
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	f, err := ReadFaults(home)
	if err != nil {
		return nil, err
	}
	reg.Faults = f
	return reg, nil
}

// ReadFaults reads $VBOX_USER_HOME/faults.json (zero Faults if missing).
func ReadFaults(home string) (Faults, error) {
	var f Faults
	b, err := os.ReadFile(filepath.Join(home, FaultsFile))
	if os.IsNotExist(err) {
		return f, nil
	}
	if err != nil {
		return f, err
	}
	return f, json.Unmarshal(b, &f)
}

func saveFaults(home string, f Faults) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(home, FaultsFile), b)
}

// SetFaults writes the faults the next calls see. Tests call it between
// VBoxManage calls.
func SetFaults(home string, f Faults) error {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	unlock, err := lock(filepath.Join(home, lockFile))
	if err != nil {
		return err
	}
	defer unlock()
	return saveFaults(home, f)
}

func save(home string, reg *Registry) error {
	b, err := json.MarshalIndent(reg, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(home, RegistryFile), b)
}

// Load returns the registry as the fake last saved it, for assertions.
func Load(home string) (*Registry, error) { return load(home) }

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func logCall(home string, args []string) {
	b, _ := json.Marshal(args)
	f, err := os.OpenFile(filepath.Join(home, CallsFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.Write(append(b, '\n'))
}

// Calls returns the argument lists of every call so far, in order.
func Calls(home string) ([][]string, error) {
	b, err := os.ReadFile(filepath.Join(home, CallsFile))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var a []string
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

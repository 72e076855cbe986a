// createvm and modifyvm (VBoxManageMisc.cpp, VBoxManageModifyVM.cpp).

package vboxtest

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/internal/atomicfile"
)

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

// locked reports whether a session holds the machine: while it runs, and
// for a moment after it powered off, until the VM process has ended and
// released it (Faults.SessionRelease).
func locked(m *Machine) bool { return running(m) || time.Now().Before(m.SessionUntil) }

// powerOff records that the VM powered off; its process keeps the session
// for release more.
func powerOff(m *Machine, release time.Duration) {
	now := time.Now().UTC()
	m.State, m.StateSince, m.ShuttingDown = "poweroff", now, 0
	if release > 0 {
		m.SessionUntil = now.Add(release)
	}
}

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
	// As VirtualBox::composeMachineFilename (VirtualBoxImpl.cpp) composes
	// it from the primary (first) group: <base><group>/<name>/<name>.vbox,
	// with the top-level group "/" left out.
	base := p.get("--basefolder")
	if base == "" {
		base = filepath.Join(os.Getenv("VBOX_USER_HOME"), "VirtualBox VMs")
	}
	group := groups[0]
	if group == "/" {
		group = ""
	}
	cfg := filepath.Join(base, filepath.FromSlash(group), name, name+".vbox")
	if _, err := os.Stat(cfg); err == nil {
		return "", comErr(fmt.Sprintf("Machine settings file '%s' already exists", cfg), "VBOX_E_FILE_ERROR", "MachineWrap", "IMachine",
			"CreateMachine(bstrSettingsFile.raw(), Bstr(pszName).raw(), ...)", "VBoxManageMisc.cpp")
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
	if err := atomicfile.WriteFile(cfg, []byte("<?xml version=\"1.0\"?>\n<!-- fake VBoxManage settings of "+name+" -->\n"), 0o600); err != nil {
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
	if locked(m) {
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

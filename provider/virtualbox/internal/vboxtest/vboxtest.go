// Package vboxtest is a stand-in for VBoxManage that the virtualbox
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
package vboxtest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
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
	// ACPIShutdown is how long a guest takes to shut down after the ACPI
	// power button, counted in showvminfo calls of its VM: VMState stays
	// "running" while the guest shuts down, and the ACPIShutdown-th call
	// finds the VM powered off. Zero: it is off at once.
	ACPIShutdown int `json:"acpi_shutdown,omitempty"`
	// Transient maps a subcommand to how many of its next calls fail with
	// "The object is not ready" before it works.
	Transient map[string]int `json:"transient,omitempty"`
	// Kill maps a subcommand to how many of its calls succeed before one
	// is killed (exit status 137, nothing printed, nothing done).
	Kill map[string]int `json:"kill,omitempty"`
	// SessionRelease is how long a VM's process keeps holding its session
	// after the VM powered off (controlvm poweroff, or the guest's ACPI
	// shutdown). Real VirtualBox needs a moment to end the VM process; until
	// then unregistervm fails with VBOX_E_INVALID_OBJECT_STATE "Cannot
	// unregister the machine '...' while it is locked", and modifyvm,
	// storagectl, storageattach and startvm find the machine locked.
	// showvminfo --machinereadable prints SessionName meanwhile. Zero
	// releases it at once.
	SessionRelease time.Duration `json:"session_release,omitempty"`
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
	// SessionUntil is when the session of a powered-off VM is released
	// (see Faults.SessionRelease).
	SessionUntil time.Time `json:"session_until,omitempty"`
	// ShuttingDown counts the showvminfo calls left until the guest,
	// shutting down after the ACPI power button, powers the VM off (see
	// Faults.ACPIShutdown).
	ShuttingDown int `json:"shutting_down,omitempty"`
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

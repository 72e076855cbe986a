// startvm, controlvm and unregistervm (VBoxManageMisc.cpp,
// VBoxManageControlVM.cpp).

package vboxtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

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
		if locked(m) {
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
		// Console::PowerButton (ConsoleImpl.cpp) takes only a running VM.
		if m.State != "running" {
			return "", comErr(fmt.Sprintf("Invalid machine state: %s", machineStateName[m.State]), "VBOX_E_INVALID_VM_STATE", "ConsoleWrap", "IConsole", "PowerButton()", "VBoxManageControlVM.cpp")
		}
		switch {
		case r.Faults.ACPIIgnored, m.ShuttingDown > 0:
		case r.Faults.ACPIShutdown > 0:
			// The guest shuts down; VirtualBox still says running.
			m.ShuttingDown = r.Faults.ACPIShutdown
		default:
			powerOff(m, r.Faults.SessionRelease)
		}
		return "", nil
	case "poweroff":
		powerOff(m, r.Faults.SessionRelease)
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
	// Machine::unregister (MachineImpl.cpp) refuses while any session holds
	// the machine, also in the moment after a power-off before the VM
	// process has released it; handleUnregisterVM (VBoxManageMisc.cpp)
	// prints it with the Unregister(...) context.
	if locked(m) {
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

// machineStateName is Global::stringifyMachineState (Global.cpp) of the
// states the fake has, as VirtualBox's errors name them.
var machineStateName = map[string]string{"poweroff": "PoweredOff", "running": "Running", "paused": "Paused", "aborted": "Aborted", "saved": "Saved"}

package virtualbox

import (
	"errors"
	"fmt"
	"strings"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

// Fixes the user reads for known VirtualBox failures.
const (
	fixDriver = "load the VirtualBox kernel driver: on Linux run `sudo /sbin/vboxconfig` (install the headers of the running kernel first; with Secure Boot the modules must be signed); " +
		"on macOS allow Oracle's system extension in System Settings > Privacy & Security and restart"
	fixNetDriver = "load the host-only network driver: on Linux `sudo modprobe vboxnetadp` (or `sudo /sbin/vboxconfig`); " +
		"on macOS allow Oracle's system extension and restart, or with VirtualBox 7 set hostonly: hostonlynet (no kernel extension needed)"
	fixVTx = "enable hardware virtualization (Intel VT-x or AMD-V) in the machine's BIOS/UEFI setup; " +
		"if KVM holds it on Linux, unload it (`sudo modprobe -r kvm_intel kvm_amd`); on Windows turn off Hyper-V; inside a VM, enable nested virtualization"
	fixNetworksConf = "VirtualBox 6.1.28 and later only allow host-only addresses in 192.168.56.0/21: use a cidr inside it, " +
		"or allow yours with a line like `* 10.0.0.0/8 192.168.0.0/16` in /etc/vbox/networks.conf (as root; create the file if needed)"
)

// imageFix tells how to turn the image at path into a VDI.
func imageFix(path, format string) string {
	if format == "" {
		format = "qcow2"
	}
	out := strings.TrimSuffix(path, extOf(path)) + ".vdi"
	return fmt.Sprintf("convert it to VDI and point image: at the result: qemu-img convert -f %s -O vdi %s %s", format, path, out)
}

func extOf(p string) string {
	i := strings.LastIndexByte(p, '.')
	if i < 0 || strings.ContainsAny(p[i:], `/\`) {
		return ""
	}
	return p[i:]
}

// classify turns a failed VBoxManage call whose cause is known into an
// error that names the cause and carries the fix. Other errors are
// returned as they are.
func classify(err error) error {
	var ve *vboxError
	if !errors.As(err, &ve) {
		return err
	}
	s := ve.Stderr + "\n" + ve.Stdout // the Linux wrapper warns on stdout
	has := func(subs ...string) bool {
		for _, sub := range subs {
			if strings.Contains(s, sub) {
				return true
			}
		}
		return false
	}
	verb := ""
	if len(ve.Args) > 0 {
		verb = ve.Args[0]
	}
	switch {
	case has("vboxdrv kernel module is not loaded", "/dev/vboxdrv does not exist", "VERR_VM_DRIVER_NOT_INSTALLED", "VERR_VM_DRIVER_NOT_ACCESSIBLE", "VERR_VM_DRIVER_OPEN_ERROR", "Kernel driver not installed", "/dev/vboxdrv"):
		return usererr.WithHint(fmt.Errorf("virtualbox: the VirtualBox kernel driver is not loaded (/dev/vboxdrv): %w", err), fixDriver)
	case has("vboxnetctl", "VERR_SUPDRV_COMPONENT_NOT_FOUND"):
		return usererr.WithHint(fmt.Errorf("virtualbox: the host-only network driver is not loaded (/dev/vboxnetctl): %w", err), fixNetDriver)
	case has("VERR_VMX_NO_VMX", "VERR_SVM_NO_SVM", "VERR_VMX_MSR_ALL_VMX_DISABLED", "VERR_VMX_MSR_VMX_DISABLED", "VERR_SVM_DISABLED",
		"VERR_VMX_IN_VMX_ROOT_MODE", "VERR_SVM_IN_USE", "VT-x is not available", "VT-x is disabled", "AMD-V is disabled", "AMD-V is not available"):
		return usererr.WithHint(fmt.Errorf("virtualbox: hardware virtualization (VT-x/AMD-V) is not available: %w", err), fixVTx)
	case (verb == "hostonlyif" || verb == "hostonlynet") && has("E_ACCESSDENIED"):
		return usererr.BadInput(fixNetworksConf, "virtualbox: VirtualBox refused the host-only address (outside the allowed ranges): %w", err)
	case verb == "createvm" && has("already exists"):
		return usererr.BadInput("remove the leftover with `clusterctl down NAME` (or delete the directory named in the message), then try again",
			"virtualbox: a VM settings file is already there: %w", err)
	case (verb == "clonemedium" || verb == "createmedium") && has("storage format", "VERR_VD_IMAGE_", "VERR_NOT_SUPPORTED"):
		return usererr.BadInput("use a VDI (or VMDK/VHD) base image: convert a qcow2 or raw cloud image with qemu-img convert -O vdi (see docs/virtualbox.md)",
			"virtualbox: VirtualBox cannot read the base image: %w", err)
	}
	return err
}

// isNotFound reports whether VBoxManage said the VM does not exist.
func isNotFound(err error) bool {
	var ve *vboxError
	if !errors.As(err, &ve) {
		return false
	}
	return strings.Contains(ve.Stderr, "Could not find a registered machine") ||
		strings.Contains(ve.Stderr, "VBOX_E_OBJECT_NOT_FOUND")
}

// isSessionLocked reports whether VBoxManage refused because a session
// still holds the machine: unregistervm says "Cannot unregister the machine
// '...' while it is locked" (Machine::unregister, MachineImpl.cpp) with
// VBOX_E_INVALID_OBJECT_STATE; LockMachine says the machine "is already
// locked for a session (or being unlocked)"; startvm (LaunchVMProcess)
// says it "is already locked by a session (or being locked or unlocked)".
func isSessionLocked(err error) bool {
	var ve *vboxError
	if !errors.As(err, &ve) {
		return false
	}
	return strings.Contains(ve.Stderr, "while it is locked") || strings.Contains(ve.Stderr, "is already locked for a session") ||
		strings.Contains(ve.Stderr, "is already locked by a session")
}

package qemu

import (
	"strconv"
	"strings"
)

// launch is everything the QEMU command line is made of, resolved: accel is
// "tcg" or "kvm", never "auto", and all paths are absolute.
type launch struct {
	Binary  string
	Name    string // guest name shown by QEMU (ps, QMP)
	Machine string
	Accel   string
	Memory  int // MiB
	CPUs    int

	Overlay string // the node's qcow2 disk
	Seed    string // NoCloud seed ISO
	Tap     string
	MAC     string

	PIDFile string
	QMP     string
	Console string

	Kernel string // direct-kernel boot when not empty
	Initrd string
	Append string
}

// qemuArgs returns the full argv (argv[0] is the binary) that starts the VM
// as a daemon. It is a pure function so that the command line is pinned by
// golden files.
func qemuArgs(l launch) []string {
	a := []string{
		l.Binary,
		"-name", "guest=" + optEscape(l.Name),
		"-nodefaults",
		"-no-user-config",
		"-machine", l.Machine,
		"-accel", l.Accel,
		"-m", strconv.Itoa(l.Memory),
		"-smp", strconv.Itoa(l.CPUs),
		"-display", "none",
		"-daemonize",
		"-pidfile", l.PIDFile,
		"-qmp", "unix:" + l.QMP + ",server=on,wait=off",
		"-serial", "file:" + l.Console,
		"-drive", "file=" + optEscape(l.Overlay) + ",format=qcow2,if=virtio",
		// The seed CD-ROM is on virtio-scsi: Debian's cloud kernel has no
		// AHCI driver, so a CD-ROM on q35's default bus stays invisible.
		"-device", "virtio-scsi-pci,id=scsi0",
		"-drive", "file=" + optEscape(l.Seed) + ",format=raw,if=none,id=seed,media=cdrom,readonly=on",
		"-device", "scsi-cd,drive=seed,bus=scsi0.0",
		"-netdev", "tap,id=net0,ifname=" + l.Tap + ",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=net0,mac=" + l.MAC,
		// Entropy for the guest: a TCG guest otherwise waits for it at boot.
		"-device", "virtio-rng-pci",
	}
	if l.Kernel != "" {
		a = append(a, "-kernel", l.Kernel)
		if l.Initrd != "" {
			a = append(a, "-initrd", l.Initrd)
		}
		if l.Append != "" {
			a = append(a, "-append", l.Append)
		}
	}
	return a
}

// optEscape escapes a value inside a QEMU "key=value,..." option string,
// where a literal comma is written as two.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

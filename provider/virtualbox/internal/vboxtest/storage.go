// storagectl, storageattach and the media subcommands: clonemedium,
// createmedium, closemedium (VBoxManageStorageController.cpp,
// VBoxManageDisk.cpp).

package vboxtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/clusterctl/clusterctl/internal/atomicfile"
)

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
	if locked(m) {
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
	if locked(m) {
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
	return atomicfile.WriteFile(path, h, 0o600)
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

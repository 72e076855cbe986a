package virtualbox

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

// Disk image formats sniffImage tells apart.
const (
	fmtVDI     = "vdi"
	fmtVMDK    = "vmdk"
	fmtVHD     = "vhd"
	fmtVHDX    = "vhdx"
	fmtQCOW2   = "qcow2"
	fmtUnknown = "raw" // no header VirtualBox knows: raw, or something else
)

// vdiSignature is the image signature at offset 64 of a VDI header.
const vdiSignature = 0xbeda107f

// sniffImage reads the header (and VHD's footer) of the image at path.
func sniffImage(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF {
		return "", err
	}
	head = head[:n]
	switch {
	case len(head) >= 68 && binary.LittleEndian.Uint32(head[64:68]) == vdiSignature:
		return fmtVDI, nil
	case bytes.HasPrefix(head, []byte("KDMV")), bytes.HasPrefix(head, []byte("# Disk DescriptorFile")):
		return fmtVMDK, nil
	case bytes.HasPrefix(head, []byte("vhdxfile")):
		return fmtVHDX, nil
	case bytes.HasPrefix(head, []byte("conectix")):
		return fmtVHD, nil
	case bytes.HasPrefix(head, []byte("QFI\xfb")):
		return fmtQCOW2, nil
	}
	if st, err := f.Stat(); err == nil && st.Size() >= 512 {
		foot := make([]byte, 8)
		if _, err := f.ReadAt(foot, st.Size()-512); err == nil && string(foot) == "conectix" {
			return fmtVHD, nil
		}
	}
	return fmtUnknown, nil
}

// checkImage is the preflight check of the base image: it exists, is a
// regular file, and is in a format VirtualBox clones from reliably.
func checkImage(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return usererr.BadInput(`set "image:" to an existing VDI base image (see docs/virtualbox.md: base image)`,
			"virtualbox: base image %q cannot be read: %v", path, err)
	}
	if !st.Mode().IsRegular() {
		return usererr.BadInput(`set "image:" to a VDI file`, "virtualbox: base image %q is not a regular file", path)
	}
	format, err := sniffImage(path)
	if err != nil {
		return usererr.BadInput(`set "image:" to a readable VDI file`, "virtualbox: base image %q cannot be read: %v", path, err)
	}
	switch format {
	case fmtVDI, fmtVMDK, fmtVHD:
		return nil
	case fmtQCOW2:
		return usererr.BadInput(imageFix(path, "qcow2"),
			"virtualbox: base image %q is qcow2, which VirtualBox cannot use as a base disk (cloud images are compressed qcow2)", path)
	case fmtVHDX:
		return usererr.BadInput(imageFix(path, "vhdx"), "virtualbox: base image %q is VHDX, which VirtualBox only reads, not clones", path)
	default:
		return usererr.BadInput(imageFix(path, "raw"),
			"virtualbox: base image %q has no VDI, VMDK or VHD header (a raw image?)", path)
	}
}

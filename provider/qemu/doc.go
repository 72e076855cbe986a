// Package qemu is the provider that runs each node as a local QEMU virtual
// machine. It registers itself as "qemu".
//
// Every node is a copy-on-write qcow2 overlay on one base image, booted with
// a NoCloud seed ISO (user-data, meta-data, network-config and the agent
// binary) and one virtio NIC whose MAC address clusterctl chose, plugged into
// a tap device on an existing Linux bridge. clusterctl chooses every node's
// address in the bridge's network (see provider.AddressChooser), and the
// network-config matches the NIC by its MAC.
//
// All of a node's files live in its directory, <cluster dir>/nodes/<name>:
//
//	node.json     what Create was asked for (written first: marks a node of ours; package localvm names these files)
//	overlay.qcow2 the node's disk, backed by the base image
//	seed.iso      the NoCloud seed (mode 0600: it holds the gossip key)
//	qemu.pid      QEMU's pid file
//	qmp.sock      QMP control socket (used for ACPI power-down)
//	console.log   the serial console (ttyS0)
//	qemu.log      QEMU's own stdout/stderr at start-up
//
// The instance id is the node name. Status finds the process through the pid
// file and checks /proc/PID/cmdline names that pid file, so a recycled pid is
// never mistaken for the VM.
//
// Configuration is the "qemu:" section of the cluster config:
//
//	qemu:
//	  image: /var/lib/clusterctl/debian12.qcow2 # base disk, required
//	  image_format: qcow2     # raw|qcow2|...; detected with qemu-img info when empty
//	  kernel: ""              # direct-kernel boot: path of a kernel (optional)
//	  initrd: ""              # and its initramfs
//	  append: ""              # kernel command line; default with kernel:
//	                          #   "root=/dev/vda rw console=ttyS0"
//	  binary: qemu-system-x86_64   # looked up in PATH
//	  qemu_img: qemu-img
//	  accel: auto             # tcg|kvm|auto; auto = kvm if /dev/kvm opens, else tcg
//	  machine: q35            # QEMU machine type
//	  bridge: clusterbr0      # existing Linux bridge the taps join
//	  cidr: 192.168.56.0/24   # the bridge's network; node addresses come from it
//	                          # and the bridge must hold a host address in it
//	  memory: 1024            # MiB, when the node spec does not say
//	  cpus: 1                 # when the node spec does not say
//	  powerdown_timeout: 30s  # how long Delete and Stop wait after ACPI power-down
//
// The bridge is not created by clusterctl; make it once (as root):
//
//	ip link add clusterbr0 type bridge
//	ip addr add 192.168.56.1/24 dev clusterbr0
//	ip link set clusterbr0 up
//
// Creating tap devices needs CAP_NET_ADMIN (run as root). Note that on hosts
// where /dev/kvm exists but KVM is nested and unreliable, accel: auto picks
// kvm; set accel: tcg there.
//
// The seed CD-ROM sits on a virtio-scsi controller rather than the machine's
// default IDE/AHCI bus: Debian's cloud kernel (linux-image-cloud-amd64) is
// built without AHCI, so on q35 it would never see a CD-ROM on the default bus.
package qemu

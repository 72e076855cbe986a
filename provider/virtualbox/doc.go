// Package virtualbox is the provider that runs each node as a VirtualBox VM,
// driven through VBoxManage. It registers itself as "virtualbox".
//
// Create writes the node's NoCloud seed ISO (user-data, meta-data,
// network-config and the agent binary, cloudinit.WriteSeedISO), makes its
// disk from the base image, and runs, in order:
//
//	createmedium disk --filename DIR/disk.vdi --diffparent BASE --format VDI   (clone: linked)
//	clonemedium disk BASE DIR/disk.vdi --format VDI                             (clone: full)
//	createvm --name NODE.CLUSTER --groups /clusterctl/CLUSTER --ostype T --basefolder DIR --register
//	modifyvm ... --nic1 nat --nic2 hostonly --hostonlyadapter2 vboxnetN --macaddress2 MAC
//	         --uart1 0x3F8 4 --uartmode1 file DIR/console.log
//	storagectl / storageattach (disk on port 0, seed ISO as DVD on port 1)
//	startvm NODE.CLUSTER --type headless
//
// The instance id is the VM name NODE.CLUSTER (VM names are global to the
// host user). A VM is clusterctl's only when its settings file lies in the
// node's directory; Status, List and Delete never touch another VM.
//
// All of a node's files live in its directory, <cluster dir>/nodes/<name>:
//
//	node.json         what Create was asked for (written first)
//	disk.vdi          the node's disk (a differencing image of the base, or a copy)
//	seed.iso          the NoCloud seed (mode 0600: it holds the gossip key)
//	console.log       the serial console (ttyS0)
//	clusterctl/CLUSTER/NODE.CLUSTER/
//	                  VirtualBox's own files: NODE.CLUSTER.vbox, Logs/VBox.log
//	                  (createvm --basefolder DIR --groups G puts a VM in DIR<G>/<name>/)
//
// clusterctl chooses every node's address on the host-only network and its
// NIC's MAC; the network-config matches the NIC by MAC (Debian and Ubuntu
// cloud images have no Guest Additions, so VirtualBox cannot tell the
// address). Preflight finds the host-only network by its host address (or
// hostonly_name) and creates it when missing, before any node is made.
//
// Delete waits for a powered-off VM's session to be released before it
// unregisters the VM. CleanupCluster (down --all) closes VirtualBox's
// registration of the base image when nothing uses it any more; the
// host-only network stays, shared by every cluster on it, and Remains names
// it with the command that removes it. The file names, node.json, the
// default MAC, the name check and the Create wrapper are package localvm's.
//
// Every VBoxManage call has a timeout (command_timeout) and keeps its
// stderr; a "VBoxManage: error:" line fails a call even with exit status 0;
// "object is not ready" and session-lock errors are retried; calls that
// change VirtualBox's global registry (createvm, unregistervm, *medium,
// hostonlyif, hostonlynet) are serialized within the process, the rest run
// in parallel. Known failures (no kernel driver, no VT-x/AMD-V, no
// vboxnetctl, host-only range refused, image format) are turned into
// errors that name the cause and the fix.
//
// Configuration is the "virtualbox:" section of the cluster config; see
// docs/virtualbox.md for every key.
package virtualbox

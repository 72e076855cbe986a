//go:build e2e

package e2e

// TestVirtualBoxSeed proves that what the VirtualBox provider hands to
// VirtualBox boots for real: the real `clusterctl up --provider virtualbox
// red` runs against the test-only fake VBoxManage (VirtualBox cannot be
// installed here), and the test plays VirtualBox's VM process with QEMU.
// It reads, from the fake's registry through `showvminfo --machinereadable`,
// exactly what the provider configured — the seed ISO attached as the DVD,
// the disk (a differencing image of the base VDI), NIC2's MAC and host-only
// interface, the serial-port file, memory and CPUs — and boots a guest from
// those: that very seed.iso as a CD-ROM, a qcow2 overlay over the base VDI,
// a virtio NIC with that MAC on a tap attached to the bridge that plays the
// host-only interface, its console written to the file `up` tails. `up` must
// then return 0 because that guest's real cloud-init applied the seed's
// network-config (static address on the NIC matched by MAC), installed the
// agent from the seed and the agent joined; status shows red alive with
// hostname red; down --all removes everything from the fake VirtualBox.
//
// NIC1, VirtualBox's NAT adapter, is played by QEMU's user-mode network
// (slirp, which VirtualBox's NAT also derives from: DHCP from 10.0.2.2) with
// the MAC the provider gave it, in restrict=on mode: the guest gets its DHCP
// lease but no packet leaves QEMU, and QEMU runs in the test's namespace,
// which has no way out anyway. NIC1 must be there: without it cloud-init
// 22.4 fails to rename the missing nat0 and leaves cluster0 without its
// address (seen here: the agent then never joins).
//
// What is not VirtualBox here: the guest boots the test image's kernel
// directly (the image has no boot loader), its disk is on virtio-blk and its
// CD-ROM on virtio-scsi (the config asks for `controller: virtio`, VirtualBox's
// virtio-scsi, because the test image's cloud kernel has no AHCI driver).
//
// The host-only interface: on a Linux host VirtualBox's vboxnet0 is a kernel
// interface carrying the host address, and NIC2 of each VM is connected to
// it. The test registers vboxnet0 with 192.168.56.1/24 in the fake (as an
// earlier cluster or the user would have) and makes, inside a network
// namespace of its own, a bridge of the same name with that address; the
// CLI runs in that namespace, so its observer advertises 192.168.56.1 there.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeVBox runs the fake VBoxManage with the test's VBOX_USER_HOME.
type fakeVBox struct {
	t    *testing.T
	bin  string
	home string
}

func (f *fakeVBox) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, f.bin, args...)
	cmd.Env = append(os.Environ(), "VBOX_USER_HOME="+f.home)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("VBoxManage %s: %w\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

func (f *fakeVBox) must(ctx context.Context, args ...string) string {
	f.t.Helper()
	out, err := f.run(ctx, args...)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

var mrLine = regexp.MustCompile(`^("(?:[^"\\]|\\.)*"|[^=]+)=(.*)$`)

// parseMR parses `showvminfo --machinereadable`: key="value" lines, where
// some keys are quoted too ("VirtIO-1-0"="/path/seed.iso").
func parseMR(out string) map[string]string {
	m := map[string]string{}
	unq := func(s string) string {
		if u, err := strconv.Unquote(s); err == nil {
			return u
		}
		return s
	}
	for _, line := range strings.Split(out, "\n") {
		if g := mrLine.FindStringSubmatch(strings.TrimRight(line, "\r")); g != nil {
			m[unq(g[1])] = unq(g[2])
		}
	}
	return m
}

// parseRecords parses the "Key:   value" records, separated by blank lines,
// of `list hdds` and `list dvds`.
func parseRecords(out string) []map[string]string {
	var recs []map[string]string
	cur := map[string]string{}
	for _, line := range strings.Split(out+"\n", "\n") {
		if strings.TrimSpace(line) == "" {
			if len(cur) > 0 {
				recs = append(recs, cur)
				cur = map[string]string{}
			}
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			cur[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return recs
}

// vboxGuest is what the provider told VirtualBox about a VM.
type vboxGuest struct {
	Seed, Disk, Console, HostIf string
	MAC                         string // NIC2 (cluster), colon form, as the guest sees it
	NATMAC                      string // NIC1 (NAT), colon form
	Memory, CPUs                string
}

func TestVirtualBoxSeed(t *testing.T) {
	const cluster, node = "vbseed", "red"
	vm := node + "." + cluster
	e := newEnv(t, cluster)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	vb := &fakeVBox{t: t, bin: filepath.Join(e.bin, "VBoxManage"), home: t.TempDir()}
	e.run(ctx, nil, "go", "build", "-o", vb.bin, "./provider/virtualbox/internal/vboxtest/cmd/VBoxManage")
	e.extraEnv = []string{"CLUSTERCTL_VBOXMANAGE=" + vb.bin, "VBOX_USER_HOME=" + vb.home}

	// The host-only interface, in the fake and, under the same name, as a
	// bridge in the test's namespace.
	m := regexp.MustCompile(`Interface '([^']+)' was successfully created`).FindStringSubmatch(vb.must(ctx, "hostonlyif", "create"))
	if m == nil {
		t.Fatal("fake VBoxManage hostonlyif create printed no interface name")
	}
	hostIf := m[1]
	vb.must(ctx, "hostonlyif", "ipconfig", hostIf, "--ip", "192.168.56.1", "--netmask", "255.255.255.0")
	e.netnsUp(fmt.Sprintf("cctl-vbs-%d", os.Getpid()), hostIf, hostCIDR)

	// The base image VirtualBox gets: the test image as a VDI.
	work := t.TempDir()
	base := filepath.Join(work, "debian12.vdi")
	start := time.Now()
	e.run(ctx, nil, "qemu-img", "convert", "-f", "raw", "-O", "vdi", filepath.Join(e.image, "disk.raw"), base)
	t.Logf("qemu-img convert to VDI took %s", time.Since(start).Round(100*time.Millisecond))

	e.config = filepath.Join(work, "cluster.yaml")
	cfg := fmt.Sprintf(`cluster: %s
provider: virtualbox
timeouts:
  join: 12m
cloudinit:
  # Show, on the serial console, what the guest ended up with.
  extra: |
    runcmd:
      - [sh, -c, 'echo "E2E-HOSTNAME $(hostname)" > /dev/ttyS0; ip -o -4 addr show dev cluster0 | sed "s/^/E2E-NET /" > /dev/ttyS0']
virtualbox:
  image: %s
  controller: virtio
  cidr: 192.168.56.0/24
  host_address: 192.168.56.1
  memory: 1024
  cpus: 1
`, cluster, base)
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	// up, in the background: it returns when the agent joined.
	upCmd := e.command(ctx, "up", "--provider", "virtualbox", node, "-o", "json")
	var upOut, upErr bytes.Buffer
	upCmd.Stdout, upCmd.Stderr = &upOut, &upErr
	start = time.Now()
	if err := upCmd.Start(); err != nil {
		t.Fatal(err)
	}
	upDone := make(chan error, 1)
	go func() { upDone <- upCmd.Wait() }()
	upFinished := false
	t.Cleanup(func() {
		if !upFinished {
			_ = upCmd.Process.Kill()
			<-upDone
		}
	})
	upFailed := func(err error) {
		t.Helper()
		upFinished = true
		t.Fatalf("clusterctl up: %v\nstdout:\n%s\nstderr:\n%s", err, upOut.String(), upErr.String())
	}

	// Wait until VirtualBox was told to start the VM, then read what it was given.
	var info map[string]string
	for info == nil {
		select {
		case err := <-upDone:
			upFailed(fmt.Errorf("returned before the VM was started: %v", err))
		case <-ctx.Done():
			t.Fatal("the VM never reached running in the fake VirtualBox")
		case <-time.After(time.Second):
		}
		out, err := vb.run(ctx, "showvminfo", vm, "--machinereadable")
		if err == nil && parseMR(out)["VMState"] == "running" {
			info = parseMR(out)
		}
	}
	g := e.vboxGuest(ctx, vb, info, hostIf, base)
	t.Logf("VirtualBox was given: seed %s, disk %s (parent %s), NIC2 MAC %s on %s, console %s, %s MiB, %s CPU",
		g.Seed, g.Disk, base, g.MAC, g.HostIf, g.Console, g.Memory, g.CPUs)

	qemuDone := e.bootVBoxGuest(ctx, g, base, work)

	// up returns 0 only when that guest's agent joined.
	select {
	case err := <-upDone:
		upFinished = true
		if err != nil {
			t.Logf("console of %s:\n%s", node, tailLines(readFileString(g.Console), 60))
			upFailed(err)
		}
	case err := <-qemuDone:
		t.Logf("console of %s:\n%s", node, tailLines(readFileString(g.Console), 60))
		t.Fatalf("QEMU ended while up was waiting for the join: %v", err)
	case <-ctx.Done():
		t.Fatal("up did not return")
	}
	t.Logf("clusterctl up --provider virtualbox %s took %s (boot under TCG)\n%s", node, time.Since(start).Round(time.Second), upErr.String())

	var up upDoc
	if err := json.Unmarshal(upOut.Bytes(), &up); err != nil {
		t.Fatalf("up -o json: %v\n%s", err, upOut.String())
	}
	if len(up.Nodes) != 1 || up.Nodes[0].Name != node || up.Nodes[0].Phase != "joined" || up.Nodes[0].InstanceID != vm {
		t.Fatalf("up result: %+v, want %s joined as %s", up.Nodes, node, vm)
	}
	addr, err := netip.ParseAddr(up.Nodes[0].Address)
	if err != nil || !netip.MustParsePrefix("192.168.56.0/24").Contains(addr) {
		t.Fatalf("up: address %q is not in 192.168.56.0/24", up.Nodes[0].Address)
	}

	// The MAC VirtualBox was given is the one clusterctl chose for the node
	// (node.json), and the guest's cluster0 got the node's address on it.
	var meta struct{ MAC, Address string }
	if b, err := os.ReadFile(filepath.Join(e.home, "clusters", cluster, "nodes", node, "node.json")); err != nil {
		t.Error(err)
	} else if err := json.Unmarshal(b, &meta); err != nil {
		t.Error(err)
	} else if !strings.EqualFold(meta.MAC, g.MAC) || meta.Address != addr.String() {
		t.Errorf("node.json says MAC %s address %s; VirtualBox was given MAC %s and up reports %s", meta.MAC, meta.Address, g.MAC, addr)
	}
	con := readFileString(g.Console)
	if !strings.Contains(con, "E2E-HOSTNAME "+node) {
		t.Errorf("the console does not show hostname %q:\n%s", node, tailLines(con, 40))
	}
	if !regexp.MustCompile(`E2E-NET .*cluster0\s+inet ` + regexp.QuoteMeta(addr.String()) + `/24`).MatchString(con) {
		t.Errorf("the console does not show cluster0 with %s/24:\n%s", addr, grepLines(con, "E2E-NET"))
	}

	st := e.status(ctx)
	if len(st.Nodes) != 1 {
		t.Fatalf("status: %+v, want one node", st.Nodes)
	}
	if n := st.Nodes[0]; n.Name != node || n.Gossip != "alive" || n.Hostname != node || n.Address != addr.String() || n.ProviderState != "running" {
		t.Errorf("status row %+v: want %s alive, hostname %s (as its agent reports it), address %s, running", n, node, node, addr)
	}

	// down --all while the guest still runs: its agent is asked to leave,
	// then the fake VirtualBox forgets the VM and every medium of the node.
	if _, err := e.cli(ctx, "down", "--all"); err != nil {
		t.Fatal(err)
	}
	if out := vb.must(ctx, "list", "vms"); strings.Contains(out, vm) {
		t.Errorf("VM %s is still registered after down --all:\n%s", vm, out)
	}
	for _, kind := range []string{"hdds", "dvds"} {
		for _, rec := range parseRecords(vb.must(ctx, "list", kind)) {
			if strings.HasPrefix(rec["Location"], e.home+string(filepath.Separator)) {
				t.Errorf("medium %s is still registered after down --all", rec["Location"])
			}
		}
	}
	if _, err := os.Stat(filepath.Join(e.home, "clusters", cluster)); !os.IsNotExist(err) {
		t.Errorf("the cluster's directory is still there after down --all")
	}
}

// vboxGuest checks what the provider configured in the fake VirtualBox
// (showvminfo of the started VM) and returns what a guest is booted from.
func (e *env) vboxGuest(ctx context.Context, vb *fakeVBox, info map[string]string, hostIf, base string) vboxGuest {
	t := e.t
	t.Helper()
	nodeDir := filepath.Join(e.home, "clusters", e.cluster, "nodes", "red")
	ctl := info["storagecontrollername0"]
	g := vboxGuest{Disk: info[ctl+"-0-0"], Seed: info[ctl+"-1-0"], HostIf: info["hostonlyadapter2"], Memory: info["memory"], CPUs: info["cpus"]}
	if want := filepath.Join(nodeDir, "seed.iso"); g.Seed != want {
		t.Fatalf("the DVD of the VM is %q, want the node's seed ISO %s\n%v", g.Seed, want, info)
	}
	if info["nic2"] != "hostonly" || g.HostIf != hostIf {
		t.Fatalf("NIC2 is %q on %q, want hostonly on %s", info["nic2"], g.HostIf, hostIf)
	}
	if info["nic1"] != "nat" {
		t.Fatalf("NIC1 is %q, want nat", info["nic1"])
	}
	mac := func(key string) string {
		hw, err := net.ParseMAC(regexp.MustCompile(`(..)(..)(..)(..)(..)(..)`).ReplaceAllString(info[key], "$1:$2:$3:$4:$5:$6"))
		if err != nil {
			t.Fatalf("%s %q: %v", key, info[key], err)
		}
		return hw.String()
	}
	g.MAC, g.NATMAC = mac("macaddress2"), mac("macaddress1")
	mode, console, _ := strings.Cut(info["uartmode1"], ",")
	if info["uart1"] == "off" || mode != "file" || console == "" {
		t.Fatalf("serial port 1 is %q %q, want a file", info["uart1"], info["uartmode1"])
	}
	g.Console = console
	// The node's disk is a differencing image whose parent is the base
	// VDI: a fresh one holds nothing, so its content is the base's, which
	// is what the guest below boots (through a qcow2 overlay).
	recs := parseRecords(vb.must(ctx, "list", "hdds"))
	parent := ""
	for _, r := range recs {
		if r["Location"] == g.Disk {
			parent = r["Parent UUID"]
		}
	}
	parentLoc := ""
	for _, r := range recs {
		if parent != "" && r["UUID"] == parent {
			parentLoc = r["Location"]
		}
	}
	if parentLoc != base {
		t.Fatalf("the VM's disk %s has parent %q (%s), want the base image %s", g.Disk, parent, parentLoc, base)
	}
	return g
}

// bootVBoxGuest boots, inside the test's namespace, the guest VirtualBox
// would run for g: QEMU under TCG with a qcow2 overlay of base, the seed
// ISO on virtio-scsi, NIC1 (NAT) as restricted user-mode networking and
// NIC2 on a tap attached to the host-only bridge, each with the MAC the
// provider gave VirtualBox, and the serial console written to g's console
// file.
// The channel gets QEMU's exit. QEMU is stopped at cleanup.
func (e *env) bootVBoxGuest(ctx context.Context, g vboxGuest, base, work string) <-chan error {
	t := e.t
	t.Helper()
	overlay := filepath.Join(work, "red.qcow2")
	e.run(ctx, nil, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "vdi", "-b", base, overlay)
	const tap = "vbtap0"
	e.run(ctx, nil, "ip", "-n", e.ns, "tuntap", "add", "dev", tap, "mode", "tap")
	e.run(ctx, nil, "ip", "-n", e.ns, "link", "set", tap, "master", g.HostIf)
	e.run(ctx, nil, "ip", "-n", e.ns, "link", "set", tap, "up")

	esc := func(s string) string { return strings.ReplaceAll(s, ",", ",,") }
	args := []string{"netns", "exec", e.ns, "qemu-system-x86_64",
		"-name", "guest=red-virtualbox-seed",
		"-nodefaults", "-no-user-config",
		"-machine", "q35", "-accel", "tcg",
		"-m", g.Memory, "-smp", g.CPUs,
		"-display", "none", "-monitor", "none",
		"-serial", "file:" + g.Console,
		"-drive", "file=" + esc(overlay) + ",format=qcow2,if=virtio",
		"-device", "virtio-scsi-pci,id=scsi0",
		"-drive", "file=" + esc(g.Seed) + ",format=raw,if=none,id=seed,media=cdrom,readonly=on",
		"-device", "scsi-cd,drive=seed,bus=scsi0.0",
		// NIC1: NAT, isolated (restrict=on: nothing leaves QEMU).
		"-netdev", "user,id=nat,restrict=on",
		"-device", "virtio-net-pci,netdev=nat,mac=" + g.NATMAC,
		// NIC2: host-only.
		"-netdev", "tap,id=net0,ifname=" + tap + ",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=net0,mac=" + g.MAC,
		"-device", "virtio-rng-pci",
		"-kernel", filepath.Join(e.image, "vmlinuz"),
		"-initrd", filepath.Join(e.image, "initrd.img"),
		"-append", "root=/dev/vda rw console=ttyS0",
	}
	cmd := exec.Command("ip", args...)
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &errb, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, errb.String())
		}
		done <- err
		close(exited)
	}()
	t.Cleanup(func() {
		// ip netns exec execs QEMU in place: the pid is QEMU's.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		select {
		case <-exited:
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	return done
}

func readFileString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

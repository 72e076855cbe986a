package qemu

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/localvm"
)

const fixInstall = "install QEMU: apt-get install qemu-system-x86 qemu-utils"

// Preflight checks the host and the node specs before anything is made:
// the QEMU binaries and ip, the image files, the bridge and its address,
// each requested address and MAC, KVM when asked for, and the right to
// create tap devices. All problems are returned at once, each an
// *usererr.InputError that says how to fix it.
func (p *Provider) Preflight(ctx context.Context, specs []provider.NodeSpec) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	c := p.cfg

	if _, err := exec.LookPath(c.Binary); err != nil {
		add(usererr.BadInput(fixInstall+", or set binary: to its path", "qemu: QEMU binary %q not found: %v", c.Binary, err))
	}
	if _, err := exec.LookPath(c.QemuImg); err != nil {
		add(usererr.BadInput(fixInstall+", or set qemu_img: to its path", "qemu: %q not found: %v", c.QemuImg, err))
	}
	if _, err := exec.LookPath("ip"); err != nil {
		add(usererr.BadInput("install iproute2: apt-get install iproute2", "qemu: the ip command is not found: %v", err))
	}

	add(readable("image", c.Image, `set "image:" to an existing base disk image`))
	if c.Kernel != "" {
		add(readable("kernel", c.Kernel, `set "kernel:" to an existing kernel, or remove it to boot from the disk`))
	}
	if c.Initrd != "" {
		add(readable("initrd", c.Initrd, `set "initrd:" to an existing initramfs, or remove it`))
	}

	if c.Accel == "kvm" && !p.kvmUsable() {
		add(kvmError())
	}
	if !hasNetAdmin() {
		add(usererr.BadInput("run clusterctl as root (tap devices need CAP_NET_ADMIN)", "qemu: this process may not create tap devices"))
	}

	host, err := bridgeAddr(c.Bridge, c.Prefix())
	add(err)
	errs = append(errs, checkSpecs(p, specs, host)...)
	return errors.Join(errs...)
}

// checkSpecs checks what each node asks for against the network: its
// address is a usable host address in cidr and not the bridge's (host is
// the zero Addr when unknown); MACs are valid and distinct.
func checkSpecs(p *Provider, specs []provider.NodeSpec, host netip.Addr) []error {
	var errs []error
	prefix := p.cfg.Prefix()
	broadcast := localvm.Broadcast(prefix)
	macs := map[string]string{}
	addrs := map[netip.Addr]string{}
	for _, s := range specs {
		if err := localvm.CheckName(Name, s.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := checkPaths(pathsIn(p.nodeDir(s.Name))); err != nil {
			errs = append(errs, fmt.Errorf("qemu: node %q: %w", s.Name, err))
		}
		if a := s.Address; a.IsValid() {
			switch {
			case !prefix.Contains(a):
				errs = append(errs, usererr.BadInput(fmt.Sprintf("choose an address in %s (the qemu cidr:)", prefix),
					"qemu: node %q: address %s is outside the cluster network %s", s.Name, a, prefix))
			case a == host:
				errs = append(errs, usererr.BadInput(fmt.Sprintf("choose another address in %s; %s belongs to the host's bridge %q", prefix, host, p.cfg.Bridge),
					"qemu: node %q: address %s is the bridge's own address", s.Name, a))
			case a == prefix.Addr() || a == broadcast:
				errs = append(errs, usererr.BadInput(fmt.Sprintf("choose a host address in %s, not its network or broadcast address", prefix),
					"qemu: node %q: address %s cannot be a host's", s.Name, a))
			case addrs[a] != "":
				errs = append(errs, usererr.BadInput("give each node its own address",
					"qemu: nodes %q and %q both ask for address %s", addrs[a], s.Name, a))
			default:
				addrs[a] = s.Name
			}
		}
		if s.MAC != "" {
			if err := checkMAC(s.MAC); err != nil {
				errs = append(errs, usererr.BadInput("use a unicast MAC address like 52:54:00:12:34:56",
					"qemu: node %q: %v", s.Name, err))
			} else if other := macs[s.MAC]; other != "" {
				errs = append(errs, usererr.BadInput("give each node its own MAC address",
					"qemu: nodes %q and %q both ask for MAC %s", other, s.Name, s.MAC))
			} else {
				macs[s.MAC] = s.Name
			}
		}
	}
	return errs
}

func readable(key, path, fix string) error {
	f, err := os.Open(path)
	if err != nil {
		return usererr.BadInput(fix, "qemu: %s %q cannot be read: %v", key, path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return usererr.BadInput(fix, "qemu: %s %q cannot be read: %v", key, path, err)
	}
	if !st.Mode().IsRegular() {
		return usererr.BadInput(fix, "qemu: %s %q is not a regular file", key, path)
	}
	return nil
}

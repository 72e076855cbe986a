package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

// run runs a helper command and includes its output in the error.
func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, name, args...)
	return err
}

func output(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// interfaceByName finds a network interface of the current network
// namespace; ok is false when there is none of that name.
func interfaceByName(name string) (*net.Interface, bool, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, false, fmt.Errorf("list network interfaces: %w", err)
	}
	for i := range ifs {
		if ifs[i].Name == name {
			return &ifs[i], true, nil
		}
	}
	return nil, false, nil
}

// bridgeFix tells how to make the bridge with a host address in prefix.
func bridgeFix(bridge string, prefix netip.Prefix) string {
	host := netip.PrefixFrom(prefix.Addr().Next(), prefix.Bits())
	return fmt.Sprintf("create it (as root): ip link add %s type bridge && ip addr add %s dev %s && ip link set %s up",
		bridge, host, bridge, bridge)
}

// bridgeAddr returns the bridge's first IPv4 address inside prefix.
func bridgeAddr(bridge string, prefix netip.Prefix) (netip.Addr, error) {
	ifc, ok, err := interfaceByName(bridge)
	if err != nil {
		return netip.Addr{}, err
	}
	if !ok {
		return netip.Addr{}, usererr.BadInput(bridgeFix(bridge, prefix), "qemu: bridge %q does not exist", bridge)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("qemu: addresses of bridge %q: %w", bridge, err)
	}
	var seen []string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		seen = append(seen, ip.String())
		if ip.Is4() && prefix.Contains(ip) {
			return ip, nil
		}
	}
	host := netip.PrefixFrom(prefix.Addr().Next(), prefix.Bits())
	return netip.Addr{}, usererr.BadInput(
		fmt.Sprintf("give it one (as root): ip addr add %s dev %s, or set cidr: to the bridge's network", host, bridge),
		"qemu: bridge %q has no IPv4 address in %s (it has: %s)", bridge, prefix, strings.Join(seenOrNone(seen), ", "))
}

func seenOrNone(s []string) []string {
	if len(s) == 0 {
		return []string{"none"}
	}
	return s
}

// createTap makes a persistent tap device on bridge, replacing a stale one.
func createTap(ctx context.Context, tap, bridge string) error {
	if _, ok, err := interfaceByName(bridge); err != nil {
		return err
	} else if !ok {
		return usererr.BadInput("create the bridge first (see qemu provider preflight)", "bridge %q does not exist", bridge)
	}
	if err := deleteTap(ctx, tap); err != nil {
		return err
	}
	if err := run(ctx, "ip", "tuntap", "add", "dev", tap, "mode", "tap"); err != nil {
		return fmt.Errorf("tap device: %w", err)
	}
	if err := run(ctx, "ip", "link", "set", "dev", tap, "master", bridge); err != nil {
		return fmt.Errorf("tap device: %w", err)
	}
	if err := run(ctx, "ip", "link", "set", "dev", tap, "up"); err != nil {
		return fmt.Errorf("tap device: %w", err)
	}
	return nil
}

// deleteTap removes the tap device; a missing one is not an error.
func deleteTap(ctx context.Context, tap string) error {
	if _, ok, err := interfaceByName(tap); err != nil || !ok {
		return err
	}
	if err := run(ctx, "ip", "link", "del", "dev", tap); err != nil {
		if _, ok, _ := interfaceByName(tap); !ok {
			return nil // gone meanwhile
		}
		return fmt.Errorf("tap device: %w", err)
	}
	return nil
}

// qemuProcess reads the pid file and reports whether that pid is a live
// QEMU started with exactly this pid file. A zombie has an empty cmdline
// and so counts as dead.
func qemuProcess(pidFile string) (pid int, alive bool, err error) {
	b, err := os.ReadFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false, nil // a torn or foreign pid file: no process of ours
	}
	return pid, isOurs(pid, pidFile), nil
}

// procRoot is where isOurs reads process command lines; tests point it at
// a fake tree.
var procRoot = "/proc"

func isOurs(pid int, pidFile string) bool {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/cmdline", procRoot, pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-pidfile" && args[i+1] == pidFile {
			return true
		}
	}
	return false
}

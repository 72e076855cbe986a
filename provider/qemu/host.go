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
	"time"

	"golang.org/x/sys/unix"

	"github.com/clusterctl/clusterctl/provider"
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
		return netip.Addr{}, provider.BadInput(bridgeFix(bridge, prefix), "qemu: bridge %q does not exist", bridge)
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
	return netip.Addr{}, provider.BadInput(
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
		return provider.BadInput("create the bridge first (see qemu provider preflight)", "bridge %q does not exist", bridge)
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

// stopVM stops the node's QEMU: ACPI power-down over QMP and up to
// powerdown for the guest to go, then SIGTERM, then SIGKILL. It returns once
// the process is gone. When ctx ends first it sends SIGKILL and returns
// ctx's error.
func stopVM(ctx context.Context, np nodePaths, powerdown time.Duration) error {
	pid, alive, err := qemuProcess(np.PID)
	if err != nil || !alive {
		return err
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	// The pidfd pins the process; check it is still ours (pid not recycled).
	if !isOurs(pid, np.PID) {
		return nil
	}

	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	qerr := qmpPowerdown(qctx, np.QMP)
	cancel()
	if qerr == nil && waitExit(ctx, fd, powerdown) {
		return nil
	}
	for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGKILL} {
		if ctx.Err() != nil {
			break
		}
		if err := unix.PidfdSendSignal(fd, sig, nil, 0); errors.Is(err, unix.ESRCH) {
			return nil
		} else if err != nil {
			return fmt.Errorf("signal %v to QEMU pid %d: %w", sig, pid, err)
		}
		if waitExit(ctx, fd, 10*time.Second) {
			return nil
		}
	}
	if ctx.Err() != nil {
		_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		return fmt.Errorf("QEMU pid %d did not exit in time (sent SIGKILL): %w", pid, ctx.Err())
	}
	return fmt.Errorf("QEMU pid %d survived SIGKILL", pid)
}

// waitExit waits until the process behind pidfd exits, at most d and not
// beyond ctx, and reports whether it did.
func waitExit(ctx context.Context, pidfd int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if err == nil && n > 0 {
			return true
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
	}
}

// hasNetAdmin reports whether this process may create tap devices.
func hasNetAdmin() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return os.Geteuid() == 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_NET_ADMIN) != 0
		}
	}
	return os.Geteuid() == 0
}

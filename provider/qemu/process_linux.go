//go:build linux

package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// stopVM stops the node's QEMU: ACPI power-down over QMP and up to
// powerdown for the guest to go, then QMP quit (the power pulled), then
// SIGTERM, then SIGKILL. It returns once the process is gone. When ctx
// ends first it sends SIGKILL and returns ctx's error.
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
	if ctx.Err() == nil {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		qerr := qmpQuit(qctx, np.QMP)
		cancel()
		if qerr == nil && waitExit(ctx, fd, 10*time.Second) {
			return nil
		}
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

//go:build !linux

package qemu

import (
	"context"
	"errors"
	"time"
)

// The QEMU provider needs Linux: tap devices on a Linux bridge, /proc and
// pidfds. Elsewhere it builds, and fails when asked to stop a VM.

func stopVM(ctx context.Context, np nodePaths, powerdown time.Duration) error {
	pid, alive, err := qemuProcess(np.PID)
	if err != nil || !alive {
		return err
	}
	_ = pid
	return errors.New("stopping QEMU is only supported on Linux")
}

func hasNetAdmin() bool { return false }

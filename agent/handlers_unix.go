//go:build unix

package agent

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup makes cmd the leader of its own process group and has a
// cancel (the timeout) kill the whole group, so that a handler's children
// die with it.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}

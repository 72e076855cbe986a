package virtualbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

// installPaths are where VirtualBox's installers put VBoxManage, tried
// after PATH.
func installPaths() []string {
	switch runtime.GOOS {
	case "darwin":
		return []string{"/Applications/VirtualBox.app/Contents/MacOS/VBoxManage", "/usr/local/bin/VBoxManage"}
	case "windows":
		var out []string
		for _, env := range []string{"VBOX_MSI_INSTALL_PATH", "VBOX_INSTALL_PATH"} {
			if d := os.Getenv(env); d != "" {
				out = append(out, filepath.Join(d, "VBoxManage.exe"))
			}
		}
		pf := os.Getenv("ProgramFiles")
		if pf == "" {
			pf = `C:\Program Files`
		}
		return append(out, filepath.Join(pf, "Oracle", "VirtualBox", "VBoxManage.exe"))
	default:
		return []string{"/usr/bin/VBoxManage", "/usr/local/bin/VBoxManage", "/usr/lib/virtualbox/VBoxManage", "/opt/VirtualBox/VBoxManage"}
	}
}

// errNotInstalled is an *InputError: VBoxManage was not found.
func errNotInstalled(tried []string) error {
	return usererr.BadInput(
		"install VirtualBox (6.1.28 or later; https://www.virtualbox.org/wiki/Downloads), or point the vboxmanage: key or "+EnvVBoxManage+" at VBoxManage",
		"virtualbox: VirtualBox is not installed: VBoxManage not found (looked in PATH and %s)", strings.Join(tried, ", "))
}

// findVBoxManage resolves the VBoxManage to run: $CLUSTERCTL_VBOXMANAGE,
// then the configured path, then PATH, then the usual install locations.
func findVBoxManage(configured string) (string, error) {
	if p := os.Getenv(EnvVBoxManage); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", usererr.BadInput("point "+EnvVBoxManage+" at the VBoxManage executable, or unset it",
				"virtualbox: %s=%q is not an executable: %v", EnvVBoxManage, p, err)
		}
		return p, nil
	}
	if configured != "" {
		p, err := exec.LookPath(configured)
		if err != nil {
			return "", usererr.BadInput(`point the vboxmanage: key at the VBoxManage executable, or remove it to search PATH`,
				"virtualbox: vboxmanage %q is not an executable: %v", configured, err)
		}
		return p, nil
	}
	for _, name := range []string{"VBoxManage", "vboxmanage"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	tried := installPaths()
	for _, p := range tried {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", errNotInstalled(tried)
}

// registryVerbs are the VBoxManage subcommands that change VirtualBox's
// global registry (VirtualBox.xml: machines, media, host-only networks).
// VBoxSVC answers concurrent ones with "object is not ready" or lost
// updates, so this process runs them one at a time; every other
// subcommand (modifyvm, storageattach, startvm, showvminfo, ...) acts on one
// VM and runs in parallel.
var registryVerbs = map[string]bool{
	"createvm": true, "registervm": true, "unregistervm": true,
	"clonemedium": true, "createmedium": true, "closemedium": true, "modifymedium": true,
	"hostonlyif": true, "hostonlynet": true, "dhcpserver": true,
}

// transient are stderr fragments of failures that go away when the call is
// repeated: a VBoxSVC object still initialising, a session lock that a
// VM process that just ended has not released yet.
var transient = []string{
	"object is not ready",
	"is already locked for a session",
	"is already locked by a session",
	"session is busy",
	"VERR_SEM_DESTROYED",
}

// runner runs VBoxManage.
type runner struct {
	path    string
	timeout time.Duration
	// retries is how often a transient failure is retried; backoff is the
	// pause before the first retry (doubled each time).
	retries int
	backoff time.Duration

	registry sync.Mutex
}

// vboxError is a failed VBoxManage call: its arguments, exit status and
// the text VBoxManage printed.
type vboxError struct {
	Args   []string
	Err    error // exit error, timeout, or nil when only an error: line failed it
	Stdout string
	Stderr string
}

func (e *vboxError) Error() string {
	msg := errorLines(e.Stderr)
	if msg == "" {
		msg = strings.TrimSpace(e.Stderr)
	}
	cause := ""
	if e.Err != nil {
		cause = ": " + e.Err.Error()
	}
	if msg != "" {
		msg = ": " + msg
	}
	return fmt.Sprintf("VBoxManage %s%s%s", strings.Join(e.Args, " "), cause, msg)
}

func (e *vboxError) Unwrap() error { return e.Err }

// errorLines returns the "error:" lines VBoxManage printed, without the
// "VBoxManage: error: " prefix, joined by "; ". Context and Details lines
// are left out: they name source files, not causes.
func errorLines(stderr string) string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(l)
		_, msg, ok := strings.Cut(l, "error: ")
		if !ok {
			continue
		}
		if strings.HasPrefix(msg, "Details: ") || strings.HasPrefix(msg, "Context: ") {
			continue
		}
		out = append(out, msg)
	}
	return strings.Join(out, "; ")
}

// hasErrorLine reports whether VBoxManage printed an error line: some
// subcommands print one and still exit with status 0.
func hasErrorLine(stderr string) bool {
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "VBoxManage: error:") {
			return true
		}
	}
	return false
}

func isTransient(stderr string) bool {
	for _, t := range transient {
		if strings.Contains(stderr, t) {
			return true
		}
	}
	return false
}

// run runs VBoxManage with args and returns its stdout. Each attempt has
// its own timeout; transient failures are retried; an "error:" line is a
// failure even with exit status 0. The error is a *vboxError, classified
// (see classify) when its cause is known.
func (r *runner) run(ctx context.Context, args ...string) (string, error) {
	if len(args) > 0 && registryVerbs[args[0]] {
		r.registry.Lock()
		defer r.registry.Unlock()
	}
	wait := r.backoff
	for attempt := 0; ; attempt++ {
		out, err := r.once(ctx, args)
		if err == nil {
			return out, nil
		}
		var ve *vboxError
		if attempt < r.retries && errors.As(err, &ve) && isTransient(ve.Stderr) && ctx.Err() == nil {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return out, classify(err)
			}
			wait *= 2
			continue
		}
		return out, classify(err)
	}
}

func (r *runner) once(ctx context.Context, args []string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, r.path, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if cctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		err = fmt.Errorf("no answer within %s (virtualbox command_timeout): %w", r.timeout, context.DeadlineExceeded)
	} else if ctx.Err() != nil && err != nil {
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	if err != nil || hasErrorLine(stderr.String()) {
		return stdout.String(), &vboxError{Args: args, Err: err, Stdout: stdout.String(), Stderr: stderr.String()}
	}
	return stdout.String(), nil
}

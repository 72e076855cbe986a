// Package sshclient runs the system's OpenSSH client (ssh, scp) against a
// node with clusterctl's key, its managed known_hosts file and strict host
// key checking, and runs one command on many nodes with every output line
// prefixed by the node's name.
//
// It builds argument lists only from validated values (a user name, an IP
// address, file paths) and ends ssh's options with "--", so nothing a user
// types after the node's name can become an ssh option.
package sshclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
)

// Target is one node as ssh reaches it.
type Target struct {
	Name       string // the node's name (output prefixes, messages)
	User       string // login user on the node
	Address    string // IP address ssh connects to
	Port       int    // 22 when 0
	Alias      string // HostKeyAlias: the node's entry in KnownHosts
	Identity   string // private key file
	KnownHosts string // the known_hosts file clusterctl manages
}

func (t Target) port() int {
	if t.Port == 0 {
		return 22
	}
	return t.Port
}

// options are the -o options every ssh and scp call gets: only our key,
// only our known_hosts, strict checking under the node's alias.
func (t Target) options() []string {
	opts := []string{
		"IdentitiesOnly=yes",
		"IdentityFile=" + t.Identity,
		"IdentityAgent=none",
		"UserKnownHostsFile=" + t.KnownHosts,
		"GlobalKnownHostsFile=/dev/null",
		"StrictHostKeyChecking=yes",
		"HostKeyAlias=" + t.Alias,
		"HostKeyAlgorithms=ssh-ed25519",
		"CheckHostIP=no",
		"UpdateHostKeys=no",
		"BatchMode=yes",
		"ConnectTimeout=15",
		// A connection that stops moving (a guest whose network stalled)
		// ends after about a minute instead of hanging the command.
		"ServerAliveInterval=15",
		"ServerAliveCountMax=4",
		"User=" + t.User,
		"Port=" + strconv.Itoa(t.port()),
	}
	args := make([]string, 0, 2*len(opts))
	for _, o := range opts {
		args = append(args, "-o", o)
	}
	return args
}

// SSHArgs returns the arguments (after "ssh") that run command on t, or
// open a login shell when command is empty. noStdin adds -n.
func SSHArgs(t Target, command []string, noStdin bool) []string {
	args := t.options()
	if noStdin {
		args = append(args, "-n")
	}
	args = append(args, "--", t.Address)
	return append(args, command...)
}

// Remote returns path on t as scp writes it: "ADDRESS:PATH", with an IPv6
// address in brackets.
func (t Target) Remote(path string) string {
	if a, err := netip.ParseAddr(t.Address); err == nil && a.Is6() {
		return "[" + t.Address + "]:" + path
	}
	return t.Address + ":" + path
}

// SCPArgs returns the arguments (after "scp") that copy src to dst, one of
// which is t.Remote(...). recursive adds -r.
func SCPArgs(t Target, recursive bool, src, dst string) []string {
	args := t.options()
	if recursive {
		args = append(args, "-r")
	}
	return append(args, "--", src, dst)
}

// Client is the OpenSSH client on this machine.
type Client struct {
	SSH, SCP string // paths of the programs
}

// ErrNotInstalled is returned by Find when ssh or scp is missing.
var ErrNotInstalled = errors.New("the OpenSSH client is not installed")

// Find looks ssh and scp up in PATH.
func Find() (Client, error) {
	ssh, err := exec.LookPath("ssh")
	if err != nil {
		return Client{}, fmt.Errorf("%w: no ssh in PATH", ErrNotInstalled)
	}
	scp, err := exec.LookPath("scp")
	if err != nil {
		return Client{}, fmt.Errorf("%w: no scp in PATH", ErrNotInstalled)
	}
	return Client{SSH: ssh, SCP: scp}, nil
}

// IO is where a command's standard streams go. Nil Stdin is /dev/null.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// ExitRefused is ssh's own exit status for an error of its own (255).
const ExitRefused = 255

// HostKeyError says that ssh refused the node because it presented a host
// key other than the one clusterctl made for it.
type HostKeyError struct {
	Node, Alias, KnownHosts string
}

func (e *HostKeyError) Error() string {
	return fmt.Sprintf("node %q did not present the host key clusterctl made for it when it was created (kept as %s in %s), so ssh refused to talk to it: "+
		"the machine at its address is not the node clusterctl made, or its host key was replaced", e.Node, e.Alias, e.KnownHosts)
}

// Run runs ssh with command on t and returns the exit status: the remote
// command's, or 255 for ssh's own failures. When ssh refused the node's
// host key the error is a *HostKeyError (ssh's own message is on stderr).
// A nil error with a status means ssh ran.
func (c Client) Run(ctx context.Context, t Target, command []string, s IO) (int, error) {
	return c.run(ctx, t, exec.CommandContext(ctx, c.SSH, SSHArgs(t, command, s.Stdin == nil)...), s)
}

// Copy runs scp from src to dst (one of them made with t.Remote).
func (c Client) Copy(ctx context.Context, t Target, recursive bool, src, dst string, s IO) (int, error) {
	return c.run(ctx, t, exec.CommandContext(ctx, c.SCP, SCPArgs(t, recursive, src, dst)...), s)
}

// hostKeyFailed is what ssh prints (and scp passes on) when strict host
// key checking refuses a host.
var hostKeyFailed = []byte("Host key verification failed.")

func (c Client) run(ctx context.Context, t Target, cmd *exec.Cmd, s IO) (int, error) {
	w := &watcher{w: s.Stderr, needle: hostKeyFailed}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.Stdin, s.Stdout, w
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	case err != nil:
		return ExitRefused, fmt.Errorf("run %s: %w", cmd.Path, err)
	}
	if code == ExitRefused && w.seen() {
		return code, &HostKeyError{Node: t.Name, Alias: t.Alias, KnownHosts: t.KnownHosts}
	}
	return code, nil
}

// watcher passes writes through and notes whether needle went by.
type watcher struct {
	w      io.Writer
	needle []byte
	mu     sync.Mutex
	tail   []byte
	found  bool
}

func (w *watcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	if !w.found {
		buf := append(w.tail, p...)
		w.found = bytes.Contains(buf, w.needle)
		if keep := len(w.needle); len(buf) > keep {
			buf = buf[len(buf)-keep:]
		}
		w.tail = append([]byte(nil), buf...)
	}
	w.mu.Unlock()
	if w.w == nil {
		return len(p), nil
	}
	return w.w.Write(p)
}

func (w *watcher) seen() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.found
}

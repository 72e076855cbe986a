// Package sshtest starts a real OpenSSH server (/usr/sbin/sshd) on a
// loopback address for tests: it plays a node's sshd with the host key and
// authorized keys that clusterctl rendered for the node, and lets the
// current user log in by key only.
package sshtest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/testkit"
)

// Server is one running sshd.
type Server struct {
	Addr string // loopback IP it listens on
	Port int
	User string // the user tests log in as (the current user)
	cmd  *exec.Cmd
	logs *strings.Builder
}

// SSHD returns the path of sshd, skipping the test when it is missing
// unless CLUSTERCTL_REQUIRE_TOOLS=1 (then it fails).
func SSHD(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	testkit.Missing(t, "sshd is not installed (apt-get install openssh-server)")
	return ""
}

// Start runs sshd on addr:port with hostKey (an OpenSSH private key file's
// content) and authorizedKeys (authorized_keys lines) until the test ends.
func Start(t testing.TB, addr string, port int, hostKey []byte, authorizedKeys []string) *Server {
	t.Helper()
	sshd := SSHD(t)
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// sshd running as root wants its privilege separation directory.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	hk := filepath.Join(dir, "ssh_host_ed25519_key")
	ak := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(hk, hostKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ak, []byte(strings.Join(authorizedKeys, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sshd_config")
	conf := fmt.Sprintf(`ListenAddress %s:%d
HostKey %s
AuthorizedKeysFile %s
PidFile none
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowUsers %s
Subsystem sftp internal-sftp
LogLevel VERBOSE
`, addr, port, hk, ak, u.Username)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: addr, Port: port, User: u.Username, logs: &strings.Builder{}}
	s.cmd = exec.Command(sshd, "-D", "-e", "-f", cfg)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			s.logs.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "Server listening") {
				once = true
				close(listening)
			}
		}
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	})
	select {
	case <-listening:
	case <-time.After(10 * time.Second):
		t.Fatalf("sshd did not start listening on %s:%d", addr, port)
	}
	return s
}

// Stop ends the server (a node going away).
func (s *Server) Stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

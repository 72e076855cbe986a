// Package mototest runs moto's EC2/S3/SSM emulator (moto_server) on a free
// loopback port for the EC2 provider's tests.
//
// Without moto the tests are skipped, unless CLUSTERCTL_REQUIRE_TOOLS=1
// (CI): then a missing moto fails them. Install it with
// `pip install "moto[server]"` (scripts/deps.sh does).
package mototest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/testkit"
)

// Server is a running moto_server.
type Server struct {
	URL string // http://127.0.0.1:PORT
	cmd *exec.Cmd
	log *bytes.Buffer
	mu  sync.Mutex
}

// command returns how to start moto: moto_server if it is in PATH, else
// python3 -m moto.server when the module imports.
func command() ([]string, bool) {
	if p, err := exec.LookPath("moto_server"); err == nil {
		return []string{p}, true
	}
	if py, err := exec.LookPath("python3"); err == nil {
		if exec.Command(py, "-c", "import moto.server").Run() == nil {
			return []string{py, "-m", "moto.server"}, true
		}
	}
	return nil, false
}

// Require skips (or, with CLUSTERCTL_REQUIRE_TOOLS=1, fails) t when moto
// is not installed (testkit.Missing).
func Require(t testing.TB) []string {
	t.Helper()
	argv, ok := command()
	if !ok {
		testkit.Missing(t, `moto is not installed: pip install "moto[server]"`)
	}
	return argv
}

// Start runs a moto_server for the caller; Stop ends it. extraEnv is added
// to its environment.
func Start(t testing.TB, extraEnv ...string) *Server {
	t.Helper()
	argv := Require(t)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := testkit.FreePort(t, "127.0.0.1")
		s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", port), log: new(bytes.Buffer)}
		args := append(append([]string{}, argv[1:]...), "-H", "127.0.0.1", "-p", fmt.Sprint(port))
		s.cmd = exec.Command(argv[0], args...)
		s.cmd.Env = append(os.Environ(), extraEnv...)
		s.cmd.Stdout, s.cmd.Stderr = lockedWriter{s}, lockedWriter{s}
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("start moto: %v", err)
		}
		if lastErr = s.wait(30 * time.Second); lastErr == nil {
			return s
		}
		s.Stop()
	}
	t.Fatalf("moto_server did not come up: %v", lastErr)
	return nil
}

type lockedWriter struct{ s *Server }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.s.log.Len() < 1<<20 {
		w.s.log.Write(b)
	}
	return len(b), nil
}

// Log returns what moto printed.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

func (s *Server) wait(d time.Duration) error {
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("moto exited (%v): %s", err, s.Log())
		default:
		}
		resp, err := http.Get(s.URL + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			go func() { <-exited }()
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("no answer on %s within %s: %s", s.URL, d, s.Log())
}

// Reset forgets everything moto holds (all regions, all services).
func (s *Server) Reset(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/moto-api/reset", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("reset moto: %v", err)
	}
	resp.Body.Close()
}

// Stop ends the server and its children.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	}
}

// IsolateAWSEnv makes the SDK's default chain see only what a test gives
// it: no shared config or credentials files of this machine, no profile,
// no instance metadata service (no address but loopback is ever asked).
func IsolateAWSEnv(t testing.TB) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent/clusterctl-test/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/clusterctl-test/credentials")
}

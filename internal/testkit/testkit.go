// Package testkit is for tests only: the helpers that tests of several
// packages share, each in one place. Non-test code never imports it.
//
//   - Missing and Tool: the CLUSTERCTL_REQUIRE_TOOLS rule. A test that
//     needs a program that is not installed is skipped, unless
//     CLUSTERCTL_REQUIRE_TOOLS=1 (CI, `make ci`): then it fails.
//   - FreePort: a port free on a loopback address, for TCP and UDP.
//   - WaitFor: polls a test's set-up until it holds.
//   - WhatIsMyIP: a loopback stand-in for the what-is-my-IP services
//     internal/publicip asks.
package testkit

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/publicip"
)

// RequireToolsEnv names the variable that, set to 1, makes a missing tool
// fail the test that needs it instead of skipping it.
const RequireToolsEnv = "CLUSTERCTL_REQUIRE_TOOLS"

// ToolsRequired reports whether RequireToolsEnv is 1.
func ToolsRequired() bool { return os.Getenv(RequireToolsEnv) == "1" }

// Missing skips t because something it needs is missing (the message says
// what, and how to install it), or fails t when ToolsRequired.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if ToolsRequired() {
		t.Fatalf("%s (and %s=1)", msg, RequireToolsEnv)
	}
	t.Skip(msg)
}

// Tool returns the path of the program name, or calls Missing.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s is not installed: %v", name, err)
	}
	return p
}

// FreePort returns a port that was free on addr (an IP address) for both
// TCP and UDP.
func FreePort(t testing.TB, addr string) int {
	t.Helper()
	var last error
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(addr, strconv.Itoa(port)))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
		last = err
	}
	t.Fatalf("no port free for both TCP and UDP on %s: %v", addr, last)
	return 0
}

// WaitFor polls cond until it holds, and fails t (saying it waited for
// what) once limit has passed. It waits for a test's set-up, never times
// the code under test.
func WaitFor(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WhatIsMyIP points publicip's detection at a loopback server for the
// test: it answers status and body, and counts the requests.
func WhatIsMyIP(t testing.TB, status int, body string) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	t.Setenv(publicip.EnvURL, srv.URL)
	return &n
}

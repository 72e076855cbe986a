package testkit

import (
	"net"
	"strconv"
	"testing"
	"time"
)

// The port FreePort returns can be bound for TCP and for UDP.
func TestFreePortBindsBoth(t *testing.T) {
	port := FreePort(t, "127.0.0.1")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("tcp %s: %v", addr, err)
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("udp %s: %v", addr, err)
	}
	u.Close()
}

// WaitFor returns once cond holds, having asked until it did.
func TestWaitForReturnsWhenCondHolds(t *testing.T) {
	n := 0
	WaitFor(t, "the third call", time.Minute, func() bool { n++; return n == 3 })
	if n != 3 {
		t.Errorf("cond called %d times, want 3", n)
	}
}

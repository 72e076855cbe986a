package agent

import (
	"io"
	"log"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/testkit"
)

// Shutdown returns even when packets and connections arrived that nobody
// received: before the gate opened (an agent that stops while it starts),
// the listeners hold them, and NetTransport.Shutdown waits for the
// listeners.
func TestGatedTransportShutdownWithHeldTraffic(t *testing.T) {
	port := testkit.FreePort(t, "127.0.0.1")
	tr, err := newGatedTransport("127.0.0.1", port, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	u, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for range 3 {
		if _, err := u.Write([]byte("a packet nobody reads")); err != nil {
			t.Fatal(err)
		}
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(200 * time.Millisecond) // the listeners take them and block handing them over

	done := make(chan error, 1)
	go func() { done <- tr.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return: a listener is stuck handing over what arrived before the gate opened")
	}
}

package agent

import (
	"bytes"
	"fmt"
	"log"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// Lines as memberlist v0.7.0 writes them when a peer has the wrong key or
// label (net.go, with LogAddress/LogConn's "from=").
const (
	wrongKeyLine   = "[ERR] memberlist: Decrypt packet failed: No installed keys could decrypt the message from=%s"
	wrongLabelLine = "[ERR] memberlist: discarding stream with unacceptable label \"other\": from=%s"
)

func TestPeerLinesAreRateLimitedPerAddress(t *testing.T) {
	var out bytes.Buffer
	w := newSlogWriter(slog.New(slog.NewTextHandler(&out, nil)), nil)
	clock := time.Unix(1000, 0)
	w.now = func() time.Time { return clock }
	lg := log.New(w, "", 0)

	for i := range 50 {
		lg.Printf(wrongKeyLine, fmt.Sprintf("192.0.2.7:%d", 7946+i)) // one address, many ports
	}
	lg.Printf(wrongLabelLine, "192.0.2.8:7946")
	lg.Printf("[INFO] serf: EventMemberJoin: n2 192.0.2.9") // not about a refused peer
	if n := strings.Count(out.String(), "192.0.2.7"); n != 1 {
		t.Fatalf("%d lines for 50 refusals of one address within a minute, want 1:\n%s", n, out.String())
	}
	for _, want := range []string{"192.0.2.8", "EventMemberJoin"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no line for %s:\n%s", want, out.String())
		}
	}
	clock = clock.Add(61 * time.Second)
	lg.Printf(wrongKeyLine, "192.0.2.7:7946")
	if n := strings.Count(out.String(), "192.0.2.7"); n != 2 || !strings.Contains(out.String(), "suppressed_since_last_log=49") {
		t.Fatalf("a minute later: %d lines, want 2, the second counting 49 suppressed:\n%s", n, out.String())
	}
}

func TestPeerLineFloodIsCounted(t *testing.T) {
	var out bytes.Buffer
	w := newSlogWriter(slog.New(slog.NewTextHandler(&out, nil)), nil)
	clock := time.Unix(1000, 0)
	w.now = func() time.Time { return clock }
	lg := log.New(w, "", 0)
	const flood = peerLogSources + 1000
	for i := range flood {
		lg.Printf(wrongKeyLine, fmt.Sprintf("10.%d.%d.%d:7946", i>>16&255, i>>8&255, i&255))
	}
	if n := strings.Count(out.String(), "Decrypt packet failed"); n != peerLogSources {
		t.Fatalf("%d lines for %d addresses, want %d (the table's size)", n, flood, peerLogSources)
	}
	if n := w.peers.Len(); n > peerLogSources {
		t.Fatalf("the table holds %d addresses", n)
	}
	// The next line a minute on, whatever it says, brings the count.
	clock = clock.Add(61 * time.Second)
	lg.Printf("[DEBUG] memberlist: Stream connection from=192.0.2.1:7946")
	if !strings.Contains(out.String(), "lines=1000 ") {
		t.Fatalf("no summary counting the 1000 addresses past the table:\n%s", out.String()[max(0, out.Len()-2000):])
	}
}

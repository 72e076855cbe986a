package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestLineReporterPrintsOneLinePerPhase(t *testing.T) {
	var b bytes.Buffer
	r := &lineReporter{w: &b}
	r.Phase("red", "creating", 0)
	r.Phase("red", "booting", 1500*time.Millisecond)
	r.Note("red", "something to know")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "booting") || !strings.Contains(lines[1], "2s") || strings.Contains(b.String(), "\x1b") {
		t.Errorf("plain output:\n%q", b.String())
	}
}

func TestLiveReporterRedrawsNodeLines(t *testing.T) {
	var b bytes.Buffer
	r := newLiveReporter(&b)
	r.Phase("red", "creating", 0)
	r.Phase("blue", "creating", 0)
	r.Phase("red", "joined", 95*time.Second)
	r.Close()
	out := b.String()
	if !strings.Contains(out, "\x1b[2A") {
		t.Errorf("the live reporter did not move the cursor back over its two lines:\n%q", out)
	}
	last := out[strings.LastIndex(out, "\x1b[2A"):]
	if !strings.Contains(last, "✓ red") || !strings.Contains(last, "joined") || !strings.Contains(last, "95s") || !strings.Contains(last, "… blue") {
		t.Errorf("final frame:\n%q", last)
	}
}

// status -v says whose gossip view the table shows: one node's, or merged.
func TestStatusViewLine(t *testing.T) {
	for _, c := range []struct {
		views []string
		want  string
	}{
		{nil, "none"},
		{[]string{"red"}, "red's"},
		{[]string{"red", "green", "blue"}, "red's, merged with the views of green, blue"},
	} {
		if got := viewLine(c.views); !strings.Contains(got, c.want) {
			t.Errorf("viewLine(%v) = %q, want it to say %q", c.views, got, c.want)
		}
	}
}

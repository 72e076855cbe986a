package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/clusterctl/clusterctl/cluster"
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

// Names, tags and notes that a node or a provider reports cannot drive the
// terminal through the table: every control character, DEL and bidi
// override is escaped, one helper for every cell.
func TestTableCellsAreMadePrintable(t *testing.T) {
	const (
		esc   = "\x1b[31mred\x1b]0;owned\x07"
		bidi  = "gpu\u202eeman\u2066"
		c1    = "a\u009bb\x7f"
		tab   = "x\ty\nz"
		wrong = "bad\xffutf8"
	)
	r := cluster.StatusReport{Cluster: "lab", Nodes: []cluster.NodeStatus{{
		Name: tab, Provider: "qemu", InstanceID: wrong, Address: "192.0.2.1", Phase: cluster.PhaseJoined,
		ProviderState: c1, Gossip: "alive", Hostname: esc, Detail: bidi, Error: esc,
	}}}
	var out bytes.Buffer
	if err := printStatus(&globals{stdout: &out}, r); err != nil {
		t.Fatal(err)
	}
	var res bytes.Buffer
	if err := printResults(&globals{stdout: &res}, "table", "lab", []cluster.Result{{Name: esc, Address: bidi, Phase: cluster.PhaseFailed, ConsoleTail: "boot\r\n" + esc + "\r\nlogin:"}}); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{"status": out.String(), "up": res.String()} {
		for _, r := range s {
			if (r < 0x20 && r != '\n') || r == 0x7f || (r >= 0x80 && r < 0xa0) || unicode.Is(unicode.Bidi_Control, r) || r == utf8.RuneError {
				t.Errorf("%s: the table holds %U:\n%s", name, r, s)
			}
		}
		if n := strings.Count(strings.TrimSpace(s), "\n"); name == "status" && n != 2 {
			t.Errorf("status: %d lines, want the header, one row and one error line:\n%s", n+1, s)
		}
	}
	for _, want := range []string{`\x1b[31mred\x1b]0;owned\x07`, `gpu\u202eeman\u2066`, `a\x9bb\x7f`, `x\x09y\x0az`, `bad\xffutf8`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status: no %s in:\n%s", want, out.String())
		}
	}
	if !strings.Contains(res.String(), "boot\n\\x1b[31m") {
		t.Errorf("up: the console tail is not escaped line by line:\n%s", res.String())
	}
	if printable("n1 alive 10.0.0.1 ünïcode ✓") != "n1 alive 10.0.0.1 ünïcode ✓" {
		t.Error("printable changed a clean string")
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/internal/usererr"
)

// SchemaVersion tags every machine-readable document clusterctl prints.
const SchemaVersion = "clusterctl/v1"

// format is the value of -o.
type format string

func checkFormat(f string) (format, error) {
	switch f {
	case "table", "json", "yaml":
		return format(f), nil
	}
	return "", usererr.BadInput("use -o table, -o json or -o yaml", "unknown output format %q", f)
}

// emit writes doc as JSON or YAML. The YAML has the same keys as the JSON.
func emit(w io.Writer, f format, doc any) error {
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	if f == "json" {
		_, err = fmt.Fprintf(w, "%s\n", data)
		return err
	}
	var generic any
	if err := json.Unmarshal(data, &generic); err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	out, err := yaml.Marshal(generic)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	_, err = w.Write(out)
	return err
}

// printable is s as it is safe to show on a terminal: C0 and C1 control
// characters (ESC and tab included), DEL, bidirectional overrides and
// isolates, line and paragraph separators, and invalid UTF-8 are written as
// Go escapes (\x1b, \u202e), so that a tag or name a node or provider
// reports cannot move the cursor, recolour, reorder or break the table.
// (-o json and -o yaml escape them already.)
func printable(s string) string {
	clean := func(r rune) bool {
		return r >= 0x20 && r != 0x7f && !(r >= 0x80 && r < 0xa0) && r != utf8.RuneError &&
			!unicode.Is(unicode.Bidi_Control, r) && !unicode.In(r, unicode.Zl, unicode.Zp)
	}
	if strings.IndexFunc(s, func(r rune) bool { return !clean(r) }) < 0 {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				fmt.Fprintf(&b, `\x%02x`, s[i])
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		case clean(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

// row writes one table row to tw (a tabwriter), each cell printable.
func row(tw io.Writer, cells ...string) {
	for i, c := range cells {
		cells[i] = printable(c)
	}
	io.WriteString(tw, strings.Join(cells, "\t")+"\n")
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// lineReporter prints one plain line per phase change: for pipes and logs.
type lineReporter struct {
	mu sync.Mutex
	w  io.Writer
}

func (r *lineReporter) Phase(node string, phase cluster.Phase, elapsed time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.w, "%-12s %-10s %5.0fs\n", printable(node), phase, elapsed.Seconds())
}

func (r *lineReporter) Note(node, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if node == "" {
		fmt.Fprintf(r.w, "note: %s\n", printable(msg))
		return
	}
	fmt.Fprintf(r.w, "%-12s note: %s\n", printable(node), printable(msg))
}

// liveReporter keeps one line per node on a terminal and redraws them every
// second with the current phase and the seconds elapsed.
type liveReporter struct {
	mu     sync.Mutex
	w      io.Writer
	nodes  []string
	phase  map[string]cluster.Phase
	since  map[string]time.Time
	final  map[string]time.Duration
	drawn  int
	stop   chan struct{}
	done   chan struct{}
	notes  []string
	nowFn  func() time.Time
	closed bool
}

func newLiveReporter(w io.Writer) *liveReporter {
	r := &liveReporter{w: w, phase: map[string]cluster.Phase{}, since: map[string]time.Time{}, final: map[string]time.Duration{},
		stop: make(chan struct{}), done: make(chan struct{}), nowFn: time.Now}
	go r.loop()
	return r
}

func (r *liveReporter) loop() {
	defer close(r.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.mu.Lock()
			r.redraw()
			r.mu.Unlock()
		}
	}
}

func (r *liveReporter) Phase(node string, phase cluster.Phase, elapsed time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.phase[node]; !ok {
		r.nodes = append(r.nodes, node)
		sort.Strings(r.nodes)
		r.since[node] = r.nowFn().Add(-elapsed)
	}
	r.phase[node] = phase
	if phase.Final() {
		r.final[node] = elapsed
	}
	r.redraw()
}

func (r *liveReporter) Note(node, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if node != "" {
		msg = node + ": " + msg
	}
	r.notes = append(r.notes, printable(msg))
	r.redraw()
}

func (r *liveReporter) redraw() {
	if r.closed {
		return
	}
	var b strings.Builder
	if r.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", r.drawn)
	}
	lines := 0
	for _, n := range r.notes {
		fmt.Fprintf(&b, "\x1b[2Knote: %s\n", n)
	}
	r.notes = nil
	for _, n := range r.nodes {
		el, ok := r.final[n]
		if !ok {
			el = r.nowFn().Sub(r.since[n])
		}
		mark := "…"
		switch r.phase[n] {
		case cluster.PhaseJoined, cluster.PhaseDeleted, cluster.PhaseStopped:
			mark = "✓"
		case cluster.PhaseFailed:
			mark = "✗"
		}
		fmt.Fprintf(&b, "\x1b[2K%s %-12s %-10s %5.0fs\n", mark, printable(n), r.phase[n], el.Seconds())
		lines++
	}
	r.drawn = lines
	io.WriteString(r.w, b.String())
}

// Close stops the redraw loop after a last redraw.
func (r *liveReporter) Close() {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	r.redraw()
	r.closed = true
	r.mu.Unlock()
}

// reporter picks the live or the plain reporter for w; the returned func
// must be called when the command ends.
func reporter(w io.Writer) (rep cluster.Reporter, closeFn func()) {
	if isTerminal(w) {
		l := newLiveReporter(w)
		return l, l.Close
	}
	return &lineReporter{w: w}, func() {}
}

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

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/provider"
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
	return "", provider.BadInput("use -o table, -o json or -o yaml", "unknown output format %q", f)
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
	fmt.Fprintf(r.w, "%-12s %-10s %5.0fs\n", node, phase, elapsed.Seconds())
}

func (r *lineReporter) Note(node, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if node == "" {
		fmt.Fprintf(r.w, "note: %s\n", msg)
		return
	}
	fmt.Fprintf(r.w, "%-12s note: %s\n", node, msg)
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
	r.notes = append(r.notes, msg)
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
		fmt.Fprintf(&b, "\x1b[2K%s %-12s %-10s %5.0fs\n", mark, n, r.phase[n], el.Seconds())
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

// Package ratelog decides which of many per-source log lines to write, so
// that a peer that keeps failing (a scan, a node with the wrong key, a
// connection flood) cannot fill the log or the memory: each source is
// logged at most once per interval, with the count of its lines kept quiet
// since; the table of sources is bounded, and sources past its size are
// only counted, for one summary line per interval.
package ratelog

import (
	"sync"
	"time"
)

// Verdict is what the caller logs for one event.
type Verdict struct {
	// Log: write this source's line, with Suppressed (its lines kept quiet
	// since its previous one).
	Log        bool
	Suppressed int
	// Overflow > 0: also write one summary line: this many events of
	// sources that did not fit the table since the previous summary.
	Overflow int
}

// Table is a bounded per-source rate limiter. The zero value is not
// usable; make one with New. It is safe for concurrent use.
type Table struct {
	every time.Duration
	size  int

	mu       sync.Mutex
	seen     map[string]*entry
	overflow int       // events of sources past size, since the last summary
	lastSum  time.Time // last summary (or sweep) of the overflow
}

type entry struct {
	logged time.Time
	quiet  int
}

// New makes a table that logs each source at most once per every and holds
// at most size sources.
func New(every time.Duration, size int) *Table {
	return &Table{every: every, size: size, seen: make(map[string]*entry)}
}

// Note records one event of source at now and says what to log.
func (t *Table) Note(source string, now time.Time) Verdict {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.seen[source]; ok {
		if now.Sub(e.logged) < t.every {
			e.quiet++
			return Verdict{}
		}
		v := Verdict{Log: true, Suppressed: e.quiet}
		e.quiet, e.logged = 0, now
		return v
	}
	if len(t.seen) < t.size {
		t.seen[source] = &entry{logged: now}
		return Verdict{Log: true}
	}
	// The table is full: count the event. Once an interval, forget the
	// sources whose interval has passed (they are logged anew when they
	// come back), make room for this one if it can, and report the count.
	t.overflow++
	if t.lastSum.IsZero() {
		t.lastSum = now
	}
	if now.Sub(t.lastSum) < t.every {
		return Verdict{}
	}
	t.lastSum = now
	for s, e := range t.seen {
		if now.Sub(e.logged) >= t.every {
			delete(t.seen, s)
		}
	}
	v := Verdict{}
	if len(t.seen) < t.size {
		t.overflow-- // this event is logged on its own
		t.seen[source] = &entry{logged: now}
		v.Log = true
	}
	v.Overflow, t.overflow = t.overflow, 0
	return v
}

// Flush returns the overflow counted since the last summary if an interval
// has passed since then (0 otherwise), and resets it: for a caller that
// logs the summary on a timer, so that the count at the end of a flood is
// not left for the next event.
func (t *Table) Flush(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.overflow == 0 || now.Sub(t.lastSum) < t.every {
		return 0
	}
	n := t.overflow
	t.overflow, t.lastSum = 0, now
	return n
}

// Len is the number of sources the table holds.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.seen)
}

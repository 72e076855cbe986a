// Package ratelog decides which refusals of network peers are logged: at
// most one line per source per interval, with a count of the lines kept
// quiet, in a table of bounded size. Past that size it stops adding sources
// and counts the rest, so a flood from many addresses neither grows memory
// nor the log: one summary line per interval says how many were not logged.
// Used by the agent (gossip members that do not verify, keyring queries)
// and by the node API (peers without a valid certificate).
package ratelog

import (
	"sync"
	"time"
)

// Limiter is safe for concurrent use.
type Limiter struct {
	every time.Duration
	max   int

	mu       sync.Mutex
	seen     map[string]*source
	overflow int       // refusals of sources that found the table full
	summary  time.Time // when the last overflow summary was allowed
}

type source struct {
	logged time.Time
	quiet  int
}

// DefaultSources is the table's default size.
const DefaultSources = 4096

// New returns a Limiter that allows one line per source per every, for at
// most max sources at once (DefaultSources when max <= 0).
func New(every time.Duration, max int) *Limiter {
	if max <= 0 {
		max = DefaultSources
	}
	return &Limiter{every: every, max: max, seen: map[string]*source{}}
}

// Allow reports whether a refusal of src at now is to be logged and, if
// so, how many refusals of src went unlogged since its last line.
func (l *Limiter) Allow(src string, now time.Time) (quiet int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, found := l.seen[src]; found {
		if now.Sub(s.logged) < l.every {
			s.quiet++
			return 0, false
		}
		quiet, s.quiet, s.logged = s.quiet, 0, now
		return quiet, true
	}
	if len(l.seen) >= l.max {
		for a, s := range l.seen { // forget sources whose interval is over
			if now.Sub(s.logged) >= l.every {
				delete(l.seen, a)
			}
		}
	}
	if len(l.seen) >= l.max {
		l.overflow++
		return 0, false
	}
	l.seen[src] = &source{logged: now}
	return 0, true
}

// Overflow returns, at most once per interval, how many refusals were not
// logged because the table was full (ok is false when there is nothing to
// say yet). The caller logs one summary line with it.
func (l *Limiter) Overflow(now time.Time) (n int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.overflow == 0 || now.Sub(l.summary) < l.every {
		return 0, false
	}
	n, l.overflow, l.summary = l.overflow, 0, now
	return n, true
}

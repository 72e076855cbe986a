package nodeapi

import (
	"sync"
	"time"
)

// refusals decides whether a refused peer is logged: at most once per
// interval per address, counting the refusals it kept quiet about.
type refusals struct {
	every time.Duration
	mu    sync.Mutex
	seen  map[string]*refusal
}

type refusal struct {
	logged time.Time
	quiet  int
}

// maxRefusalPeers bounds the memory a scan from many addresses can take.
const maxRefusalPeers = 4096

func newRefusals(every time.Duration) *refusals {
	return &refusals{every: every, seen: map[string]*refusal{}}
}

// allow reports whether a refusal of addr at now is to be logged and, if
// so, how many refusals of addr went unlogged since the last line.
func (r *refusals) allow(addr string, now time.Time) (quiet int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, found := r.seen[addr]; found {
		if now.Sub(p.logged) < r.every {
			p.quiet++
			return 0, false
		}
		quiet, p.quiet, p.logged = p.quiet, 0, now
		return quiet, true
	}
	if len(r.seen) >= maxRefusalPeers {
		for a, p := range r.seen {
			if now.Sub(p.logged) >= r.every {
				delete(r.seen, a)
			}
		}
		if len(r.seen) >= maxRefusalPeers {
			return 0, false // a flood: stay quiet rather than grow
		}
	}
	r.seen[addr] = &refusal{logged: now}
	return 0, true
}

package agent

import (
	"time"

	"github.com/clusterctl/clusterctl/internal/ratelog"
)

// refusalInterval is how often one source's refusals are logged.
const refusalInterval = time.Minute

type refusalLog = ratelog.Limiter

func newRefusalLog(every time.Duration) *refusalLog { return ratelog.New(every, 0) }

// refusedMember logs a gossip member that did not verify (guard.go), at
// most once a minute per address.
func (a *Agent) refusedMember(name, addr string, err error) {
	now := time.Now()
	if quiet, ok := a.refusals.Allow(addr, now); ok {
		a.logger.Warn("refused a gossip member: it is not who the cluster's CA says", "addr", addr, "claimed_name", name, "err", err, "refusals_not_logged", quiet)
	}
	a.logOverflow(now)
}

// droppedQuery logs a keyring query that came over gossip (guard.go).
func (a *Agent) droppedQuery(query string) {
	now := time.Now()
	if quiet, ok := a.refusals.Allow("query "+query, now); ok {
		a.logger.Warn("dropped a keyring query that came over gossip: keys change only through the node API", "query", query, "dropped_not_logged", quiet)
	}
	a.logOverflow(now)
}

func (a *Agent) logOverflow(now time.Time) {
	if n, ok := a.refusals.Overflow(now); ok {
		a.logger.Warn("refusals from more sources than the log keeps track of", "not_logged", n)
	}
}

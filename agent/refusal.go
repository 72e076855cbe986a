package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/clusterctl/clusterctl/internal/ratelog"
)

// refusalInterval is how often one source's refusals are logged, and
// refusalSources how many sources the table keeps (the rest are counted).
const (
	refusalInterval = time.Minute
	refusalSources  = 4096
)

func newRefusalLog(every time.Duration) *ratelog.Table { return ratelog.New(every, refusalSources) }

// refusedMember logs a gossip member that did not verify (guard.go), at
// most once a minute per address. memberlist's own line for it ("ignoring
// alive message") is dropped by the gossip logger: this one replaces it.
func (a *Agent) refusedMember(name, addr string, err error) {
	a.noteRefusal(addr, "refused a gossip member: it is not who the cluster's CA says", "addr", addr, "claimed_name", name, "err", err)
}

// droppedQuery logs a keyring query that came over gossip (guard.go).
func (a *Agent) droppedQuery(query string) {
	a.noteRefusal("query "+query, "dropped a keyring query that came over gossip: keys change only through the node API", "query", query)
}

func (a *Agent) noteRefusal(source, msg string, attrs ...any) {
	v := a.refusals.Note(source, time.Now())
	if v.Overflow > 0 {
		a.logger.Warn("refusals from more sources than the log keeps track of", "not_logged", v.Overflow)
	}
	if v.Log {
		a.logger.Log(context.Background(), slog.LevelWarn, msg, append(attrs, "suppressed_since_last_log", v.Suppressed)...)
	}
}

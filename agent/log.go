package agent

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/internal/ratelog"
)

// gossipLogger returns a *log.Logger for serf or memberlist whose lines go
// to logger at the level written in brackets ("[WARN] memberlist: ...").
// It also feeds table the one signal memberlist v0.7.0 gives of a
// suspicion: the line its failure detector logs when a probe of a member
// got no ack and it marks the member suspect (the state itself is private
// to memberlist; Node.State is never set).
//
// Error and warning lines about a peer (memberlist ends them with
// "from=<address>": a wrong gossip key, a wrong label, a peer that is not
// a member) are logged at most once a minute per peer address, with the
// count of those kept quiet (suppressed_since_last_log); addresses past a
// bounded table are counted, and the count is logged with the first line
// written a minute or more after the previous count.
func gossipLogger(logger *slog.Logger, table *memberTable) *log.Logger {
	return log.New(newSlogWriter(logger, table), "", 0)
}

// Peer lines: one a minute per address, for at most peerLogSources
// addresses at once.
const (
	peerLogEvery   = time.Minute
	peerLogSources = 4096
)

type slogWriter struct {
	logger *slog.Logger
	table  *memberTable
	peers  *ratelog.Table
	now    func() time.Time
}

func newSlogWriter(logger *slog.Logger, table *memberTable) *slogWriter {
	return &slogWriter{logger: logger, table: table, peers: ratelog.New(peerLogEvery, peerLogSources), now: time.Now}
}

var levels = []struct {
	prefix string
	level  slog.Level
}{
	{"[DEBUG] ", slog.LevelDebug},
	{"[INFO] ", slog.LevelInfo},
	{"[WARN] ", slog.LevelWarn},
	{"[ERR] ", slog.LevelError},
	{"[ERROR] ", slog.LevelError},
}

// refusedAlivePrefix starts memberlist's line for an alive message the
// member gate refused.
const refusedAlivePrefix = "ignoring alive message for "

// The line memberlist's probe logs when it suspects a member.
const (
	suspectPrefix = "Suspect "
	suspectSuffix = " has failed, no acks received"
)

func (w *slogWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimRight(p, "\n"))
	level := slog.LevelInfo
	for _, l := range levels {
		if rest, ok := strings.CutPrefix(msg, l.prefix); ok {
			msg, level = rest, l.level
			break
		}
	}
	msg = strings.TrimPrefix(strings.TrimPrefix(msg, "memberlist: "), "serf: ")
	if w.table != nil {
		if rest, ok := strings.CutPrefix(msg, suspectPrefix); ok {
			if name, ok := strings.CutSuffix(rest, suspectSuffix); ok {
				w.table.setSuspect(name)
			}
		}
	}
	if strings.HasPrefix(msg, refusedAlivePrefix) {
		return len(p), nil // the member gate logs it, rate-limited (refusal.go)
	}
	now := w.now()
	if n := w.peers.Flush(now); n > 0 {
		w.logOverflow(n)
	}
	var attrs []any
	if peer, ok := peerOf(msg); ok && level >= slog.LevelWarn {
		v := w.peers.Note(peer, now)
		if v.Overflow > 0 {
			w.logOverflow(v.Overflow)
		}
		if !v.Log {
			return len(p), nil
		}
		attrs = append(attrs, "suppressed_since_last_log", v.Suppressed)
	}
	w.logger.Log(context.Background(), level, msg, attrs...)
	return len(p), nil
}

func (w *slogWriter) logOverflow(n int) {
	w.logger.Warn("lines about peers past the log's table of addresses (not logged one by one)", "lines", n, "table_size", peerLogSources)
}

// peerOf is the peer address (without its port) of a memberlist line
// that names one: it ends with memberlist's "from=<address>".
func peerOf(msg string) (string, bool) {
	i := strings.LastIndex(msg, " from=")
	if i < 0 {
		return "", false
	}
	addr := msg[i+len(" from="):]
	if strings.ContainsRune(addr, ' ') {
		return "", false
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	return addr, true
}

// discardLogger is used when the caller passes a nil logger.
func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

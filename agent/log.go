package agent

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
)

// LogValue makes slog show the config without its key.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("cluster", c.Cluster),
		slog.String("name", c.Name),
		slog.String("nonce", c.Nonce),
		slog.String("provider", c.Provider),
		slog.String("instance_id", c.InstanceID),
		slog.String("bind", c.BindAddr),
		slog.Int("port", c.Port),
		slog.String("advertise_addr", c.AdvertiseAddr),
		slog.String("advertise_cidr", c.AdvertiseCIDR),
		slog.Any("seeds", c.Seeds),
		slog.String("hosts_file", c.HostsFile),
		slog.String("state_dir", c.StateDir),
		slog.String("key", keyDescription(c.Key)),
	)
}

// gossipLogger returns a *log.Logger for serf or memberlist whose lines go
// to logger at the level written in brackets ("[WARN] memberlist: ...").
// It also feeds table the one signal memberlist v0.7.0 gives of a
// suspicion: the line its failure detector logs when a probe of a member
// got no ack and it marks the member suspect (the state itself is private
// to memberlist; Node.State is never set).
func gossipLogger(logger *slog.Logger, table *memberTable) *log.Logger {
	return log.New(&slogWriter{logger: logger, table: table}, "", 0)
}

type slogWriter struct {
	logger *slog.Logger
	table  *memberTable
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
	w.logger.Log(context.Background(), level, msg)
	return len(p), nil
}

// discardLogger is used when the caller passes a nil logger.
func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

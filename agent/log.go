package agent

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
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
		slog.String("key", keyDescription(c.Key)),
	)
}

// memberlistLogger returns a *log.Logger for memberlist whose lines go to
// logger at the level memberlist wrote in brackets ("[WARN] memberlist: ...").
func memberlistLogger(logger *slog.Logger) *log.Logger {
	return log.New(&slogWriter{logger: logger.With("component", "memberlist")}, "", 0)
}

type slogWriter struct{ logger *slog.Logger }

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

func (w *slogWriter) Write(p []byte) (int, error) {
	msg := bytes.TrimRight(p, "\n")
	level := slog.LevelInfo
	for _, l := range levels {
		if rest, ok := bytes.CutPrefix(msg, []byte(l.prefix)); ok {
			msg, level = rest, l.level
			break
		}
	}
	msg = bytes.TrimPrefix(msg, []byte("memberlist: "))
	w.logger.Log(context.Background(), level, string(msg))
	return len(p), nil
}

// discardLogger is used when the caller passes a nil logger.
func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

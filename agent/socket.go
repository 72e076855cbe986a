package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
)

// SocketFile is the agent's local socket in Config.RunDir: a unix socket
// (never a network port) that root and the members of the socket group
// may use (mode 0660), through which `clusterctl-agent members` and
// `seeds` read the agent's view.
const SocketFile = "agent.sock"

// socketPathMembers is the socket's one request: GET, a LocalView.
const socketPathMembers = "/v1/members"

// LocalView is what the socket answers: the members as in members.json,
// the node itself, and the latest handler failures.
type LocalView struct {
	MembersView
	Self            SelfInfo         `json:"self"`
	HandlerFailures []HandlerFailure `json:"handler_failures,omitempty"`
}

// listenSocket listens on path with mode 0660, its group set to group
// when that group exists (else the agent's own group, logged). The socket
// is made in a private directory and renamed into place once its mode and
// group are set, so nobody else can connect in between.
func listenSocket(path, group string, logger *slog.Logger) (net.Listener, error) {
	tmpDir, err := os.MkdirTemp(filepath.Dir(path), ".sock-")
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, SocketFile)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	ln.SetUnlinkOnClose(false) // it is renamed; Close of the server removes it
	fail := func(err error) (net.Listener, error) {
		ln.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o660); err != nil {
		return fail(err)
	}
	if group != "" {
		if g, err := user.LookupGroup(group); err != nil {
			logger.Info("socket group does not exist; the socket is for root (and the agent's group) only", "group", group)
		} else if gid, err := strconv.Atoi(g.Gid); err == nil && !hasGroup(tmp, gid) {
			// Under its systemd unit the agent runs with that group
			// (Group=clusterctl), so the socket has it already, and chown
			// is refused there (SystemCallFilter ~@privileged).
			if err := os.Chown(tmp, -1, gid); err != nil {
				return fail(err)
			}
		}
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fail(err) // a stale socket of an earlier run is replaced
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	return &removingListener{Listener: ln, path: path}, nil
}

// hasGroup reports whether path's group is gid.
func hasGroup(path string, gid int) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Gid) == gid
}

// removingListener removes its socket file when closed.
type removingListener struct {
	net.Listener
	path string
}

func (l *removingListener) Close() error {
	err := l.Listener.Close()
	os.Remove(l.path)
	return err
}

// serveSocket answers the socket's requests with view() until ctx ends.
func serveSocket(ctx context.Context, ln net.Listener, view func() LocalView, logger *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+socketPathMembers, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(view()); err != nil {
			logger.Debug("socket: write", "err", err)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Warn("socket stopped", "err", err)
	}
}

// QueryLocal asks the agent listening on the socket at path for its view.
func QueryLocal(ctx context.Context, path string) (LocalView, error) {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+socketPathMembers, nil)
	if err != nil {
		return LocalView{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return LocalView{}, fmt.Errorf("ask the agent at %s (is it running, and may you use its socket? root or group %s): %w", path, agentconfig.DefaultSocketGroup, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return LocalView{}, fmt.Errorf("agent at %s: %s", path, resp.Status)
	}
	var v LocalView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return LocalView{}, fmt.Errorf("agent at %s: %w", path, err)
	}
	return v, nil
}

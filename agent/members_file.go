package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/atomicfile"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// Files in Config.RunDir that applications on the node read.
const (
	MembersFile = "members.json"
	SelfFile    = "self.json"
)

// AppMember is one member as the node's applications see it
// (members.json, the agent's socket, handlers' stdin).
type AppMember struct {
	Name    string            `json:"name"`
	Address string            `json:"address"` // the advertised IP address
	Role    string            `json:"role,omitempty"`
	Tags    map[string]string `json:"tags,omitempty"` // the user's tags, without the "tag:" prefix
	Status  string            `json:"status"`         // alive, suspect, leaving, left or failed
}

// appMember is m as applications see it.
func appMember(m nodeapi.Member) AppMember {
	meta := agentconfig.MetaFromTags(m.Tags)
	return AppMember{Name: m.Name, Address: m.Addr, Role: meta.AppRole, Tags: meta.Tags, Status: string(m.Status)}
}

// MembersView is members.json: every member this node knows, sorted by
// name. Members is the same on every node that sees the same view (no
// times, no local detail), so applications can divide work without
// talking to each other. Version is this node's count of views written: it
// grows with every change (also across agent restarts, while the file is
// there), so a watcher can tell a new view; it is not comparable between
// nodes.
type MembersView struct {
	Version uint64      `json:"version"`
	Cluster string      `json:"cluster"`
	Members []AppMember `json:"members"`
}

// SelfInfo is self.json: who and where this node is, for applications
// that must bind one address and advertise another.
type SelfInfo struct {
	Cluster       string `json:"cluster"`
	Name          string `json:"name"`
	AdvertiseAddr string `json:"advertise_address"`
	BindAddr      string `json:"bind_address"`
	Role          string `json:"role,omitempty"`
}

// Filter returns the members with role (any if "") and status (any if
// ""), in the view's order.
func (v MembersView) Filter(role, status string) []AppMember {
	out := []AppMember{}
	for _, m := range v.Members {
		if (role == "" || m.Role == role) && (status == "" || m.Status == status) {
			out = append(out, m)
		}
	}
	return out
}

// membersWriter writes members.json whenever the view changes.
type membersWriter struct {
	path    string
	cluster string
	logger  *slog.Logger

	mu      sync.Mutex
	version uint64
	last    []AppMember
}

// view is the view last written.
func (w *membersWriter) view() MembersView {
	w.mu.Lock()
	defer w.mu.Unlock()
	members := slices.Clone(w.last)
	if members == nil {
		members = []AppMember{}
	}
	return MembersView{Version: w.version, Cluster: w.cluster, Members: members}
}

// newMembersWriter continues the version of the file at path, if any.
func newMembersWriter(path, cluster string, logger *slog.Logger) *membersWriter {
	w := &membersWriter{path: path, cluster: cluster, logger: logger}
	if old, err := ReadMembersFile(path); err == nil {
		w.version = old.Version
	}
	return w
}

// write writes members unless they are the last ones written, and
// reports whether it wrote.
func (w *membersWriter) write(members []AppMember) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last != nil && equalAppMembers(members, w.last) {
		return false, nil
	}
	v := MembersView{Version: w.version + 1, Cluster: w.cluster, Members: members}
	b, err := encodeView(v)
	if err != nil {
		return false, err
	}
	if err := atomicfile.WriteFile(w.path, b, 0o644); err != nil {
		return false, err
	}
	w.version, w.last = v.Version, members
	return true, nil
}

// encodeView is the file's bytes: indented JSON (map keys sorted by
// encoding/json), one trailing newline.
func encodeView(v MembersView) ([]byte, error) {
	if v.Members == nil {
		v.Members = []AppMember{}
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func equalAppMembers(a, b []AppMember) bool {
	return slices.EqualFunc(a, b, func(x, y AppMember) bool {
		return x.Name == y.Name && x.Address == y.Address && x.Role == y.Role && x.Status == y.Status && maps.Equal(x.Tags, y.Tags)
	})
}

// ReadMembersFile reads a members.json.
func ReadMembersFile(path string) (MembersView, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return MembersView{}, err
	}
	var v MembersView
	if err := json.Unmarshal(b, &v); err != nil {
		return MembersView{}, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// appMembers is the table's view for applications, sorted by name.
func appMembers(table *memberTable) ([]AppMember, <-chan struct{}) {
	ms, changed := table.snapshot(agentconfig.RoleNode)
	out := make([]AppMember, 0, len(ms))
	for _, m := range ms {
		out = append(out, appMember(m.API()))
	}
	return out, changed
}

// membersLoop writes members.json after every change of the view.
func (a *Agent) membersLoop(ctx context.Context, table *memberTable, w *membersWriter) {
	for {
		members, changed := appMembers(table)
		if _, err := w.write(members); err != nil {
			a.logger.Error("write the members file", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// writeSelf writes self.json.
func writeSelf(path string, s SelfInfo) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o644)
}

// prepareRunDir makes dir (0755) when it is missing.
func prepareRunDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("run_dir: %w", err)
	}
	return nil
}

// Seeds returns the first count (all if count <= 0) alive members of role
// (any if ""), in the view's order, as host:port with port.
func (v MembersView) Seeds(role string, count, port int) []string {
	var out []string
	for _, m := range v.Filter(role, string(nodeapi.StatusAlive)) {
		if count > 0 && len(out) == count {
			break
		}
		out = append(out, joinHostPort(m.Address, port))
	}
	return out
}

func joinHostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return fmt.Sprintf("[%s]:%d", host, port)
	}
	return fmt.Sprintf("%s:%d", host, port)
}

// runPath is name in cfg's run directory.
func runPath(cfg agentconfig.Config, name string) string { return filepath.Join(cfg.RunDir, name) }

package cluster

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// StateVersion is the version of the state file format.
const StateVersion = 1

// Node phases recorded in state.
const (
	PhaseRecorded = "recorded" // in state; the provider has not been asked yet
	PhaseCreating = "creating" // the provider is making it
	PhaseBooting  = "booting"  // the provider made it; waiting for the agent to join
	PhaseJoined   = "joined"   // its agent joined with the nonce we rendered
	PhaseFailed   = "failed"   // a phase failed; see Error
	PhaseLeaving  = "leaving"  // down has started
)

// State is what clusterctl knows about one cluster. It is kept in
// <home>/clusters/<name>/state.json.
type State struct {
	Version  int    `json:"version"`
	Cluster  string `json:"cluster"`
	Provider string `json:"provider,omitempty"`
	Nodes    []Node `json:"nodes"`
}

// Node is one node as recorded in state.
type Node struct {
	Name       string    `json:"name"`
	Nonce      string    `json:"nonce"`
	Provider   string    `json:"provider"`
	InstanceID string    `json:"instance_id,omitempty"`
	Address    string    `json:"address,omitempty"`
	MAC        string    `json:"mac,omitempty"`
	Phase      string    `json:"phase"`
	Error      string    `json:"error,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	JoinedAt   time.Time `json:"joined_at,omitzero"`
	// HostKey is the public half of the SSH host key clusterctl made for
	// the node ("ssh-ed25519 AAAA..."); SSHUser the user ssh logs in as.
	// Both are empty when the node was made with ssh: false.
	HostKey string `json:"host_key,omitempty"`
	SSHUser string `json:"ssh_user,omitempty"`
}

// Node returns a pointer to the node called name, or nil.
func (s *State) Node(name string) *Node {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i]
		}
	}
	return nil
}

// Remove drops the node called name.
func (s *State) Remove(name string) {
	out := s.Nodes[:0]
	for _, n := range s.Nodes {
		if n.Name != name {
			out = append(out, n)
		}
	}
	s.Nodes = out
}

// Store is the on-disk home of one cluster: its state, secrets and the
// providers' per-node files. Every read-modify-write of the state goes
// through Update, which holds an exclusive file lock, so concurrent
// commands never lose each other's changes.
type Store struct {
	Dir     string
	Cluster string
}

// Home returns clusterctl's home directory: $CLUSTERCTL_HOME, else
// clusterctl under the user's config directory (~/.config/clusterctl on Linux).
func Home() (string, error) {
	if h := os.Getenv("CLUSTERCTL_HOME"); h != "" {
		return h, nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find a home for clusterctl's state (set CLUSTERCTL_HOME): %w", err)
	}
	return filepath.Join(d, "clusterctl"), nil
}

// OpenStore returns the store of cluster under home. It creates nothing.
func OpenStore(home, cluster string) *Store {
	return &Store{Dir: filepath.Join(home, "clusters", cluster), Cluster: cluster}
}

func (s *Store) statePath() string { return filepath.Join(s.Dir, "state.json") }
func (s *Store) keyPath() string   { return filepath.Join(s.Dir, "gossip.key") }

// NodeDir is the directory that belongs to node name.
func (s *Store) NodeDir(name string) string { return filepath.Join(s.Dir, "nodes", name) }

// Exists reports whether the cluster has a state file.
func (s *Store) Exists() bool {
	_, err := os.Stat(s.statePath())
	return err == nil
}

// Load reads the state without taking the lock (a consistent snapshot,
// since writes are atomic renames). A missing file gives an empty state.
func (s *Store) Load() (*State, error) {
	data, err := os.ReadFile(s.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return &State{Version: StateVersion, Cluster: s.Cluster}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("state file %q is corrupt: %w", s.statePath(), err)
	}
	if st.Version != StateVersion {
		return nil, fmt.Errorf("state file %q has version %d; this clusterctl reads version %d", s.statePath(), st.Version, StateVersion)
	}
	return &st, nil
}

// Update runs fn on the current state under the cluster's lock and writes
// the result atomically if fn returns nil.
func (s *Store) Update(fn func(*State) error) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	unlock, err := lockFile(filepath.Join(s.Dir, "lock"))
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.Load()
	if err != nil {
		return err
	}
	if err := fn(st); err != nil {
		return err
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	return WriteFileAtomic(s.statePath(), append(data, '\n'), 0o600)
}

// ReadKey returns the gossip key if it exists (os.ErrNotExist otherwise).
func (s *Store) ReadKey() ([]byte, error) {
	data, err := os.ReadFile(s.keyPath())
	if err != nil {
		return nil, err
	}
	key, err := base64.StdEncoding.DecodeString(string(trimNL(data)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("gossip key file %q is malformed (want 32 bytes, base64)", s.keyPath())
	}
	return key, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// Destroy removes the cluster's directory: state, key and node files.
func (s *Store) Destroy() error {
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("remove cluster directory: %w", err)
	}
	return nil
}

// WriteFileAtomic writes data to path through a temporary file in the same
// directory, fsyncs it and renames it into place, so readers see the old or
// the new content, never a part.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %q: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %q: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %q: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %q: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

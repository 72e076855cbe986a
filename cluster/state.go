package cluster

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/internal/atomicfile"
	"github.com/clusterctl/clusterctl/internal/usererr"
)

// StateVersion is the version of the state file format.
const StateVersion = 1

// State is what clusterctl knows about one cluster. It is kept in
// <home>/clusters/<name>/state.json.
type State struct {
	Version  int    `json:"version"`
	Cluster  string `json:"cluster"`
	Provider string `json:"provider,omitempty"`
	// Cleanup names the providers that may hold cluster-wide resources of
	// this cluster (provider.ClusterCleaner: a security group, a bucket).
	// up records a provider here before it makes anything; down --all
	// cleans each, even when no node was ever created.
	Cleanup []string `json:"cleanup,omitempty"`
	Nodes   []Node   `json:"nodes"`
}

// Node is one node as recorded in state.
type Node struct {
	Name     string `json:"name"`
	Nonce    string `json:"nonce"`
	Provider string `json:"provider"`
	// Role is the node's application role (up --role, node.role).
	Role       string `json:"role,omitempty"`
	InstanceID string `json:"instance_id,omitempty"`
	// CreateSent records, before the provider is asked, that up asked it
	// to make this incarnation: with no InstanceID, its request may still
	// have made a machine (see provider.InFlightFinder).
	CreateSent bool   `json:"create_sent,omitempty"`
	Address    string `json:"address,omitempty"`
	// PublicAddress is the address the machine is reached at from outside
	// its network (a cloud's public or floating IP), when the provider
	// reports one; the CLI dials the node's API there.
	PublicAddress string    `json:"public_address,omitempty"`
	MAC           string    `json:"mac,omitempty"`
	Phase         Phase     `json:"phase"`
	Error         string    `json:"error,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	JoinedAt      time.Time `json:"joined_at,omitzero"`
	// FailedSince is when status or repair first saw the gossip view hold
	// this incarnation failed (dead, or no longer listed after it had
	// joined); zero while it is seen alive. The view itself says only how
	// a member is, not since when: repair's --failed-for counts from here.
	FailedSince time.Time `json:"failed_since,omitzero"`
	// HostKey is the public half of the SSH host key clusterctl made for
	// the node ("ssh-ed25519 AAAA..."); SSHUser the user ssh logs in as.
	// Both are empty when the node was made with ssh: false.
	HostKey string `json:"host_key,omitempty"`
	SSHUser string `json:"ssh_user,omitempty"`
	// Enrolment (enrol.go): EnrolToken is the node's bootstrap token, the
	// one secret its user-data holds, until the node enrolled (then it is
	// forgotten); EnrolExpires is when it stops being accepted. EnrolKeys
	// is the SHA-256 of the TLS public key the CLI certified, written
	// before the grant is sent; EnrolledAt is set once the node took it.
	// CertNotAfter is when the node's API certificate expires.
	EnrolToken   []byte    `json:"enrol_token,omitempty"`
	EnrolExpires time.Time `json:"enrol_expires,omitzero"`
	EnrolKeys    string    `json:"enrol_keys,omitempty"`
	EnrolledAt   time.Time `json:"enrolled_at,omitzero"`
	CertNotAfter time.Time `json:"cert_not_after,omitzero"`
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

// NeedsCleanup records that provider may hold cluster-wide resources.
func (s *State) NeedsCleanup(provider string) {
	if !slices.Contains(s.Cleanup, provider) {
		s.Cleanup = append(s.Cleanup, provider)
	}
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
	return atomicfile.WriteFile(s.statePath(), append(data, '\n'), 0o600)
}

// ReadKey returns the primary gossip key, the one new nodes get, if the
// cluster has one (os.ErrNotExist otherwise).
func (s *Store) ReadKey() ([]byte, error) {
	keys, err := s.ReadKeys()
	if err != nil {
		return nil, err
	}
	return keys[0], nil
}

// ReadKeys returns every gossip key that may still be installed on a node,
// the primary first (os.ErrNotExist when the cluster has none). The file
// holds one base64 key per line; `key rotate` keeps an old key here until
// every node has dropped it, so no key a node holds is ever lost.
func (s *Store) ReadKeys() ([][]byte, error) {
	data, err := os.ReadFile(s.keyPath())
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		key, err := base64.StdEncoding.DecodeString(line)
		if err != nil || len(key) != 32 {
			return nil, usererr.BadInput("restore the file from a backup (the nodes hold the key), or remove the cluster with `clusterctl down --all`",
				"gossip key file %q is malformed (want one base64 32-byte key per line)", s.keyPath())
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, usererr.BadInput("restore the file from a backup (the nodes hold the key), or remove the cluster with `clusterctl down --all`",
			"gossip key file %q holds no key", s.keyPath())
	}
	return keys, nil
}

// WriteKeys replaces the gossip keys (the primary first), atomically, 0600.
func (s *Store) WriteKeys(keys [][]byte) error {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k))
		b.WriteByte('\n')
	}
	return atomicfile.WriteFile(s.keyPath(), []byte(b.String()), 0o600)
}

// Destroy removes the cluster's directory: state, key and node files.
func (s *Store) Destroy() error {
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("remove cluster directory: %w", err)
	}
	return nil
}

package agent

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/hashicorp/memberlist"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/atomicfile"
)

// Files in Config.StateDir.
const (
	snapshotFile    = "serf.snapshot"    // serf's snapshot of the members it knew
	keyringFile     = "keyring.json"     // serf's keyring file: base64 keys, primary first
	identityFile    = "identity.json"    // whose state this is
	credentialsFile = "credentials.json" // the node's own keys and, once enrolled, its certificate and grant
)

// stateOwner names the cluster, node and incarnation the state directory
// belongs to. State of another one (a reused disk image, a re-created node)
// is not used: its members and keys are not this node's.
type stateOwner struct {
	Cluster string `json:"cluster"`
	Name    string `json:"name"`
	Nonce   string `json:"nonce"`
}

// localState is what the agent found in, or made in, its state directory.
type localState struct {
	snapshotPath, keyringPath string
	keyring                   *memberlist.Keyring
}

// prepareState makes the state directory (0700), discards state that is
// not this node's, and returns the keyring: the keyring file's keys when
// there is one (it follows rotations), else cfg.Key, written to a new
// keyring file (0600). With an empty StateDir nothing touches the disk.
// claimStateDir makes the state directory (0700) and, when it holds state
// of another cluster, node or incarnation, removes that state (members,
// keys, credentials) and records this node as its owner.
func claimStateDir(cfg agentconfig.Config, logger *slog.Logger) error {
	dir := cfg.StateDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	owned := []string{filepath.Join(dir, snapshotFile), filepath.Join(dir, keyringFile), filepath.Join(dir, credentialsFile), filepath.Join(dir, peersFile)}
	want := stateOwner{Cluster: cfg.Cluster, Name: cfg.Name, Nonce: cfg.Nonce}
	var have stateOwner
	b, err := os.ReadFile(filepath.Join(dir, identityFile))
	switch {
	case err == nil && json.Unmarshal(b, &have) == nil && have == want:
		return nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("state_dir: %w", err)
	}
	if err == nil || slices.ContainsFunc(owned, exists) {
		logger.Warn("the state directory belongs to another cluster, node or incarnation (or its identity is unreadable); starting fresh from the seeds",
			"state_dir", dir, "found_cluster", have.Cluster, "found_name", have.Name, "found_nonce", have.Nonce)
	}
	for _, f := range owned {
		if err := os.RemoveAll(f); err != nil {
			return fmt.Errorf("state_dir: %w", err)
		}
	}
	id, _ := json.Marshal(want)
	if err := atomicfile.WriteFile(filepath.Join(dir, identityFile), id, 0o600); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	return nil
}

func prepareState(cfg agentconfig.Config, logger *slog.Logger) (localState, error) {
	if cfg.StateDir == "" {
		kr, err := memberlist.NewKeyring(nil, cfg.Key)
		return localState{keyring: kr}, err
	}
	if err := claimStateDir(cfg, logger); err != nil {
		return localState{}, err
	}
	dir := cfg.StateDir
	st := localState{snapshotPath: filepath.Join(dir, snapshotFile), keyringPath: filepath.Join(dir, keyringFile)}
	keys, err := readKeyring(st.keyringPath)
	switch {
	case err == nil:
		logger.Info("keyring from the state directory", "keys", len(keys))
	case errors.Is(err, fs.ErrNotExist):
		keys = [][]byte{cfg.Key}
		if err := writeKeyring(st.keyringPath, keys); err != nil {
			return localState{}, err
		}
	default:
		logger.Warn("the keyring file is unusable; starting from the configured key", "path", st.keyringPath, "err", err)
		keys = [][]byte{cfg.Key}
		if err := writeKeyring(st.keyringPath, keys); err != nil {
			return localState{}, err
		}
	}
	st.keyring, err = memberlist.NewKeyring(keys[1:], keys[0])
	if err != nil {
		return localState{}, fmt.Errorf("keyring %q: %w", st.keyringPath, err)
	}
	if err := privateSnapshot(st.snapshotPath); err != nil {
		logger.Warn("the snapshot of known members cannot be used; starting without it", "path", st.snapshotPath, "err", err)
		if err := os.RemoveAll(st.snapshotPath); err != nil {
			return localState{}, fmt.Errorf("state_dir: %w", err)
		}
		if err := privateSnapshot(st.snapshotPath); err != nil {
			return localState{}, fmt.Errorf("state_dir: %w", err)
		}
	}
	return st, nil
}

// privateSnapshot makes serf's snapshot file 0600 before serf opens it:
// serf creates it 0644 (less the umask), so it is created here, empty,
// when it does not exist yet (serf appends to it), and an existing one is
// set to 0600. (serf's compaction writes a new file 0755 less the umask:
// the agent's command sets the umask 077; the state directory is 0700
// anyway.)
func privateSnapshot(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// readKeyring reads serf's keyring file: a JSON list of base64 keys, the
// primary first. Errors never show a key.
func readKeyring(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var enc []string
	if err := json.Unmarshal(b, &enc); err != nil {
		return nil, errors.New("not a JSON list of base64 keys")
	}
	if len(enc) == 0 {
		return nil, errors.New("no keys")
	}
	keys := make([][]byte, 0, len(enc))
	for i, e := range enc {
		k, err := base64.StdEncoding.DecodeString(e)
		if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
			return nil, fmt.Errorf("key %d is not base64 of 16, 24 or 32 bytes", i+1)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func writeKeyring(path string, keys [][]byte) error {
	enc := make([]string, len(keys))
	for i, k := range keys {
		enc[i] = base64.StdEncoding.EncodeToString(k)
	}
	b, _ := json.MarshalIndent(enc, "", "  ")
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write keyring: %w", err)
	}
	return nil
}

package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/clusterctl/clusterctl/internal/atomicfile"
	"github.com/clusterctl/clusterctl/internal/usererr"
)

// A mutating command (up, down, stop, start, restart, scale, repair, key
// rotate) holds the cluster's command lock from its start to its end, so
// two commands never interleave on one cluster. The lock is a file of its
// own, <home>/locks/<cluster>.lock, apart from the state's per-update lock
// (which every command, status included, takes briefly inside it) and
// outside the cluster's directory, which down --all removes and which bad
// input must not create. Next to it, <cluster>.lock.info names the holder
// (pid, command, since) for a command that waits. status, ssh and logs
// never take it.

// DefaultLockTimeout is how long a command waits for another command on the
// same cluster to end (--lock-timeout).
const DefaultLockTimeout = 5 * time.Minute

// lockPoll is how often a waiting command tries the lock again.
const lockPoll = 200 * time.Millisecond

// ErrLocked reports that another command held the cluster's lock for
// longer than the lock timeout.
var ErrLocked = errors.New("the cluster is locked by another command")

// LockHolder is the command that holds a cluster's command lock.
type LockHolder struct {
	PID     int       `json:"pid"`
	Command string    `json:"command"`
	Since   time.Time `json:"since"`
}

func (h LockHolder) String() string {
	return fmt.Sprintf("pid %d (%s) since %s", h.PID, h.Command, h.Since.Local().Format(time.TimeOnly))
}

// commandLockPath is the cluster's command lock file.
func (s *Store) commandLockPath() string {
	home := filepath.Dir(filepath.Dir(s.Dir))
	return filepath.Join(home, "locks", s.Cluster+".lock")
}

func (s *Store) lockInfoPath() string { return s.commandLockPath() + ".info" }

// LockHolder returns the command holding the cluster's command lock, as
// its lock-info file names it (ok false when none is named). The file may
// name a command that has ended since; only a command that cannot take the
// lock reads it.
func (s *Store) LockHolder() (h LockHolder, ok bool) {
	data, err := os.ReadFile(s.lockInfoPath())
	if err != nil || json.Unmarshal(data, &h) != nil || h.PID == 0 {
		return LockHolder{}, false
	}
	return h, true
}

// lockCommand takes the cluster's command lock for the command op, waiting
// up to m.LockTimeout (0: not at all) for another command to end; each
// change of holder while it waits is a note on the reporter. The returned
// func releases it. A command that already holds the lock (scale runs up
// and down inside it) takes it again at no cost.
func (m *Manager) lockCommand(ctx context.Context, op string) (func(), error) {
	if m.locked {
		return func() {}, nil
	}
	path := m.Store.commandLockPath()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create the lock directory: %w", err)
	}
	command := m.Command
	if command == "" {
		command = "clusterctl " + op
	}
	deadline := time.Now().Add(m.LockTimeout)
	var told *LockHolder
	for {
		unlock, ok, err := tryLockFile(path)
		if err != nil {
			return nil, err
		}
		if ok {
			info, err := json.Marshal(LockHolder{PID: os.Getpid(), Command: command, Since: time.Now().UTC()})
			if err == nil {
				err = atomicfile.WriteFile(m.Store.lockInfoPath(), append(info, '\n'), 0o600)
			}
			if err != nil {
				unlock()
				return nil, fmt.Errorf("record the lock's holder: %w", err)
			}
			m.locked = true
			return func() {
				m.locked = false
				os.Remove(m.Store.lockInfoPath())
				unlock()
			}, nil
		}
		h, known := m.Store.LockHolder()
		holder := "another clusterctl"
		if known {
			holder = h.String()
		}
		if !time.Now().Before(deadline) {
			return nil, usererr.WithHint(fmt.Errorf("%w: cluster %q is locked by %s", ErrLocked, m.Cluster, holder),
				"wait for that command to end, or pass a longer --lock-timeout")
		}
		if told == nil || *told != h {
			m.Report.Note("", fmt.Sprintf("waiting for the lock held by %s (up to --lock-timeout %s) ...", holder, m.LockTimeout))
			told = &h
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for the lock of cluster %q: %w", m.Cluster, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

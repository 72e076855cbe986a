package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"

	"github.com/clusterctl/clusterctl/nodeapi"
	"github.com/clusterctl/clusterctl/provider"
)

// KeyRotation is the outcome of `clusterctl key rotate`.
type KeyRotation struct {
	// Members is how many members answered the install.
	Members int `json:"members"`
	// Removed is true when every old key was removed from every member, so
	// the state holds only the new key.
	Removed bool `json:"removed"`
	// Unreached names the nodes that did not take part (by name, why).
	Unreached map[string]string `json:"unreached,omitempty"`
}

// RotateKey gives the gossip cluster a new key: it installs a new 32-byte
// key on every member, makes every member use it, and removes the old
// keys, through the agents' API. The state's key file holds every key
// still installed anywhere, the primary (the one new nodes get) first, and
// is updated after each step, so no key is ever lost. The old keys are
// removed only when every alive member took the new one; nodes that did
// not answer, or were not alive members, are named in the result and the
// error (exit 1).
func (m *Manager) RotateKey(ctx context.Context) (KeyRotation, error) {
	var out KeyRotation
	st, err := m.Store.Load()
	if err != nil {
		return out, err
	}
	if len(st.Nodes) == 0 {
		return out, provider.BadInput("run `clusterctl up` first", "cluster %q has no nodes", m.Cluster)
	}
	old, err := m.Store.ReadKeys()
	if errors.Is(err, os.ErrNotExist) {
		return out, provider.BadInput("run `clusterctl up` first", "cluster %q has no gossip key", m.Cluster)
	}
	if err != nil {
		return out, err
	}
	creds, err := m.credentials()
	if err != nil {
		return out, err
	}
	c, err := m.client(creds, nil)
	if err != nil {
		return out, err
	}
	key, err := newKey()
	if err != nil {
		return out, err
	}
	out.Unreached = map[string]string{}
	// The members the cluster's view holds: recorded nodes that are not
	// alive members get no key and are named.
	snap, err := c.Members(ctx)
	if err != nil {
		return out, provider.WithHint(fmt.Errorf("key rotate: %w", err), "nothing was changed; run `clusterctl key rotate` again when a node answers (see `clusterctl status`)")
	}
	alive := map[string]bool{}
	for _, mem := range snap.Members {
		if mem.Status == nodeapi.StatusAlive {
			alive[mem.Tags[nodeapi.TagNonce]] = true
		}
	}
	for _, n := range st.Nodes {
		if !alive[n.Nonce] {
			out.Unreached[n.Name] = "not an alive member now: it does not get the new key and, once the old key is gone, cannot rejoin (remove it with `clusterctl down " + n.Name + "`)"
		}
	}

	// Write-ahead: the new key is recorded (not yet primary) before any
	// node may hold it.
	if err := m.Store.WriteKeys(append(slices.Clone(old), key)); err != nil {
		return out, err
	}
	install, err := c.KeyInstall(ctx, key)
	m.noteReport(out.Unreached, install)
	if err != nil {
		return out, m.rotateFailed(out, "install the new key", err)
	}
	out.Members = install.NumResp
	use, err := c.KeyUse(ctx, key)
	m.noteReport(out.Unreached, use)
	if err != nil {
		return out, m.rotateFailed(out, "use the new key", err)
	}
	// From now on new nodes get the new key.
	if err := m.Store.WriteKeys(append([][]byte{key}, old...)); err != nil {
		return out, err
	}
	complete := install.NumResp == install.NumNodes && use.NumResp == use.NumNodes && install.NumErr == 0 && use.NumErr == 0
	if !complete {
		return out, m.rotateFailed(out, "reach every member", errors.New("some members did not answer; the old keys stay installed so that they are not cut off"))
	}
	kept := [][]byte{key}
	for _, k := range old {
		rep, err := c.KeyRemove(ctx, k)
		m.noteReport(out.Unreached, rep)
		if err != nil || rep.NumResp < rep.NumNodes || rep.NumErr > 0 {
			kept = append(kept, k)
		}
	}
	if err := m.Store.WriteKeys(kept); err != nil {
		return out, err
	}
	out.Removed = len(kept) == 1
	if len(out.Unreached) > 0 || !out.Removed {
		return out, m.rotateFailed(out, "remove the old key everywhere", errors.New("not every node took part"))
	}
	out.Unreached = nil
	return out, nil
}

// noteReport adds the members that answered a key operation with an error.
func (m *Manager) noteReport(unreached map[string]string, rep nodeapi.KeyReport) {
	for name, msg := range rep.Messages {
		unreached[name] = msg
	}
	if rep.NumResp < rep.NumNodes {
		unreached["("+fmt.Sprint(rep.NumNodes-rep.NumResp)+" members)"] = "did not answer in time"
	}
}

// rotateFailed is the error of a rotation that did not reach everyone:
// it names the nodes and says what to do.
func (m *Manager) rotateFailed(out KeyRotation, step string, err error) error {
	names := make([]string, 0, len(out.Unreached))
	for n := range out.Unreached {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, n := range names {
		fmt.Fprintf(&b, "; %s: %s", n, out.Unreached[n])
	}
	return provider.WithHint(fmt.Errorf("key rotate: %s: %w%s", step, err, b.String()),
		"the state keeps every key a node may hold; when those nodes are back, run `clusterctl key rotate` again, or remove them with `clusterctl down NAME`")
}

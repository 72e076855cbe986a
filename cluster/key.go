package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// KeyRotation is the outcome of `clusterctl key rotate`.
type KeyRotation struct {
	// Members is how many nodes took the new key.
	Members int `json:"members"`
	// Removed is true when every old key was removed from every node, so
	// the state holds only the new key.
	Removed bool `json:"removed"`
	// Unreached names the nodes that did not take part (by name, why).
	Unreached map[string]string `json:"unreached,omitempty"`
	// Unknown are the members the state does not know (another name, or
	// another nonce than the recorded one): they get no new key. Without
	// Evict they stop the rotation before anything changes.
	Unknown []UnknownMember `json:"unknown,omitempty"`
}

// UnknownMember is a gossip member the cluster's state does not know.
type UnknownMember struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	Status string `json:"status"`
}

// RotateKey gives the gossip cluster a new key through each node's API, one
// node at a time (nothing over gossip can change a key): it installs a new
// 32-byte key on every recorded node that is an alive member, makes each use
// it, and removes every other key from each, so that afterwards every node
// holds exactly the new key. The state's key file holds every key still
// installed anywhere, the primary (the one new nodes get) first, and is
// updated after each step, so no key is ever lost. The old keys are removed
// only when every alive node took the new one.
//
// Members the state does not know (a name it lacks, or a recorded name with
// another nonce) make it fail before anything changes, naming them, unless
// evict is set: then they get no new key and, once the old keys are gone,
// can no longer talk to the cluster. Nodes that did not answer are named in
// the result and the error (exit 1).
func (m *Manager) RotateKey(ctx context.Context, evict bool) (KeyRotation, error) {
	var out KeyRotation
	unlock, err := m.lockCommand(ctx, "key rotate")
	if err != nil {
		return out, err
	}
	defer unlock()
	st, err := m.Store.Load()
	if err != nil {
		return out, err
	}
	if len(st.Nodes) == 0 {
		return out, usererr.BadInput("run `clusterctl up` first", "cluster %q has no nodes", m.Cluster)
	}
	old, err := m.Store.ReadKeys()
	if errors.Is(err, os.ErrNotExist) {
		return out, usererr.BadInput("run `clusterctl up` first", "cluster %q has no gossip key", m.Cluster)
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
	// Every recorded node's own view (each within one connect timeout):
	// a member any of them sees and the state does not know counts.
	recorded := map[string]string{} // name -> nonce
	for _, n := range st.Nodes {
		recorded[n.Name] = n.Nonce
	}
	alive := map[string]bool{}
	unknown := map[string]UnknownMember{}
	reached := 0
	for _, n := range st.Nodes {
		snap, err := c.MembersOf(ctx, n.Name)
		if err != nil {
			continue
		}
		reached++
		for _, mem := range snap.Members {
			known := recorded[mem.Name] != "" && recorded[mem.Name] == mem.Tags[nodeapi.TagNonce]
			switch {
			case known && mem.Status == nodeapi.StatusAlive:
				alive[mem.Name] = true
			case !known && mem.Status != nodeapi.StatusLeft && mem.Status != nodeapi.StatusFailed:
				unknown[mem.Name+"@"+mem.Addr] = UnknownMember{Name: mem.Name, Addr: mem.Addr, Status: string(mem.Status)}
			}
		}
	}
	if reached == 0 {
		return out, usererr.WithHint(fmt.Errorf("key rotate: %w", nodeapi.ErrUnreachable), "nothing was changed; run `clusterctl key rotate` again when a node answers (see `clusterctl status`)")
	}
	for _, u := range unknown {
		out.Unknown = append(out.Unknown, u)
	}
	sort.Slice(out.Unknown, func(i, j int) bool { return out.Unknown[i].Name < out.Unknown[j].Name })
	if len(out.Unknown) > 0 && !evict {
		var b bytes.Buffer
		for _, u := range out.Unknown {
			fmt.Fprintf(&b, "; %s at %s (%s)", u.Name, u.Addr, u.Status)
		}
		return out, usererr.WithHint(fmt.Errorf("key rotate: %d gossip members are not nodes of this cluster's state%s; nothing was changed", len(out.Unknown), b.String()),
			"if they are not yours (a stolen key or identity), run `clusterctl key rotate --evict`: they get no new key and are cut off once the old key is removed")
	}
	var targets []string
	for _, n := range st.Nodes {
		if alive[n.Name] {
			targets = append(targets, n.Name)
		} else {
			out.Unreached[n.Name] = "not an alive member now: it does not get the new key and, once the old key is gone, cannot rejoin (remove it with `clusterctl down " + n.Name + "`)"
		}
	}
	sort.Strings(targets)

	// Write-ahead: the new key is recorded (not yet primary) before any
	// node may hold it.
	if err := m.Store.WriteKeys(append(slices.Clone(old), key)); err != nil {
		return out, err
	}
	each := func(op func(ctx context.Context, name string, key []byte) (nodeapi.KeyReport, error)) bool {
		ok := true
		for _, name := range targets {
			if _, err := op(ctx, name, key); err != nil {
				out.Unreached[name] = err.Error()
				ok = false
			}
		}
		return ok
	}
	if !each(c.KeyInstall) {
		return out, m.rotateFailed(out, "install the new key", errors.New("some nodes did not take it; the old keys stay installed so that they are not cut off"))
	}
	if !each(c.KeyUse) {
		return out, m.rotateFailed(out, "use the new key", errors.New("some nodes did not switch; the old keys stay installed so that they are not cut off"))
	}
	out.Members = len(targets)
	// From now on new nodes get the new key.
	if err := m.Store.WriteKeys(append([][]byte{key}, old...)); err != nil {
		return out, err
	}
	// Every key but the new one goes, also keys the state never knew (one
	// planted on a node).
	newKey := base64.StdEncoding.EncodeToString(key)
	removedEverywhere := true
	for _, name := range targets {
		rep, err := c.KeyList(ctx, name)
		if err != nil {
			out.Unreached[name] = err.Error()
			removedEverywhere = false
			continue
		}
		for k := range rep.Keys {
			if k == newKey {
				continue
			}
			raw, derr := base64.StdEncoding.DecodeString(k)
			if derr != nil {
				continue
			}
			if _, err := c.KeyRemove(ctx, name, raw); err != nil {
				out.Unreached[name] = err.Error()
				removedEverywhere = false
			}
		}
	}
	kept := [][]byte{key}
	if !removedEverywhere || len(out.Unreached) > 0 {
		kept = append(kept, old...)
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
	return usererr.WithHint(fmt.Errorf("key rotate: %s: %w%s", step, err, b.String()),
		"the state keeps every key a node may hold; when those nodes are back, run `clusterctl key rotate` again, or remove them with `clusterctl down NAME`")
}

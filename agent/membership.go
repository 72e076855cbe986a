package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/hashicorp/memberlist"

	"github.com/clusterctl/clusterctl/nodeapi"
)

var errNotStarted = errors.New("agent not started")

var _ nodeapi.Membership = (*Agent)(nil)

// Members is this agent's current view, itself included: members whose
// identity verified (guard.go). Empty before Run started gossip.
func (a *Agent) Members() []nodeapi.Member {
	g, err := a.gossipOrErr()
	if err != nil {
		return nil
	}
	ms, _ := g.table.snapshot("")
	out := make([]nodeapi.Member, len(ms))
	for i, m := range ms {
		out[i] = m.API()
	}
	return out
}

// Subscribe returns the members and every later change until ctx ends.
// Before Run started gossip it returns nothing and a closed channel. A
// subscriber that falls more than 4096 events behind is cut off (its
// channel closed) and should subscribe again.
func (a *Agent) Subscribe(ctx context.Context) ([]nodeapi.Member, <-chan nodeapi.Event) {
	g, err := a.gossipOrErr()
	if err != nil {
		ch := make(chan nodeapi.Event)
		close(ch)
		return nil, ch
	}
	return g.table.subscribe(ctx, "")
}

// Leave makes the agent leave the cluster for good if nonce is its own,
// and returns once the leave went out (or ctx ends). Run then returns.
func (a *Agent) Leave(ctx context.Context, nonce string) error {
	if nonce != a.cfg.Nonce {
		return nodeapi.ErrWrongNonce
	}
	if _, err := a.gossipOrErr(); err != nil {
		return err
	}
	a.requestLeave()
	select {
	case <-a.left:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("leave: %w", ctx.Err())
	}
}

// KeyList lists this node's keys.
func (a *Agent) KeyList(ctx context.Context) (KeyReport, error) {
	return a.keyOp("list", nil, func(*memberlist.Keyring) error { return nil })
}

// KeyInstall adds key to this node's keyring (not yet used to send).
func (a *Agent) KeyInstall(ctx context.Context, key []byte) (KeyReport, error) {
	return a.keyOp("install", key, func(kr *memberlist.Keyring) error { return kr.AddKey(key) })
}

// KeyUse makes key, installed before, this node's primary key.
func (a *Agent) KeyUse(ctx context.Context, key []byte) (KeyReport, error) {
	return a.keyOp("use", key, func(kr *memberlist.Keyring) error { return kr.UseKey(key) })
}

// KeyRemove removes key, not the primary, from this node's keyring.
func (a *Agent) KeyRemove(ctx context.Context, key []byte) (KeyReport, error) {
	return a.keyOp("remove", key, func(kr *memberlist.Keyring) error { return kr.RemoveKey(key) })
}

// KeyReport is nodeapi's keyring report.
type KeyReport = nodeapi.KeyReport

// keyOp changes this node's keyring and writes the keyring file (primary
// first) before it answers, so a restart keeps the change. The report
// lists the node's keys after the operation; errors never show a key.
func (a *Agent) keyOp(op string, key []byte, change func(*memberlist.Keyring) error) (KeyReport, error) {
	g, err := a.gossipOrErr()
	if err != nil {
		return KeyReport{}, err
	}
	if key != nil && len(key) != 16 && len(key) != 24 && len(key) != 32 {
		return KeyReport{}, fmt.Errorf("key %s: a key must be 16, 24 or 32 bytes, got %d", op, len(key))
	}
	a.keyMu.Lock()
	defer a.keyMu.Unlock()
	opErr := change(g.keyring)
	if opErr == nil && op != "list" && g.keyringPath != "" {
		opErr = writeKeyring(g.keyringPath, g.keyring.GetKeys())
	}
	keys := g.keyring.GetKeys()
	rep := KeyReport{NumNodes: 1, NumResp: 1, Keys: map[string]int{}, Primary: base64.StdEncoding.EncodeToString(g.keyring.GetPrimaryKey())}
	for _, k := range keys {
		rep.Keys[base64.StdEncoding.EncodeToString(k)] = 1
	}
	if opErr != nil {
		rep.NumErr = 1
		rep.Messages = map[string]string{a.cfg.Name: opErr.Error()}
		return rep, fmt.Errorf("key %s on %s: %w", op, a.cfg.Name, opErr)
	}
	if op != "list" {
		a.logger.Info("keyring changed through the node API", "op", op, "keys", len(keys))
	}
	return rep, nil
}

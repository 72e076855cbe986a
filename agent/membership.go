package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/hashicorp/serf/serf"

	"github.com/clusterctl/clusterctl/nodeapi"
)

var errNotStarted = errors.New("agent not started")

var _ nodeapi.Membership = (*Agent)(nil)

// Members is this agent's current view, itself included, every role
// (observers carry role "observer" in their tags). Empty before Run
// started gossip.
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

// KeyList lists the keys every member holds.
func (a *Agent) KeyList(ctx context.Context) (KeyReport, error) {
	return a.keyOp(ctx, "list", nil, func(km *serf.KeyManager, _ string) (*serf.KeyResponse, error) { return km.ListKeys() })
}

// KeyInstall adds key to every member's keyring (not yet used to send).
func (a *Agent) KeyInstall(ctx context.Context, key []byte) (KeyReport, error) {
	return a.keyOp(ctx, "install", key, (*serf.KeyManager).InstallKey)
}

// KeyUse makes key, installed before, every member's primary key.
func (a *Agent) KeyUse(ctx context.Context, key []byte) (KeyReport, error) {
	return a.keyOp(ctx, "use", key, (*serf.KeyManager).UseKey)
}

// KeyRemove removes key, no longer primary anywhere, from every member.
func (a *Agent) KeyRemove(ctx context.Context, key []byte) (KeyReport, error) {
	return a.keyOp(ctx, "remove", key, (*serf.KeyManager).RemoveKey)
}

// KeyReport is nodeapi's keyring report.
type KeyReport = nodeapi.KeyReport

// keyOp runs a serf keyring query across the cluster. serf blocks until
// the query's timeout; ctx can only stop the wait for it. The report is
// returned also with an error (some member failed); errors never show a
// key.
func (a *Agent) keyOp(ctx context.Context, op string, key []byte, run func(*serf.KeyManager, string) (*serf.KeyResponse, error)) (KeyReport, error) {
	g, err := a.gossipOrErr()
	if err != nil {
		return KeyReport{}, err
	}
	if key != nil && len(key) != 16 && len(key) != 24 && len(key) != 32 {
		return KeyReport{}, fmt.Errorf("key %s: a key must be 16, 24 or 32 bytes, got %d", op, len(key))
	}
	type result struct {
		r   *serf.KeyResponse
		err error
	}
	ch := make(chan result, 1)
	go func() {
		r, err := run(g.serf.KeyManager(), base64.StdEncoding.EncodeToString(key))
		ch <- result{r, err}
	}()
	var res result
	select {
	case res = <-ch:
	case <-ctx.Done():
		return KeyReport{}, fmt.Errorf("key %s: %w", op, ctx.Err())
	}
	var rep KeyReport
	if res.r != nil {
		rep = KeyReport{NumNodes: res.r.NumNodes, NumResp: res.r.NumResp, NumErr: res.r.NumErr, Messages: res.r.Messages, Keys: res.r.Keys}
	}
	if res.err != nil {
		return rep, fmt.Errorf("key %s: %w", op, res.err)
	}
	return rep, nil
}

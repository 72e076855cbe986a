package cluster

import (
	"context"
	"sync"

	"github.com/clusterctl/clusterctl/nodeapi"
)

// watcher follows the cluster's membership through one node API stream
// (nodeapi.Client.Follow, which moves to another node when the followed
// one goes away) and tells each waiting node when it is ready.
//
// A node is ready when a member of the cluster sees it alive with its
// nonce: in the view of another node, or in its own view once that view
// holds another alive member (it has joined someone). Only a node that may
// stand alone, the first node of a new cluster (no member exists yet), is
// ready in its own view with itself alone: its own serf lists it alive with
// its nonce, seen through its own API.
type watcher struct {
	client  *nodeapi.Client // what it follows with; up also enrols with it
	mu      sync.Mutex
	view    nodeapi.View // the followed node's view
	waiting map[incarnation]chan nodeapi.Member
	alone   map[string]bool // nonces that may be ready alone
}

// watch starts following with c until ctx ends. alone names the nonces of
// nodes that are ready in their own view alone.
func watch(ctx context.Context, c *nodeapi.Client, alone map[string]bool) *watcher {
	w := &watcher{client: c, waiting: map[incarnation]chan nodeapi.Member{}, alone: alone}
	updates := c.Follow(ctx)
	go func() {
		for u := range updates {
			w.apply(u)
		}
	}()
	return w
}

func (w *watcher) apply(u nodeapi.Update) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.view.Apply(u) {
		w.check()
	}
}

// check hands every waiting node that is ready (nodeapi.View.Ready) its
// member. w.mu is held.
func (w *watcher) check() {
	for _, m := range w.view.Ready(func(nonce string) bool { return w.alone[nonce] }) {
		inc := incarnation{m.Name, m.Tags[nodeapi.TagNonce]}
		if ch, ok := w.waiting[inc]; ok {
			ch <- m
			delete(w.waiting, inc)
		}
	}
}

// incarnation is what readiness matches: a member's name and nonce, which
// the agents admit only together, as the cluster's CA granted them.
type incarnation struct{ name, nonce string }

// wait returns the member name with nonce once it is ready. When ctx ends
// first it returns ctx's error and, if the last round reached no node,
// why (reach).
func (w *watcher) wait(ctx context.Context, name, nonce string) (m nodeapi.Member, reach, err error) {
	inc := incarnation{name, nonce}
	ch := make(chan nodeapi.Member, 1)
	w.mu.Lock()
	w.waiting[inc] = ch
	w.check()
	w.mu.Unlock()
	select {
	case m := <-ch:
		return m, nil, nil
	case <-ctx.Done():
		w.mu.Lock()
		delete(w.waiting, inc)
		err := w.view.Err
		w.mu.Unlock()
		select {
		case m := <-ch:
			return m, nil, nil
		default:
		}
		return nodeapi.Member{}, err, ctx.Err()
	}
}

// setAlone makes nonce the node that may be ready alone.
func (w *watcher) setAlone(nonce string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.alone = map[string]bool{nonce: true}
	w.check()
}

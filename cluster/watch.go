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
	mu      sync.Mutex
	members map[string]nodeapi.Member // the followed node's view, by name
	from    string                    // the followed node
	waiting map[string]chan nodeapi.Member
	alone   map[string]bool // nonces that may be ready alone
	lastErr error           // why the last round reached no node
}

// watch starts following with c until ctx ends. alone names the nonces of
// nodes that are ready in their own view alone.
func watch(ctx context.Context, c *nodeapi.Client, alone map[string]bool) *watcher {
	w := &watcher{members: map[string]nodeapi.Member{}, waiting: map[string]chan nodeapi.Member{}, alone: alone}
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
	switch u.Kind {
	case nodeapi.UpdateSnapshot:
		w.lastErr = nil
		w.from = u.From.Name
		w.members = map[string]nodeapi.Member{}
		for _, m := range u.Snapshot.Members {
			w.members[m.Name] = m
		}
	case nodeapi.UpdateEvent:
		if u.Event.Type == nodeapi.EventReap {
			delete(w.members, u.Event.Member.Name)
		} else {
			w.members[u.Event.Member.Name] = u.Event.Member
		}
	case nodeapi.UpdateUnreachable:
		w.lastErr = u.Err
		return
	}
	w.check()
}

// check hands every waiting node that is ready its member. w.mu is held.
func (w *watcher) check() {
	alive := 0
	for _, m := range w.members {
		if m.Status == nodeapi.StatusAlive {
			alive++
		}
	}
	for _, m := range w.members {
		ch, ok := w.waiting[m.Tags[nodeapi.TagNonce]]
		if !ok || m.Status != nodeapi.StatusAlive {
			continue
		}
		if m.Name == w.from && alive < 2 && !w.alone[m.Tags[nodeapi.TagNonce]] {
			continue // alone in its own view: it has not joined anyone yet
		}
		ch <- m
		delete(w.waiting, m.Tags[nodeapi.TagNonce])
	}
}

// wait returns the member with nonce once it is ready. When ctx ends
// first it returns ctx's error and, if the last round reached no node,
// why (reach).
func (w *watcher) wait(ctx context.Context, nonce string) (m nodeapi.Member, reach, err error) {
	ch := make(chan nodeapi.Member, 1)
	w.mu.Lock()
	w.waiting[nonce] = ch
	w.check()
	w.mu.Unlock()
	select {
	case m := <-ch:
		return m, nil, nil
	case <-ctx.Done():
		w.mu.Lock()
		delete(w.waiting, nonce)
		err := w.lastErr
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

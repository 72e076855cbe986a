package agent

import (
	"context"
	"net/netip"
	"sync"
)

// startApplications starts what the agent offers the node's applications
// (docs/applications.md): the event handlers and, with a RunDir,
// members.json, self.json and the local socket. What it starts stops when
// ctx ends; wg waits for it.
func (a *Agent) startApplications(ctx context.Context, wg *sync.WaitGroup, table *memberTable, addr netip.Addr) error {
	self := SelfInfo{Cluster: a.cfg.Cluster, Name: a.cfg.Name, AdvertiseAddr: addr.String(), BindAddr: a.cfg.BindAddr, Role: a.cfg.AppRole}
	membersPath := ""
	if a.cfg.RunDir != "" {
		membersPath = runPath(a.cfg, MembersFile)
	}
	hs := newHandlers(a.cfg, a.logger, self, membersPath)
	if a.opts.handlerStarted != nil {
		for _, r := range hs.runners {
			r.started = a.opts.handlerStarted
		}
	}
	if a.opts.handlerRetry != 0 {
		for _, r := range hs.runners {
			r.retry = a.opts.handlerRetry
		}
	}
	a.mu.Lock()
	a.hs = hs
	a.mu.Unlock()
	wg.Add(1)
	go func() { defer wg.Done(); hs.run(ctx, table) }()
	if a.cfg.RunDir == "" {
		return nil
	}
	if err := prepareRunDir(a.cfg.RunDir); err != nil {
		return err
	}
	if err := writeSelf(runPath(a.cfg, SelfFile), self); err != nil {
		return err
	}
	w := newMembersWriter(membersPath, a.cfg.Cluster, a.logger)
	wg.Add(1)
	go func() { defer wg.Done(); a.membersLoop(ctx, table, w) }()
	ln, err := listenSocket(runPath(a.cfg, SocketFile), a.cfg.SocketGroup, a.logger)
	if err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveSocket(ctx, ln, func() LocalView {
			return LocalView{MembersView: w.view(), Self: self, HandlerFailures: hs.Failures()}
		}, a.logger)
	}()
	return nil
}

// HandlerFailures returns the latest handler runs that failed twice on
// this node, oldest first (the node API's snapshot carries them for
// status -v).
func (a *Agent) HandlerFailures() []HandlerFailure {
	a.mu.Lock()
	hs := a.hs
	a.mu.Unlock()
	if hs == nil {
		return nil
	}
	return hs.Failures()
}

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/nodeapi"
)

func TestMembersFileAtomicDeterministicVersioned(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, MembersFile)
	a := []AppMember{
		{Name: "blue", Address: "10.0.0.2", Role: "worker", Tags: map[string]string{"zone": "b", "az": "1"}, Status: "alive"},
		{Name: "red", Address: "10.0.0.1", Role: "master", Status: "failed"},
	}
	w := newMembersWriter(path, "c", discardLogger())
	if wrote, err := w.write(a); err != nil || !wrote {
		t.Fatalf("first write: %v %v", wrote, err)
	}
	first, _ := os.ReadFile(path)
	// The same view again (tags built in another order): no write.
	same := slices.Clone(a)
	same[0].Tags = map[string]string{"az": "1", "zone": "b"}
	if wrote, _ := w.write(same); wrote {
		t.Error("an unchanged view was written again")
	}
	// Another node with the same view writes the same bytes.
	other := filepath.Join(t.TempDir(), MembersFile)
	if _, err := newMembersWriter(other, "c", discardLogger()).write(same); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(other); !bytes.Equal(b, first) {
		t.Errorf("same view, different content:\n%s\n%s", first, b)
	}
	// A change: version grows; a restarted writer continues it.
	b := slices.Clone(a)
	b[1].Status = "alive"
	if _, err := w.write(b); err != nil {
		t.Fatal(err)
	}
	v, err := ReadMembersFile(path)
	if err != nil || v.Version != 2 || v.Members[1].Status != "alive" {
		t.Fatalf("after change: %+v %v", v, err)
	}
	w2 := newMembersWriter(path, "c", discardLogger())
	if _, err := w2.write(b); err != nil {
		t.Fatal(err)
	}
	if v, _ := ReadMembersFile(path); v.Version != 3 {
		t.Errorf("restarted writer: version %d, want 3", v.Version)
	}
	// Atomic: nothing but the file is left in the directory.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only %s", len(ents), MembersFile)
	}
	if strings.Contains(string(first), "time") {
		t.Errorf("members.json must not hold times:\n%s", first)
	}
}

// script writes an executable shell script into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func testRunner(t *testing.T, h agentconfig.HandlerConfig) (*handlerRunner, *[]HandlerFailure, *sync.Mutex) {
	r := newHandlerRunner(h, []string{"PATH=/usr/bin:/bin", "CLUSTERCTL_NODE=me"}, testLogger(t))
	r.retry = 0
	var mu sync.Mutex
	var failures []HandlerFailure
	r.failed = func(f HandlerFailure) { mu.Lock(); failures = append(failures, f); mu.Unlock() }
	return r, &failures, &mu
}

func ev(event, name string) queuedEvent {
	return queuedEvent{event: event, member: AppMember{Name: name, Address: "10.0.0.9", Role: "worker", Status: "alive"}, at: time.Now()}
}

func TestHandlerRunsInOrderWithEventOnStdinAndEnv(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	run := script(t, dir, "h", `{ printf '%s %s %s ' "$CLUSTERCTL_EVENT" "$CLUSTERCTL_MEMBERS" "$#"; cat; } >> `+log+"\n")
	r, failures, _ := testRunner(t, agentconfig.HandlerConfig{On: agentconfig.HandlerEvents, Run: run})
	r.enqueue(ev(agentconfig.EventMemberJoin, "a"))
	r.enqueue(ev(agentconfig.EventMemberJoin, "b"))
	r.enqueue(ev(agentconfig.EventMemberFailed, "a"))
	r.enqueue(ev(agentconfig.EventMemberJoin, "a"))
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan struct{})
	go func() { r.loop(ctx); close(done) }()
	want := 3 // join a+b batched, failed a, join a
	waitLines(t, log, want)
	cancel()
	<-done
	b, _ := os.ReadFile(log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i, prefix := range []string{"member-join a,b 0 ", "member-failed a 0 ", "member-join a 0 "} {
		if !strings.HasPrefix(lines[i], prefix) {
			t.Fatalf("run %d: %q, want prefix %q (in order, no arguments)", i, lines[i], prefix)
		}
		var in HandlerInput
		if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[i], prefix)), &in); err != nil {
			t.Fatalf("stdin of run %d: %v", i, err)
		}
		if in.Event != strings.Fields(prefix)[0] || in.Members[0].Address != "10.0.0.9" {
			t.Errorf("stdin of run %d: %+v", i, in)
		}
	}
	if len(*failures) != 0 {
		t.Errorf("failures: %+v", *failures)
	}
}

func waitLines(t *testing.T, path string, n int) {
	t.Helper()
	for ctx := testCtx(t); ; {
		b, _ := os.ReadFile(path)
		if strings.Count(string(b), "\n") >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s has %q, want %d lines", path, b, n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestHandlerThatExits1IsRetriedOnceThenReported(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	run := script(t, dir, "h", "echo run >> "+count+"\necho oops >&2\nexit 1\n")
	r, failures, mu := testRunner(t, agentconfig.HandlerConfig{On: []string{agentconfig.EventMemberLeave}, Run: run})
	r.handle(testCtx(t), []queuedEvent{ev(agentconfig.EventMemberLeave, "x")}, 0)
	b, _ := os.ReadFile(count)
	if n := strings.Count(string(b), "run"); n != 2 {
		t.Errorf("ran %d times, want 2 (a run and one retry)", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(*failures) != 1 || (*failures)[0].Exit != 1 || (*failures)[0].Members[0] != "x" || (*failures)[0].Event != agentconfig.EventMemberLeave {
		t.Errorf("failures: %+v", *failures)
	}
}

func TestHandlerThatHangsIsKilledWithItsChildren(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	run := script(t, dir, "h", "sleep 300 &\necho $! > "+pidFile+"\nwait\n")
	r, failures, mu := testRunner(t, agentconfig.HandlerConfig{On: []string{agentconfig.EventMemberJoin}, Run: run, Timeout: agentconfig.Duration(200 * time.Millisecond)})
	r.handle(testCtx(t), []queuedEvent{ev(agentconfig.EventMemberJoin, "x")}, 0)
	mu.Lock()
	if len(*failures) != 1 || (*failures)[0].Exit != -1 || !strings.Contains((*failures)[0].Error, "timed out") {
		t.Errorf("failures: %+v", *failures)
	}
	mu.Unlock()
	b, _ := os.ReadFile(pidFile)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file: %q", b)
	}
	// The child got SIGKILL with the group; once reaped by init it is gone.
	for ctx := testCtx(t); syscall.Kill(pid, 0) == nil; {
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(st), ") Z ") {
			break // killed, a zombie waiting for its reaper
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the handler's child %d survived the timeout", pid)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestHandlerFloodNeverBlocksAndCountsDrops(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	gate := filepath.Join(dir, "gate")
	// The first run waits for the gate, so the queue fills up behind it.
	run := script(t, dir, "h", "while [ ! -e "+gate+" ]; do sleep 0.01; done\n{ printf '%s %s\\n' \"$CLUSTERCTL_EVENT\" \"$CLUSTERCTL_DROPPED\"; } >> "+log+"\n")
	r, _, _ := testRunner(t, agentconfig.HandlerConfig{On: agentconfig.HandlerEvents, Run: run})
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	go r.loop(ctx)
	r.enqueue(ev(agentconfig.EventMemberJoin, "first"))
	for r.queued() != 0 { // the loop took it and runs it
		time.Sleep(time.Millisecond)
	}
	const flood = 10 * HandlerQueue
	types := []string{agentconfig.EventMemberJoin, agentconfig.EventMemberFailed}
	start := time.Now()
	for i := range flood {
		r.enqueue(ev(types[i%2], "m"+strconv.Itoa(i))) // alternating: no batching
	}
	t.Logf("enqueued %d events in %s while the handler was busy", flood, time.Since(start))
	if q := r.queued(); q != HandlerQueue {
		t.Errorf("queue holds %d, want its bound %d", q, HandlerQueue)
	}
	os.WriteFile(gate, nil, 0o644)
	waitLines(t, log, 1+HandlerQueue)
	b, _ := os.ReadFile(log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if want := fmt.Sprintf("member-join %d", flood-HandlerQueue); lines[1] != want {
		t.Errorf("second run: %q, want %q (told how many were dropped)", lines[1], want)
	}
	if lines[2] != "member-failed 0" {
		t.Errorf("third run: %q, want the count reset", lines[2])
	}
}

func (r *handlerRunner) queued() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

func TestHandlerRoleFilterAndEvents(t *testing.T) {
	r := newHandlerRunner(agentconfig.HandlerConfig{On: []string{agentconfig.EventMemberFailed}, Role: "worker", Run: "/x"}, nil, discardLogger())
	hs := &handlers{runners: []*handlerRunner{r}}
	member := func(role string) nodeapi.Member {
		tags, _ := agentconfig.Meta{Cluster: "c", Name: "n", Role: agentconfig.RoleNode, AppRole: role}.SerfTags()
		return nodeapi.Member{Name: "n", Addr: "10.0.0.1", Status: nodeapi.StatusFailed, Tags: tags}
	}
	hs.dispatch(nodeapi.Event{Type: nodeapi.EventFail, Member: member("master")})
	hs.dispatch(nodeapi.Event{Type: nodeapi.EventJoin, Member: member("worker")})
	hs.dispatch(nodeapi.Event{Type: nodeapi.EventReap, Member: member("worker")})
	hs.dispatch(nodeapi.Event{Type: nodeapi.EventFail, Member: member("worker")})
	if q := r.queued(); q != 1 {
		t.Errorf("queued %d events, want only the worker's failure", q)
	}
}

func TestSeedFormats(t *testing.T) {
	v := MembersView{Members: []AppMember{
		{Name: "a", Address: "10.0.0.1", Role: "seed", Status: "alive"},
		{Name: "b", Address: "10.0.0.2", Role: "worker", Status: "alive"},
		{Name: "c", Address: "10.0.0.3", Role: "seed", Status: "failed"},
		{Name: "d", Address: "fd00::4", Role: "seed", Status: "alive"},
		{Name: "e", Address: "10.0.0.5", Role: "seed", Status: "alive"},
	}}
	seeds := v.Seeds("seed", 2, 2552)
	for format, want := range map[string]string{
		SeedsAkka:  `akka.cluster.seed-nodes = ["akka://Sys@10.0.0.1:2552", "akka://Sys@[fd00::4]:2552"]` + "\n",
		SeedsPlain: "10.0.0.1:2552\n[fd00::4]:2552\n",
		SeedsJSON:  `["10.0.0.1:2552","[fd00::4]:2552"]` + "\n",
	} {
		var b bytes.Buffer
		if err := WriteSeeds(&b, format, "Sys", seeds); err != nil || b.String() != want {
			t.Errorf("%s: %q %v, want %q", format, b.String(), err, want)
		}
	}
	if all := v.Seeds("", 0, 1); len(all) != 4 {
		t.Errorf("every alive member: %v", all)
	}
	if err := WriteSeeds(&bytes.Buffer{}, "xml", "", nil); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestSocketPermissions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, SocketFile)
	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Skipf("own group: %v", err)
	}
	// A stale socket of an earlier run is replaced.
	os.WriteFile(path, nil, 0o666)
	ln, err := listenSocket(path, g.Name, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	if gid := fi.Sys().(*syscall.Stat_t).Gid; int(gid) != os.Getgid() {
		t.Errorf("socket group %d, want %d", gid, os.Getgid())
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan struct{})
	go func() {
		serveSocket(ctx, ln, func() LocalView { return LocalView{MembersView: MembersView{Version: 7}, Self: SelfInfo{Name: "me"}} }, testLogger(t))
		close(done)
	}()
	v, err := QueryLocal(testCtx(t), path)
	if err != nil || v.Version != 7 || v.Self.Name != "me" {
		t.Errorf("query: %+v %v", v, err)
	}
	cancel()
	<-done
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
	// A group that does not exist leaves the socket to root and the agent.
	ln, err = listenSocket(path, "no-such-group-clusterctl", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o660 {
		t.Errorf("mode %v", fi.Mode())
	}
}

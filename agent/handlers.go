package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// handlerEvent names a table event for handlers ("" for none: a reap is
// not an event handlers see; the member's leave or failure was).
func handlerEvent(t nodeapi.EventType) string {
	switch t {
	case nodeapi.EventJoin:
		return agentconfig.EventMemberJoin
	case nodeapi.EventLeave:
		return agentconfig.EventMemberLeave
	case nodeapi.EventFail:
		return agentconfig.EventMemberFailed
	case nodeapi.EventUpdate:
		return agentconfig.EventMemberUpdate
	}
	return ""
}

// HandlerQueue is how many events may wait for one handler; when more
// arrive while it runs, the newest are dropped, counted, and the next run
// is told how many (CLUSTERCTL_DROPPED and "dropped" on stdin): it should
// then read members.json for the whole view. Gossip never waits for a
// handler.
const HandlerQueue = 256

// handlerBatch bounds how many queued events of the same type one run
// gets on stdin.
const handlerBatch = 64

// handlerTimeout bounds one run of h.
func handlerTimeout(h agentconfig.HandlerConfig) time.Duration {
	if h.Timeout > 0 {
		return time.Duration(h.Timeout)
	}
	return agentconfig.DefaultHandlerTimeout
}

// HandlerInput is what a handler reads on stdin.
type HandlerInput struct {
	Event string `json:"event"`
	// Members are the members concerned, in the order of their events.
	Members []AppMember `json:"members"`
	// Dropped counts the events dropped for this handler (its queue was
	// full) since its last run.
	Dropped int `json:"dropped,omitempty"`
}

// HandlerFailure is a handler run that failed twice (a run and its
// retry): reported in the agent's log, its API (status -v) and socket.
type HandlerFailure = nodeapi.HandlerFailure

// handlerFailuresKept bounds the failures kept for the API.
const handlerFailuresKept = 16

// queuedEvent is one event waiting for a handler.
type queuedEvent struct {
	event  string
	member AppMember
	at     time.Time // when the agent learnt it
}

// handlerRunner runs one handler's events, one run at a time, in order.
type handlerRunner struct {
	h      agentconfig.HandlerConfig
	env    []string // CLUSTERCTL_* of this node
	logger *slog.Logger
	retry  time.Duration // wait before the retry
	// started, when set, is called as each run starts (latency harness).
	started func(event string, members []AppMember, learnt time.Time)
	failed  func(HandlerFailure)

	mu      sync.Mutex
	queue   []queuedEvent
	dropped int
	wake    chan struct{}
}

func newHandlerRunner(h agentconfig.HandlerConfig, env []string, logger *slog.Logger) *handlerRunner {
	return &handlerRunner{h: h, env: env, logger: logger.With("handler", h.Run), retry: time.Second, wake: make(chan struct{}, 1)}
}

// wants reports whether the handler is for ev about a member of role.
func (r *handlerRunner) wants(ev, role string) bool {
	return slices.Contains(r.h.On, ev) && (r.h.Role == "" || r.h.Role == role)
}

// enqueue adds an event without ever blocking; a full queue drops it.
func (r *handlerRunner) enqueue(e queuedEvent) {
	r.mu.Lock()
	if len(r.queue) >= HandlerQueue {
		r.dropped++
		n := r.dropped
		r.mu.Unlock()
		if n == 1 || n%100 == 0 {
			r.logger.Warn("handler queue full: dropping events; its next run is told how many", "queue", HandlerQueue, "dropped", n)
		}
		return
	}
	r.queue = append(r.queue, e)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// next takes the oldest queued event and those of the same type right
// after it (up to handlerBatch), and the dropped count.
func (r *handlerRunner) next() ([]queuedEvent, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return nil, 0
	}
	n := 1
	for n < len(r.queue) && n < handlerBatch && r.queue[n].event == r.queue[0].event {
		n++
	}
	batch := slices.Clone(r.queue[:n])
	r.queue = slices.Delete(r.queue, 0, n)
	d := r.dropped
	r.dropped = 0
	return batch, d
}

// loop runs queued events until ctx ends.
func (r *handlerRunner) loop(ctx context.Context) {
	for {
		batch, dropped := r.next()
		if batch == nil {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
				continue
			}
		}
		r.handle(ctx, batch, dropped)
	}
}

// handle runs the handler for batch, and once more if it fails.
func (r *handlerRunner) handle(ctx context.Context, batch []queuedEvent, dropped int) {
	in := HandlerInput{Event: batch[0].event, Dropped: dropped}
	names := make([]string, len(batch))
	for i, e := range batch {
		in.Members = append(in.Members, e.member)
		names[i] = e.member.Name
	}
	stdin, _ := json.Marshal(in)
	stdin = append(stdin, '\n')
	env := append(slices.Clone(r.env),
		"CLUSTERCTL_EVENT="+in.Event,
		"CLUSTERCTL_MEMBERS="+strings.Join(names, ","),
		"CLUSTERCTL_DROPPED="+strconv.Itoa(dropped))
	var exit int
	var err error
	for attempt := 1; attempt <= 2; attempt++ {
		if attempt == 2 && !sleep(ctx, r.retry) {
			return
		}
		if r.started != nil {
			r.started(in.Event, in.Members, batch[0].at)
		}
		var d time.Duration
		var out []byte
		exit, out, d, err = r.run(ctx, stdin, append(env, "CLUSTERCTL_ATTEMPT="+strconv.Itoa(attempt)))
		if err == nil {
			r.logger.Info("handler ran", "event", in.Event, "members", names, "exit", 0, "duration", d.Round(time.Millisecond), "attempt", attempt)
			return
		}
		if ctx.Err() != nil {
			return
		}
		r.logger.Warn("handler failed", "event", in.Event, "members", names, "exit", exit, "duration", d.Round(time.Millisecond), "attempt", attempt, "err", err, "output", string(out))
	}
	r.logger.Error("handler failed twice; giving up on this event", "event", in.Event, "members", names, "exit", exit, "err", err)
	if r.failed != nil {
		r.failed(HandlerFailure{Run: r.h.Run, Event: in.Event, Members: names, Exit: exit, Error: err.Error(), At: time.Now()})
	}
}

// handlerOutputKept bounds the output of a failed run that is logged.
const handlerOutputKept = 1024

// run runs the handler once: no shell, no arguments, stdin the event,
// killed with its process group after the timeout.
func (r *handlerRunner) run(ctx context.Context, stdin []byte, env []string) (exit int, out []byte, d time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, handlerTimeout(r.h))
	defer cancel()
	cmd := exec.CommandContext(ctx, r.h.Run)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.Stdin = bytes.NewReader(stdin)
	var buf tailBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	ownProcessGroup(cmd)
	cmd.WaitDelay = time.Second // a child that keeps the output open does not hold us
	start := time.Now()
	err = cmd.Run()
	d = time.Since(start)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil, d, nil
	case ctx.Err() == context.DeadlineExceeded:
		return -1, buf.bytes(), d, fmt.Errorf("timed out after %s", handlerTimeout(r.h))
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode(), buf.bytes(), d, fmt.Errorf("exit status %d", ee.ExitCode())
	default:
		return -1, buf.bytes(), d, err
	}
}

// tailBuffer keeps the last handlerOutputKept bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - handlerOutputKept; over > 0 {
		t.buf = slices.Delete(t.buf, 0, over)
	}
	return len(p), nil
}

func (t *tailBuffer) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.buf)
}

// handlers dispatches the table's events to the configured handlers and
// keeps the failures.
type handlers struct {
	runners []*handlerRunner
	node    string

	mu       sync.Mutex
	failures []HandlerFailure
}

func newHandlers(cfg agentconfig.Config, logger *slog.Logger, self SelfInfo, membersFile string) *handlers {
	env := append(os.Environ(),
		"CLUSTERCTL_NODE="+self.Name,
		"CLUSTERCTL_ROLE="+self.Role,
		"CLUSTERCTL_CLUSTER="+cfg.Cluster,
		"CLUSTERCTL_ADVERTISE_ADDR="+self.AdvertiseAddr)
	if membersFile != "" {
		env = append(env, "CLUSTERCTL_MEMBERS_FILE="+membersFile)
	}
	hs := &handlers{node: cfg.Name}
	for _, h := range cfg.Handlers {
		r := newHandlerRunner(h, env, logger)
		r.failed = hs.record
		hs.runners = append(hs.runners, r)
	}
	return hs
}

func (hs *handlers) record(f HandlerFailure) {
	f.Node = hs.node
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.failures = append(hs.failures, f)
	if over := len(hs.failures) - handlerFailuresKept; over > 0 {
		hs.failures = slices.Delete(hs.failures, 0, over)
	}
}

// Failures returns the latest failures, oldest first.
func (hs *handlers) Failures() []HandlerFailure {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return slices.Clone(hs.failures)
}

// dispatch hands each event to the handlers that want it; it never waits
// for a handler.
func (hs *handlers) dispatch(e nodeapi.Event) {
	ev := handlerEvent(e.Type)
	if ev == "" {
		return
	}
	m := appMember(e.Member)
	for _, r := range hs.runners {
		if r.wants(ev, m.Role) {
			r.enqueue(queuedEvent{event: ev, member: m, at: e.Time})
		}
	}
}

// run starts the handlers' loops and feeds them the table's events until
// ctx ends. The current members are not replayed: a handler learns of
// changes; members.json has the view.
func (hs *handlers) run(ctx context.Context, table *memberTable) {
	if len(hs.runners) == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, r := range hs.runners {
		wg.Add(1)
		go func() { defer wg.Done(); r.loop(ctx) }()
	}
	defer wg.Wait()
	for ctx.Err() == nil {
		_, ch := table.subscribe(ctx, "")
		for e := range ch {
			hs.dispatch(e)
		}
	}
}

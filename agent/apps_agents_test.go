package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// handlerStart is one handler run's start as the latency hook saw it.
type handlerStart struct {
	event   string
	members []string
	learnt  time.Time // when the agent's table learnt the event
	at      time.Time
}

// TestHandlersFireOnJoinLeaveAndKill runs real agents on loopback: red
// has a handler for the workers' events and one for the masters' joins.
// Workers join, leave (for good) and are killed (stopped without leaving:
// the others see them fail); each fires red's worker handler for that
// member, never the master handler, and a master's join fires only the
// master handler. It prints the latency table (event learnt → handler
// start, and action → handler start); AGENT_HANDLER_ROUNDS sets the rounds.
func TestHandlersFireOnJoinLeaveAndKill(t *testing.T) {
	rounds := 3
	if s := os.Getenv("AGENT_HANDLER_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	dir := t.TempDir()
	workerLog, masterLog := filepath.Join(dir, "worker.log"), filepath.Join(dir, "master.log")
	workerRun := script(t, dir, "worker.sh", `echo "$CLUSTERCTL_EVENT $CLUSTERCTL_MEMBERS" >> `+workerLog+"\n")
	masterRun := script(t, dir, "master.sh", `echo "$CLUSTERCTL_EVENT $CLUSTERCTL_MEMBERS" >> `+masterLog+"\n")

	starts := make(chan handlerStart, 1024)
	opts := testOptions()
	opts.handlerStarted = func(event string, members []AppMember, learnt time.Time) {
		var names []string
		for _, m := range members {
			names = append(names, m.Name)
		}
		starts <- handlerStart{event, names, learnt, time.Now()}
	}
	cfg := testConfig("red")
	cfg.AppRole = "master"
	cfg.RunDir = filepath.Join(dir, "run")
	cfg.Handlers = []agentconfig.HandlerConfig{
		{On: agentconfig.HandlerEvents[:3], Role: "worker", Run: workerRun},
		{On: []string{agentconfig.EventMemberJoin}, Role: "master", Run: masterRun},
	}
	red := startAgent(t, cfg, opts)

	// wait returns the start of the run for event of member (skipping
	// others, such as updates), and its action → start time.
	wait := func(event, member string, action time.Time) (learnt, total time.Duration) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		for {
			select {
			case s := <-starts:
				if s.event == event && slices.Contains(s.members, member) {
					return s.at.Sub(s.learnt), s.at.Sub(action)
				}
			case <-ctx.Done():
				t.Fatalf("no %s handler run for %s; red sees %s", event, member, states(red.tbl()))
			}
		}
	}
	lat := map[string][]time.Duration{}
	total := map[string][]time.Duration{}
	record := func(kind, member string, action time.Time) {
		l, a := wait(kind, member, action)
		lat[kind] = append(lat[kind], l)
		total[kind] = append(total[kind], a)
	}
	var want []string
	for i := range rounds {
		var ws []*runningAgent
		for _, n := range []string{"leaver", "killed"} {
			c := testConfig(fmt.Sprintf("%s%d", n, i))
			c.AppRole = "worker"
			c.Seeds = []string{red.addr}
			t0 := time.Now()
			ws = append(ws, startAgent(t, c, testOptions()))
			record(agentconfig.EventMemberJoin, c.Name, t0)
			want = append(want, agentconfig.EventMemberJoin+" "+c.Name)
		}
		t0 := time.Now()
		if err := ws[0].Leave(testCtx(t), ws[0].cfg.Nonce); err != nil {
			t.Fatal(err)
		}
		record(agentconfig.EventMemberLeave, ws[0].cfg.Name, t0)
		t0 = time.Now()
		ws[1].stop(t) // no leave: red's failure detector must find out
		record(agentconfig.EventMemberFailed, ws[1].cfg.Name, t0)
		want = append(want, agentconfig.EventMemberLeave+" "+ws[0].cfg.Name, agentconfig.EventMemberFailed+" "+ws[1].cfg.Name)
	}
	mc := testConfig("boss")
	mc.AppRole = "master"
	mc.Seeds = []string{red.addr}
	startAgent(t, mc, testOptions())
	wait(agentconfig.EventMemberJoin, "boss", time.Now())

	waitLines(t, workerLog, len(want))
	waitLines(t, masterLog, 1)
	got := readLines(t, workerLog)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("worker handler ran for:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := readLines(t, masterLog); !slices.Equal(got, []string{"member-join boss"}) {
		t.Errorf("master handler ran for %q, want only boss's join (the role filter)", got)
	}

	// members.json, self.json and the socket on red.
	var v MembersView
	for ctx := testCtx(t); ; {
		var err error
		v, err = ReadMembersFile(filepath.Join(cfg.RunDir, MembersFile))
		if err != nil {
			t.Fatal(err)
		}
		ms := v.Filter("master", string(nodeapi.StatusAlive))
		if len(ms) == 2 && ms[0].Name == "boss" && ms[1].Name == "red" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("alive masters in members.json: %+v", ms)
		case <-time.After(10 * time.Millisecond):
		}
	}
	lv, err := QueryLocal(testCtx(t), filepath.Join(cfg.RunDir, SocketFile))
	if err != nil || lv.Self.Name != "red" || lv.Self.Role != "master" || lv.Self.AdvertiseAddr != "127.0.0.1" || lv.Version < v.Version {
		t.Errorf("socket: %+v %v", lv, err)
	}

	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "event\truns\tlearnt→start p50\tp99\taction→start p50\tp99\t")
	for _, k := range agentconfig.HandlerEvents[:3] {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t\n", k, len(lat[k]), pct(lat[k], 50), pct(lat[k], 99), pct(total[k], 50), pct(total[k], 99))
	}
	tw.Flush()
	t.Logf("handler latency on loopback (test timings: probe %s, suspicion mult %d):\n%s", time.Duration(testTiming().ProbeInterval), testTiming().SuspicionMult, b.String())
}

func readLines(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// pct is the p-th percentile of ds (nearest rank).
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(i, 0)].Round(10 * time.Microsecond)
}

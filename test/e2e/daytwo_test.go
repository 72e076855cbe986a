//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// nonce is the nonce the state records for node name ("" when none).
func (e *env) nonce(name string) string {
	b, err := os.ReadFile(filepath.Join(e.home, "clusters", e.cluster, "state.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	var st struct {
		Nodes []struct{ Name, Nonce string } `json:"nodes"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		e.t.Fatal(err)
	}
	for _, n := range st.Nodes {
		if n.Name == name {
			return n.Nonce
		}
	}
	return ""
}

// row is node name's row of status ("" fields when there is none).
func (e *env) row(ctx context.Context, name string) (phase, machine, gossip string) {
	for _, n := range e.status(ctx).Nodes {
		if n.Name == name {
			return n.Phase, n.ProviderState, n.Gossip
		}
	}
	return "", "", ""
}

// waitUntil polls cond every second until it holds or limit passes.
func (e *env) waitUntil(what string, limit time.Duration, cond func() bool) time.Duration {
	e.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			e.t.Fatalf("after %s: %s", limit, what)
		}
		time.Sleep(time.Second)
	}
	return time.Since(start)
}

// aliveSeen is how many alive members node name's members.json lists
// (-1 when it cannot be read).
func (e *env) aliveSeen(ctx context.Context, name string) int {
	out, err := e.cli(ctx, "ssh", name, "--", "cat /run/clusterctl/members.json")
	if err != nil {
		return -1
	}
	var doc struct {
		Members []struct{ Name, Status string } `json:"members"`
	}
	if json.Unmarshal([]byte(out), &doc) != nil {
		return -1
	}
	n := 0
	for _, m := range doc.Members {
		if m.Status == "alive" {
			n++
		}
	}
	return n
}

// checkDayTwo runs issue 17 on real VMs, starting from red and blue
// joined: stop and start blue; scale 3; stop and start the whole cluster
// (it re-forms by itself; the figure is printed); kill -9 one VM's QEMU and
// repair it; scale back to 2 with --shrink.
func (e *env) checkDayTwo(ctx context.Context) {
	t := e.t
	// Stop blue: stopped at the provider, held failed by red, which keeps
	// its hosts line.
	start := time.Now()
	if _, err := e.cli(ctx, "stop", "blue"); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop blue took %s", time.Since(start).Round(time.Millisecond))
	if phase, machine, _ := e.row(ctx, "blue"); phase != "stopped" || machine != "stopped" {
		t.Errorf("status after stop blue: phase %q, machine %q; want stopped, stopped", phase, machine)
	}
	e.waitUntil("red holds blue failed", 2*time.Minute, func() bool { _, _, g := e.row(ctx, "blue"); return g == "failed" })
	if out, err := e.cli(ctx, "ssh", "red", "--", "grep -w blue /etc/hosts"); err != nil || out == "" {
		t.Errorf("red's /etc/hosts lost blue's line while blue is stopped: %q (%v)", out, err)
	}

	// Start blue: the same node, the same nonce, alive again.
	before := e.nonce("blue")
	start = time.Now()
	if _, err := e.cli(ctx, "start", "blue"); err != nil {
		t.Fatal(err)
	}
	t.Logf("start blue took %s (until a member sees it alive)", time.Since(start).Round(time.Millisecond))
	if phase, machine, gossip := e.row(ctx, "blue"); phase != "joined" || machine != "running" || gossip != "alive" || e.nonce("blue") != before {
		t.Errorf("status after start blue: %s/%s/%s, nonce kept %v; want joined, running, alive, the same nonce", phase, machine, gossip, e.nonce("blue") == before)
	}

	// scale 3 makes a third node with a picked name.
	if _, err := e.cli(ctx, "scale", "3"); err != nil {
		t.Fatal(err)
	}
	nodes := []string{}
	for _, n := range e.status(ctx).Nodes {
		nodes = append(nodes, n.Name)
	}
	if len(nodes) != 3 {
		t.Fatalf("after scale 3: %v", nodes)
	}
	third := ""
	for _, n := range nodes {
		if n != "red" && n != "blue" {
			third = n
		}
	}

	// The whole cluster stops and starts; it re-forms without the CLI.
	start = time.Now()
	if _, err := e.cli(ctx, "stop", "--all"); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop --all (3 nodes) took %s", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if _, err := e.cli(ctx, "start", "--all"); err != nil {
		t.Fatal(err)
	}
	started := time.Since(start)
	reform := e.waitUntil("every node sees every node alive", 5*time.Minute, func() bool {
		for _, n := range nodes {
			if e.aliveSeen(ctx, n) != len(nodes) {
				return false
			}
		}
		return true
	})
	t.Logf("RE-FORM N=3: start --all returned after %s; every node saw every node alive %s later (at most; each look is an ssh round)",
		started.Round(time.Millisecond), reform.Round(time.Second))

	// kill -9 of the third VM's QEMU, then repair: a new nonce, and red's
	// hosts file lists it again.
	pidFile := filepath.Join(e.home, "clusters", e.cluster, "nodes", third, "qemu.pid")
	b, err := os.ReadFile(pidFile)
	pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || perr != nil {
		t.Fatalf("%s's QEMU pid: %v %v", third, err, perr)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	old := e.nonce(third)
	e.waitUntil(third+" held failed", 2*time.Minute, func() bool { _, _, g := e.row(ctx, third); return g == "failed" })
	if out, err := e.cli(ctx, "repair", "--dry-run", "--failed-for", "0s"); err != nil || !strings.Contains(out, third) {
		t.Errorf("repair --dry-run: %q (%v)", out, err)
	}
	start = time.Now()
	if _, err := e.cli(ctx, "repair", "--failed-for", "0s"); err != nil {
		t.Fatal(err)
	}
	t.Logf("repair of %s took %s", third, time.Since(start).Round(time.Millisecond))
	if now := e.nonce(third); now == "" || now == old {
		t.Errorf("%s after repair: nonce %q, want a new one", third, now)
	}
	e.waitUntil("red's /etc/hosts lists "+third, time.Minute, func() bool {
		out, err := e.cli(ctx, "ssh", "red", "--", "grep -w "+third+" /etc/hosts")
		return err == nil && out != ""
	})

	// scale 2 --shrink removes the newest (the repaired third node).
	if _, err := e.cli(ctx, "scale", "2", "--shrink"); err != nil {
		t.Fatal(err)
	}
	if st := e.status(ctx); len(st.Nodes) != 2 {
		t.Errorf("after scale 2 --shrink: %+v", st.Nodes)
	}
	if out, _ := exec.Command("pgrep", "-f", filepath.Join(e.home, "clusters", e.cluster, "nodes", third)).Output(); len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("%s's QEMU still runs after scale 2 --shrink", third)
	}
}

// partitions builds examples/partitions for the guests.
func (e *env) partitions() string {
	bin := filepath.Join(e.bin, "partitions")
	cmd := exec.Command("go", "build", "-o", bin, "./examples/partitions")
	cmd.Dir = e.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("build examples/partitions: %v\n%s", err, out)
	}
	return bin
}

// startPartitions copies the example application to node name and starts
// it in the background; its lines go to /tmp/partitions.log.
func (e *env) startPartitions(ctx context.Context, bin, name string) {
	if _, err := e.cli(ctx, "cp", bin, name+":/tmp/partitions"); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.cli(ctx, "ssh", name, "--", "chmod +x /tmp/partitions; setsid -f /tmp/partitions -interval 200ms >/tmp/partitions.log 2>&1 </dev/null"); err != nil {
		e.t.Fatal(err)
	}
}

// owned is how many partitions node name's example application owns now
// (-1 before its first line).
func (e *env) owned(ctx context.Context, name string) int {
	out, err := e.cli(ctx, "ssh", name, "--", "tail -n 1 /tmp/partitions.log")
	if err != nil {
		return -1
	}
	_, list, ok := strings.Cut(strings.TrimSpace(out), "owned=")
	if !ok {
		return -1
	}
	if list == "" || list == "-" {
		return 0
	}
	return len(strings.Split(list, ","))
}

// waitOwned waits until every node in want owns its number of partitions
// and returns how long that took.
func (e *env) waitOwned(ctx context.Context, want map[string]int) time.Duration {
	return e.waitUntil(fmt.Sprintf("partitions owned %v", want), 3*time.Minute, func() bool {
		for n, k := range want {
			if e.owned(ctx, n) != k {
				return false
			}
		}
		return true
	})
}

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/provider"
)

// noPower is the shared fake without provider.PowerManager.
type noPower struct{ provider.Provider }

func (noPower) Name() string { return "nopower" }

func init() {
	provider.Register("nopower", func(provider.Env) (provider.Provider, error) { return noPower{shared}, nil })
}

func TestDayTwoBadInput(t *testing.T) {
	home, config := setup(t, "cluster: daytwo\n")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"stop"}, "no node named"},
		{[]string{"stop", "ghost"}, `no node "ghost"`},
		{[]string{"stop", "--all", "red"}, "--all was given with node names"},
		{[]string{"start"}, "name the nodes to start"},
		{[]string{"start", "ghost"}, `no node "ghost"`},
		{[]string{"restart"}, "requires at least 1 arg"},
		{[]string{"restart", "--all"}, "unknown flag: --all"},
		{[]string{"scale"}, "accepts 1 arg"},
		{[]string{"scale", "three"}, `size "three" is not a number`},
		{[]string{"scale", "300"}, "size 300 is out of range"},
		{[]string{"scale", "-1"}, "unknown shorthand flag"},
		{[]string{"repair", "ghost"}, `no node "ghost"`},
		{[]string{"repair", "--failed-for", "-1s"}, "--failed-for -1s is negative"},
		{[]string{"repair", "--failed-for", "soon"}, "invalid argument"},
		{[]string{"up", "red", "--lock-timeout", "-1s"}, "--lock-timeout -1s is negative"},
		{[]string{"stop", "red", "-o", "xml"}, `unknown output format "xml"`},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := cli(t, home, config, tc.args...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2; stderr:\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "fix:") {
				t.Errorf("stderr does not say %q with a fix:\n%s", tc.want, r.stderr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(home, "clusters", "daytwo")); !os.IsNotExist(err) {
		t.Error("bad input created the cluster's state directory")
	}
}

// A provider that cannot stop machines: stop and start are bad input (exit
// 2) with a fix, and scale of a cluster of the asked size does nothing.
func TestStopWithoutPowerManager(t *testing.T) {
	home, config := setup(t, "cluster: nopower\n")
	if r := cli(t, home, config, "up", "--provider", "nopower", "red", "--join-timeout", "1s"); r.code != 1 {
		t.Fatalf("up: %+v", r)
	}
	for _, args := range [][]string{{"stop", "red"}, {"start", "--all", "--join-timeout", "1s"}, {"restart", "red", "--join-timeout", "1s"}} {
		r := cli(t, home, config, args...)
		if r.code != 2 || !strings.Contains(r.stderr, `provider "nopower" cannot stop and start machines`) || !strings.Contains(r.stderr, "fix: remove the node with `clusterctl down NAME`") {
			t.Errorf("%v: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	r := cli(t, home, config, "scale", "1")
	if r.code != 0 || !strings.Contains(r.stderr, "nothing to do") {
		t.Errorf("scale 1 of a one-node cluster: %+v", r)
	}
	r = cli(t, home, config, "scale", "0")
	if r.code != 2 || !strings.Contains(r.stderr, "pass --shrink to remove the newest: red") {
		t.Errorf("scale 0 without --shrink: %+v", r)
	}
	r = cli(t, home, config, "repair", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "red") || !strings.Contains(r.stdout, "REASON") {
		t.Errorf("repair --dry-run: %+v", r)
	}
	if r := cli(t, home, config, "down", "--all"); r.code != 0 {
		t.Errorf("down --all: %+v", r)
	}
}

// A command started while another holds the cluster's lock fails at once
// with --lock-timeout 0 (exit 1), naming the holder's pid and command.
func TestLockTimeoutZeroNamesTheHolder(t *testing.T) {
	home, config := setup(t, "cluster: locked\n")
	t.Setenv("CLUSTERCTL_HOME", home)
	upDone := make(chan int, 1)
	go func() {
		var out, errb bytes.Buffer
		upDone <- run(context.Background(), []string{"--config", config, "up", "red", "--join-timeout", "3s"}, &out, &errb)
	}()
	info := filepath.Join(home, "locks", "locked.lock.info")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(info); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("up never took the lock")
		}
	}
	r := cli(t, home, config, "down", "red", "--lock-timeout", "0")
	if r.code != 1 || !strings.Contains(r.stderr, "is locked by pid ") || !strings.Contains(r.stderr, "(clusterctl up)") || !strings.Contains(r.stderr, "hint: ") {
		t.Errorf("down while up holds the lock: exit %d\n%s", r.code, r.stderr)
	}
	<-upDone
	if r := cli(t, home, config, "down", "--all", "--lock-timeout", "0"); r.code != 0 {
		t.Errorf("down --all once up ended: %+v", r)
	}
}

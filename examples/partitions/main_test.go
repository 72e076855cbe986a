package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const twoNodes = `{"version": 4, "cluster": "c", "members": [
  {"name": "blue", "address": "10.0.0.2", "role": "worker", "status": "alive"},
  {"name": "red", "address": "10.0.0.1", "role": "worker", "status": "alive"}]}`

const oneNode = `{"version": 5, "cluster": "c", "members": [
  {"name": "blue", "address": "10.0.0.2", "role": "worker", "status": "left"},
  {"name": "red", "address": "10.0.0.1", "role": "worker", "status": "alive"}]}`

func files(t *testing.T, members, self string) options {
	dir := t.TempDir()
	o := options{members: filepath.Join(dir, "members.json"), self: filepath.Join(dir, "self-"+self+".json"), partitions: 12, once: true, interval: 5 * time.Millisecond}
	write(t, o.members, members)
	write(t, o.self, `{"name": "`+self+`"}`)
	return o
}

func write(t *testing.T, path, s string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil { // as the agent: atomically
		t.Fatal(err)
	}
}

func once(t *testing.T, members, self string) string {
	var b strings.Builder
	if err := run(context.Background(), files(t, members, self), &b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestTwoNodesOwnSixEach(t *testing.T) {
	red, blue := once(t, twoNodes, "red"), once(t, twoNodes, "blue")
	if red != "version=4 members=2 owned=1,3,5,7,9,11\n" || blue != "version=4 members=2 owned=0,2,4,6,8,10\n" {
		t.Errorf("red: %q blue: %q", red, blue)
	}
}

func TestOneNodeOwnsTwelve(t *testing.T) {
	if got := once(t, oneNode, "red"); got != "version=5 members=1 owned=0,1,2,3,4,5,6,7,8,9,10,11\n" {
		t.Errorf("red: %q", got)
	}
	if got := once(t, oneNode, "blue"); got != "version=5 members=1 owned=-\n" {
		t.Errorf("blue, which left: %q", got)
	}
}

// syncBuf is a strings.Builder safe for the loop and the test.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestRebalancesOnChange(t *testing.T) {
	o := files(t, twoNodes, "red")
	o.once = false
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuf
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, &out) }()
	waitOut := func(want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for !strings.HasSuffix(out.String(), want) {
			select {
			case <-deadline:
				t.Fatalf("output %q, want it to end with %q", out.String(), want)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	waitOut("owned=1,3,5,7,9,11\n")
	write(t, o.members, oneNode) // blue went down
	waitOut("version=5 members=1 owned=0,1,2,3,4,5,6,7,8,9,10,11\n")
	write(t, o.members, strings.Replace(twoNodes, `"version": 4`, `"version": 6`, 1)) // blue is back
	waitOut("version=6 members=2 owned=1,3,5,7,9,11\n")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 3 {
		t.Errorf("printed %d lines, want one per change:\n%s", n, out.String())
	}
}

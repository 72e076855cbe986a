package cluster_test

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/clusterctl/clusterctl/cluster"
)

// Concurrent updates through separate Store values (as separate commands
// would make) must not lose any change.
func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	home := t.TempDir()
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s := cluster.OpenStore(home, "c")
			errs <- s.Update(func(st *cluster.State) error {
				st.Nodes = append(st.Nodes, cluster.Node{Name: fmt.Sprintf("n%d", i)})
				return nil
			})
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := cluster.OpenStore(home, "c").Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != n {
		t.Fatalf("%d nodes recorded, want %d: updates were lost", len(st.Nodes), n)
	}
}

func TestStateAndKeyFilesArePrivate(t *testing.T) {
	s := cluster.OpenStore(t.TempDir(), "c")
	key, err := s.Key()
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 32 {
		t.Fatalf("key of %d bytes, want 32", len(key))
	}
	again, err := s.Key()
	if err != nil || string(again) != string(key) {
		t.Fatal("a second Key call made a new key")
	}
	for _, f := range []string{"state.json", "gossip.key"} {
		fi, err := os.Stat(s.Dir + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
}

func TestCorruptStateIsAnError(t *testing.T) {
	s := cluster.OpenStore(t.TempDir(), "c")
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Dir+"/state.json", []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(); err == nil {
		t.Fatal("a corrupt state file was read without an error")
	}
}

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

func TestStateFileIsPrivate(t *testing.T) {
	s := cluster.OpenStore(t.TempDir(), "c")
	if err := s.Update(func(st *cluster.State) error { st.Provider = "fake"; return nil }); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Dir + "/state.json")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state.json has mode %v, want 0600", fi.Mode().Perm())
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

// Package identitytest is for tests only: one throw-away cluster CA per
// cluster name for the whole test process, so that tests can give their
// agents identities (agentconfig.NewIdentity) without a CLI state directory.
package identitytest

import (
	"os"
	"sync"

	"github.com/clusterctl/clusterctl/internal/pki"
)

var (
	mu  sync.Mutex
	cas = map[string]*pki.CA{}
)

// CA returns the test CA of cluster, made at the first call. It panics
// when no CA can be made (a test cannot go on without one).
func CA(cluster string) *pki.CA {
	mu.Lock()
	defer mu.Unlock()
	if ca, ok := cas[cluster]; ok {
		return ca
	}
	dir, err := os.MkdirTemp("", "identitytest-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ca, err := pki.Create(dir, cluster)
	if err != nil {
		panic(err)
	}
	cas[cluster] = ca
	return ca
}

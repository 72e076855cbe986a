//go:build !unix

package cluster

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// lockFile takes an exclusive lock by creating path with O_EXCL, waiting
// up to a minute for another holder to remove it.
func lockFile(path string) (func(), error) {
	path += ".excl"
	deadline := time.Now().Add(time.Minute)
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
			return func() { os.Remove(path) }, nil
		}
		if !errors.Is(err, os.ErrExist) || time.Now().After(deadline) {
			return nil, fmt.Errorf("lock %q (remove it if no clusterctl runs): %w", path, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

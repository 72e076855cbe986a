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
	deadline := time.Now().Add(time.Minute)
	for {
		unlock, ok, err := tryLockFile(path)
		if err != nil || ok {
			return unlock, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("lock %q (remove %s.excl if no clusterctl runs): still held", path, path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tryLockFile takes the lock by creating path.excl with O_EXCL; ok is false
// when it exists. A killed holder leaves the file behind: the error of a
// timed-out wait names it.
func tryLockFile(path string) (unlock func(), ok bool, err error) {
	path += ".excl"
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err == nil {
		f.Close()
		return func() { os.Remove(path) }, true, nil
	}
	if errors.Is(err, os.ErrExist) {
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("lock %q: %w", path, err)
}

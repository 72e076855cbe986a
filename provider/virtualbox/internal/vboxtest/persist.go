// Persistence: the registry and faults in $VBOX_USER_HOME, under a file
// lock, written with internal/atomicfile; the call log.

package vboxtest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/clusterctl/clusterctl/internal/atomicfile"
)

func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

func load(home string) (*Registry, error) {
	reg := &Registry{}
	b, err := os.ReadFile(filepath.Join(home, RegistryFile))
	if err == nil {
		if err := json.Unmarshal(b, reg); err != nil {
			return nil, err
		}
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	f, err := ReadFaults(home)
	if err != nil {
		return nil, err
	}
	reg.Faults = f
	return reg, nil
}

// ReadFaults reads $VBOX_USER_HOME/faults.json (zero Faults if missing).
func ReadFaults(home string) (Faults, error) {
	var f Faults
	b, err := os.ReadFile(filepath.Join(home, FaultsFile))
	if os.IsNotExist(err) {
		return f, nil
	}
	if err != nil {
		return f, err
	}
	return f, json.Unmarshal(b, &f)
}

func saveFaults(home string, f Faults) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(home, FaultsFile), b, 0o600)
}

// SetFaults writes the faults the next calls see. Tests call it between
// VBoxManage calls.
func SetFaults(home string, f Faults) error {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	unlock, err := lock(filepath.Join(home, lockFile))
	if err != nil {
		return err
	}
	defer unlock()
	return saveFaults(home, f)
}

func save(home string, reg *Registry) error {
	b, err := json.MarshalIndent(reg, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(home, RegistryFile), b, 0o600)
}

// Load returns the registry as the fake last saved it, for assertions.
func Load(home string) (*Registry, error) { return load(home) }

func logCall(home string, args []string) {
	b, _ := json.Marshal(args)
	f, err := os.OpenFile(filepath.Join(home, CallsFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.Write(append(b, '\n'))
}

// Calls returns the argument lists of every call so far, in order.
func Calls(home string) ([][]string, error) {
	b, err := os.ReadFile(filepath.Join(home, CallsFile))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var a []string
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

package qemu

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/localvm"
)

// Stop asks the guest to power down (QMP system_powerdown, an ACPI power
// button) and waits until the QEMU process has exited: after
// powerdown_timeout it asks QEMU to quit (QMP quit, the power pulled), then
// SIGTERM, then SIGKILL, as Delete does. When ctx ends first the process is
// killed and ctx's error returned. The node's directory (disk overlay,
// seed ISO, node.json) and tap device stay; Status then says stopped. A
// node without a QEMU process is left as it is.
func (p *Provider) Stop(ctx context.Context, id string) error {
	np, err := p.powerNode("stop", id)
	if err != nil {
		return err
	}
	if err := stopVM(ctx, np, p.cfg.PowerdownTimeout); err != nil {
		return fmt.Errorf("qemu: stop %q: %w", id, err)
	}
	return nil
}

// Start launches QEMU again for a stopped node, from the same disk
// overlay and seed ISO, on the same tap device (made again on the bridge)
// with the same MAC, CPUs and memory, as Create launched it (boot). It
// returns once QEMU runs; it does not wait for the guest. A node whose
// QEMU runs is left as it is.
func (p *Provider) Start(ctx context.Context, id string) error {
	np, err := p.powerNode("start", id)
	if err != nil {
		return err
	}
	if _, alive, err := qemuProcess(np.PID); err != nil {
		return fmt.Errorf("qemu: start %q: %w", id, err)
	} else if alive {
		return nil
	}
	meta, err := localvm.ReadMeta(np.Dir)
	if err != nil {
		return usererr.WithHint(fmt.Errorf("qemu: start %q: %w", id, err),
			"the node's files are incomplete (a create that stopped half-way): `clusterctl down "+id+"` removes them")
	}
	for _, f := range []string{np.Overlay, np.Seed} {
		if _, err := os.Stat(f); err != nil {
			return usererr.WithHint(fmt.Errorf("qemu: start %q: %w", id, err),
				"the node's disk or seed is missing: `clusterctl down "+id+"` removes the node, `up` makes it again")
		}
	}
	// What the exited QEMU left: a stale pid file or QMP socket would
	// confuse Status and the next stop.
	for _, f := range []string{np.PID, np.QMP} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("qemu: start %q: %w", id, err)
		}
	}
	if err := p.makeTap(ctx, meta.Tap, p.cfg.Bridge); err != nil {
		return fmt.Errorf("qemu: start %q: %w", id, err)
	}
	if err := p.boot(ctx, np, meta); err != nil {
		return fmt.Errorf("qemu: start %q: %w", id, err)
	}
	return nil
}

// powerNode returns the files of node id for Stop or Start; a node without
// a directory is an error wrapping provider.ErrNotFound.
func (p *Provider) powerNode(verb, id string) (nodePaths, error) {
	if !localvm.ValidName(id) {
		return nodePaths{}, fmt.Errorf("qemu: %s %q: %w", verb, id, provider.ErrNotFound)
	}
	np := pathsIn(p.nodeDir(id))
	if _, err := os.Stat(np.Dir); errors.Is(err, fs.ErrNotExist) {
		return nodePaths{}, fmt.Errorf("qemu: %s %q: %w", verb, id, provider.ErrNotFound)
	} else if err != nil {
		return nodePaths{}, fmt.Errorf("qemu: %s %q: %w", verb, id, err)
	}
	return np, nil
}

package virtualbox

import (
	"context"
	"fmt"
	"time"

	"github.com/clusterctl/clusterctl/provider"
)

var _ provider.PowerManager = (*Provider)(nil)

// startArgs is the VBoxManage command that powers a node's VM on, without
// a window (Create's last step, and Start).
func startArgs(vm string) []string { return []string{"startvm", vm, "--type", "headless"} }

// ourVM returns the showvminfo fields of node id's VM; a VM VirtualBox
// does not know, or one clusterctl did not make for this cluster, is an
// error wrapping provider.ErrNotFound.
func (p *Provider) ourVM(ctx context.Context, r *runner, verb, id string) (map[string]string, error) {
	node, ok := p.nodeOf(id)
	if !ok {
		return nil, fmt.Errorf("virtualbox: %s %q: %w", verb, id, provider.ErrNotFound)
	}
	info, err := p.showVM(ctx, r, id)
	if err != nil {
		return nil, fmt.Errorf("virtualbox: %s %q: %w", verb, id, err)
	}
	if info == nil || !p.ours(info, node) {
		return nil, fmt.Errorf("virtualbox: %s %q: no VM of this node is registered: %w", verb, id, provider.ErrNotFound)
	}
	return info, nil
}

// Stop presses the VM's ACPI power button (`controlvm VM acpipowerbutton`)
// and waits until showvminfo says VMState="poweroff". A guest that has
// not shut down after powerdown_timeout (it ignores the button, or hangs
// on the way down) is powered off hard (`controlvm VM poweroff`) as the
// last resort, as Delete does: the user asked for the machine to be
// stopped, and the node's disk is what a crash would leave too. When ctx
// ends first, Stop returns its error and does nothing more. A VM that is
// not running (powered off, saved, aborted) is left as it is; a paused
// one, which cannot take the button, is powered off.
func (p *Provider) Stop(ctx context.Context, id string) error {
	r, err := p.vbox()
	if err != nil {
		return err
	}
	info, err := p.ourVM(ctx, r, "stop", id)
	if err != nil {
		return err
	}
	if err := p.powerOff(ctx, r, id, info["VMState"]); err != nil {
		return fmt.Errorf("virtualbox: stop %q: %w", id, err)
	}
	return nil
}

// Start powers the VM on again (`startvm VM --type headless`, as Create
// did) from its disk and seed ISO, with its MACs; it returns once
// VirtualBox has started it. A running (or starting) VM is left as it is;
// a paused one is resumed. Right after a power-off the VM process may
// still hold the machine's session, and startvm finds it locked: that is
// retried every poll interval, bounded by ctx, for at most the time Delete
// waits for the same thing.
func (p *Provider) Start(ctx context.Context, id string) error {
	r, err := p.vbox()
	if err != nil {
		return err
	}
	info, err := p.ourVM(ctx, r, "start", id)
	if err != nil {
		return err
	}
	switch info["VMState"] {
	case "running", "starting", "restoring":
		return nil
	case "paused":
		if _, err := r.run(ctx, "controlvm", id, "resume"); err != nil {
			return fmt.Errorf("virtualbox: start %q: resume the paused VM: %w", id, err)
		}
		return nil
	}
	deadline := time.Now().Add(p.unlockTimeout)
	for {
		_, err := r.run(ctx, startArgs(id)...)
		if err == nil {
			return nil
		}
		if !isSessionLocked(err) || !time.Now().Before(deadline) {
			// Started meanwhile by someone else (a running VM is locked too)?
			if info, e := p.showVM(ctx, r, id); e == nil && info != nil && info["VMState"] == "running" {
				return nil
			}
			return fmt.Errorf("virtualbox: start %q: %w", id, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("virtualbox: start %q: %w (while VirtualBox still held the VM's session)", id, ctx.Err())
		case <-time.After(p.pollInterval):
		}
	}
}

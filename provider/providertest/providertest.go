// Package providertest is the conformance suite every provider.Provider must
// pass, so that package cluster can treat all providers alike.
//
// A provider's own test calls Run with a Harness that says how to make a
// NodeSpec for it. The suite checks the contract written on provider.Provider:
// Create returns an id, Status and List see the machine, unknown ids are
// StateNotFound without an error, Delete is complete and idempotent, and
// optional capabilities behave when present (a PowerManager stops and
// starts a machine, idempotently, and Delete removes a stopped one).
package providertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/provider"
)

// Harness tells the suite how to use one provider.
type Harness struct {
	Provider provider.Provider
	// Cluster is the cluster name the specs use (List is asked for it).
	Cluster string
	// Spec returns a NodeSpec for a new node called name, with Dir created.
	Spec func(t *testing.T, name string) provider.NodeSpec
	// Timeout bounds each step; zero means two minutes.
	Timeout time.Duration
}

func (h Harness) ctx(t *testing.T) context.Context {
	d := h.Timeout
	if d == 0 {
		d = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Run runs the conformance suite as subtests of t.
func Run(t *testing.T, h Harness) {
	t.Run("UnknownIsNotFound", func(t *testing.T) { unknownIsNotFound(t, h) })
	t.Run("Lifecycle", func(t *testing.T) { lifecycle(t, h) })
	t.Run("ConcurrentCreate", func(t *testing.T) { concurrentCreate(t, h) })
	if pm, ok := h.Provider.(provider.PowerManager); ok {
		t.Run("StopStart", func(t *testing.T) { stopStart(t, h, pm) })
	}
}

// stopStart checks provider.PowerManager's contract: Stop returns once
// Status says stopped, Start makes it pending or running, both are
// idempotent, and Delete of a stopped machine is complete.
func stopStart(t *testing.T, h Harness, pm provider.PowerManager) {
	ctx := h.ctx(t)
	p := h.Provider
	spec := h.Spec(t, "conf-p")
	inst, err := p.Create(ctx, spec)
	if inst.ID != "" {
		t.Cleanup(func() { _ = p.Delete(context.Background(), inst.ID) })
	}
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	wantState := func(step string, want ...provider.State) {
		t.Helper()
		st, err := p.Status(ctx, inst.ID)
		if err != nil {
			t.Fatalf("Status after %s: %v", step, err)
		}
		for _, w := range want {
			if st.State == w {
				return
			}
		}
		t.Fatalf("Status after %s: state %q, want one of %v", step, st.State, want)
	}

	if err := pm.Stop(ctx, inst.ID); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	wantState("Stop", provider.StateStopped)
	if err := pm.Stop(ctx, inst.ID); err != nil {
		t.Fatalf("second Stop: %v, want nil (Stop is idempotent)", err)
	}
	wantState("second Stop", provider.StateStopped)
	if err := listed(ctx, p, h.Cluster, inst.ID, true); err != nil {
		t.Errorf("a stopped machine: %v", err)
	}

	if err := pm.Start(ctx, inst.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	wantState("Start", provider.StatePending, provider.StateRunning)
	if err := pm.Start(ctx, inst.ID); err != nil {
		t.Fatalf("second Start: %v, want nil (Start is idempotent)", err)
	}
	wantState("second Start", provider.StatePending, provider.StateRunning)

	if err := pm.Stop(ctx, inst.ID); err != nil {
		t.Fatalf("Stop after Start: %v", err)
	}
	wantState("Stop after Start", provider.StateStopped)
	if err := p.Delete(ctx, inst.ID); err != nil {
		t.Fatalf("Delete of a stopped machine: %v", err)
	}
	wantState("Delete of a stopped machine", provider.StateNotFound, provider.StateTerminated)
	if err := listed(ctx, p, h.Cluster, inst.ID, false); err != nil {
		t.Error(err)
	}
}

func unknownIsNotFound(t *testing.T, h Harness) {
	ctx := h.ctx(t)
	inst, err := h.Provider.Status(ctx, "no-such-node-7f3a")
	if err != nil {
		t.Fatalf("Status of an unknown id: got error %v, want nil with StateNotFound", err)
	}
	if inst.State != provider.StateNotFound {
		t.Fatalf("Status of an unknown id: state %q, want %q", inst.State, provider.StateNotFound)
	}
	if err := h.Provider.Delete(ctx, "no-such-node-7f3a"); err != nil {
		t.Fatalf("Delete of an unknown id: %v, want nil", err)
	}
}

func lifecycle(t *testing.T, h Harness) {
	ctx := h.ctx(t)
	p := h.Provider
	spec := h.Spec(t, "conf-a")
	inst, err := p.Create(ctx, spec)
	if inst.ID != "" {
		t.Cleanup(func() { _ = p.Delete(context.Background(), inst.ID) })
	}
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if inst.ID == "" {
		t.Fatal("Create returned an empty instance id")
	}
	if inst.Name != spec.Name {
		t.Errorf("Create: instance name %q, want %q", inst.Name, spec.Name)
	}

	st, err := p.Status(ctx, inst.ID)
	if err != nil {
		t.Fatalf("Status after Create: %v", err)
	}
	if st.State != provider.StatePending && st.State != provider.StateRunning {
		t.Errorf("Status after Create: state %q, want pending or running", st.State)
	}

	if err := listed(ctx, p, h.Cluster, inst.ID, true); err != nil {
		t.Error(err)
	}

	if cl, ok := p.(provider.ConsoleLogger); ok {
		if _, err := cl.ConsoleLog(ctx, inst.ID); err != nil {
			t.Errorf("ConsoleLog of a created machine: %v", err)
		}
	}

	if err := p.Delete(ctx, inst.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	st, err = p.Status(ctx, inst.ID)
	if err != nil {
		t.Fatalf("Status after Delete: %v", err)
	}
	if st.State != provider.StateNotFound && st.State != provider.StateTerminated {
		t.Errorf("Status after Delete: state %q, want not-found or terminated", st.State)
	}
	if err := p.Delete(ctx, inst.ID); err != nil {
		t.Errorf("second Delete: %v, want nil (Delete is idempotent)", err)
	}
	if err := listed(ctx, p, h.Cluster, inst.ID, false); err != nil {
		t.Error(err)
	}
}

func concurrentCreate(t *testing.T, h Harness) {
	ctx := h.ctx(t)
	p := h.Provider
	names := []string{"conf-b", "conf-c"}
	specs := make([]provider.NodeSpec, len(names))
	for i, n := range names {
		specs[i] = h.Spec(t, n)
	}
	ids := make([]string, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i := range specs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			inst, err := p.Create(ctx, specs[i])
			ids[i], errs[i] = inst.ID, err
		}(i)
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, id := range ids {
			if id != "" {
				_ = p.Delete(context.Background(), id)
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Create: %v", err)
	}
	if ids[0] == ids[1] {
		t.Fatalf("two nodes got the same id %q", ids[0])
	}
	for _, id := range ids {
		if err := listed(ctx, p, h.Cluster, id, true); err != nil {
			t.Error(err)
		}
	}
	for _, id := range ids {
		if err := p.Delete(ctx, id); err != nil {
			t.Errorf("Delete %q: %v", id, err)
		}
	}
}

func listed(ctx context.Context, p provider.Provider, cluster, id string, want bool) error {
	list, err := p.List(ctx, cluster)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	found := false
	for _, in := range list {
		if in.ID == id && in.State != provider.StateTerminated && in.State != provider.StateNotFound {
			found = true
		}
	}
	if found != want {
		return fmt.Errorf("List(%q): instance %q listed=%v, want %v (got %v)", cluster, id, found, want, list)
	}
	return nil
}

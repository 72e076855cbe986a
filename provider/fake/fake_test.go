package fake_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/fake"
	"github.com/clusterctl/clusterctl/provider/providertest"
)

func TestConformance(t *testing.T) {
	p := fake.New()
	providertest.Run(t, providertest.Harness{
		Provider: p,
		Cluster:  "conf",
		Spec: func(t *testing.T, name string) provider.NodeSpec {
			return provider.NodeSpec{Cluster: "conf", Name: name, Dir: t.TempDir()}
		},
	})
}

func TestCloudConformance(t *testing.T) {
	c := fake.NewCloud()
	providertest.Run(t, providertest.Harness{
		Provider: c,
		Cluster:  "conf",
		Spec: func(t *testing.T, name string) provider.NodeSpec {
			return provider.NodeSpec{Cluster: "conf", Name: name, Dir: t.TempDir()}
		},
	})
}

func TestStopStartHooks(t *testing.T) {
	ctx := context.Background()
	p := fake.New()
	var got []string
	p.OnStop = func(_ context.Context, id string) error { got = append(got, "stop "+id); return nil }
	p.OnStart = func(_ context.Context, id string, spec provider.NodeSpec) error {
		got = append(got, "start "+id+" "+spec.Name)
		return nil
	}
	inst, err := p.Create(ctx, provider.NodeSpec{Cluster: "c", Name: "red"})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []func(context.Context, string) error{p.Stop, p.Stop, p.Start, p.Start} {
		if err := step(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"stop " + inst.ID, "start " + inst.ID + " red"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("hooks ran %q, want %q (once each: the second call finds the state already reached)", got, want)
	}
	if err := p.Stop(ctx, "fake-99"); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("Stop of an unknown id: %v, want ErrNotFound", err)
	}
	if err := p.Start(ctx, "fake-99"); !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("Start of an unknown id: %v, want ErrNotFound", err)
	}
}

package fake_test

import (
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

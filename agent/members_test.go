package agent

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/hashicorp/serf/serf"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// refresh reuses what it parsed of an unchanged serf record, and sees
// every change of one: new tags (serf gives them a new map), a new status,
// a new address.
func TestRefreshFollowsEveryChangeOfARecord(t *testing.T) {
	table := newMemberTable("c", slog.New(slog.NewTextHandler(io.Discard, nil)))
	tags := func(zone string) map[string]string {
		m, err := agentconfig.Meta{Cluster: "c", Name: "red", Nonce: "n1", Role: agentconfig.RoleNode, Tags: map[string]string{"zone": zone}}.SerfTags()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	rec := serf.Member{Name: "red", Addr: net.ParseIP("10.0.0.1"), Port: 7946, Tags: tags("a"), Status: serf.StatusAlive}
	get := func() Member {
		t.Helper()
		ms, _ := table.snapshot("")
		if len(ms) != 1 {
			t.Fatalf("members %+v, want red alone", ms)
		}
		return ms[0]
	}
	table.refresh([]serf.Member{rec})
	if m := get(); m.State != nodeapi.StatusAlive || m.Meta.Tags["zone"] != "a" || m.Addr != "10.0.0.1" {
		t.Fatalf("after join: %+v", m)
	}
	table.refresh([]serf.Member{rec}) // unchanged: nothing new
	if m := get(); m.State != nodeapi.StatusAlive || m.Meta.Tags["zone"] != "a" {
		t.Fatalf("after an unchanged refresh: %+v", m)
	}
	rec.Tags = tags("b")
	table.refresh([]serf.Member{rec})
	if m := get(); m.Meta.Tags["zone"] != "b" {
		t.Errorf("after new tags: zone %q, want b", m.Meta.Tags["zone"])
	}
	rec.Addr = net.ParseIP("10.0.0.2")
	table.refresh([]serf.Member{rec})
	if m := get(); m.Addr != "10.0.0.2" {
		t.Errorf("after a new address: %q, want 10.0.0.2", m.Addr)
	}
	rec.Status = serf.StatusFailed
	table.refresh([]serf.Member{rec})
	if m := get(); m.State != nodeapi.StatusFailed {
		t.Errorf("after serf marked it failed: %s, want failed", m.State)
	}
	table.refresh(nil)
	if ms, _ := table.snapshot(""); len(ms) != 0 || len(table.parsed) != 0 {
		t.Errorf("after serf reaped it: members %+v, %d records kept; want none", ms, len(table.parsed))
	}
}

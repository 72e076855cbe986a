package openstack_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/openstack/openstacktest"
)

// powerCalls returns, from the requests since before, the compute calls
// that concern server id, as "GET", "POST os-stop" and so on, with Nova's
// answer.
func powerCalls(c *openstacktest.Cloud, before int, id string) []string {
	var out []string
	for _, r := range c.Requests()[before:] {
		if !strings.Contains(r.Path, "/servers/"+id) {
			continue
		}
		s := r.Method
		if r.Action != "" {
			s += " " + r.Action
		}
		out = append(out, s+" "+strconv.Itoa(r.Status))
	}
	return out
}

// act posts a server action to the fake as another client would.
func act(t *testing.T, c *openstacktest.Cloud, id, action string) {
	t.Helper()
	req, _ := http.NewRequest("POST", c.URL+"/compute/v2.1/servers/"+id+"/action", strings.NewReader(`{"`+action+`": null}`))
	req.Header.Set("X-Auth-Token", c.IssueToken())
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("%s: %s", action, resp.Status)
	}
}

func wantCalls(t *testing.T, step string, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("%s: Nova saw\n  %s\nwant\n  %s", step, strings.Join(got, ", "), strings.Join(want, ", "))
	}
}

// TestStopStart drives Stop and Start through Nova's states as the fake
// has them (ACTIVE → powering-off → SHUTOFF → powering-on → ACTIVE, 409
// for an action the state does not allow): the exact calls, idempotency
// by reading first, and the floating IP kept across the stop.
func TestStopStart(t *testing.T) {
	c := newCloud(t, false)
	c.PowerPolls = 2
	p := standard(t, c, "floating_ip_pool: public\n")
	inst, err := p.Create(ctx(t), spec(t, "blue"))
	if err != nil {
		t.Fatal(err)
	}
	if inst.PublicAddress == "" {
		t.Fatalf("Create: %+v, want a floating IP", inst)
	}
	id := inst.ID

	n := len(c.Requests())
	if err := p.Stop(ctx(t), id); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	wantCalls(t, "Stop", powerCalls(c, n, id),
		"GET 200", "POST os-stop 202", "GET 200", "GET 200", "GET 200")
	st, err := p.Status(ctx(t), id)
	if err != nil || st.State != provider.StateStopped || st.PublicAddress != inst.PublicAddress {
		t.Fatalf("Status after Stop: %+v %v, want stopped with floating IP %s", st, err, inst.PublicAddress)
	}
	if s := c.Servers()[0]; s.Status != "SHUTOFF" || s.TaskState != "" {
		t.Errorf("Nova has the server %s (%s), want SHUTOFF with no task", s.Status, s.TaskState)
	}

	n = len(c.Requests())
	if err := p.Stop(ctx(t), id); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	wantCalls(t, "second Stop", powerCalls(c, n, id), "GET 200")

	n = len(c.Requests())
	if err := p.Start(ctx(t), id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	wantCalls(t, "Start", powerCalls(c, n, id), "GET 200", "POST os-start 202")
	st, err = p.Status(ctx(t), id)
	if err != nil || st.State != provider.StatePending {
		t.Fatalf("Status right after Start: %+v %v, want pending (powering-on)", st, err)
	}

	// While it powers on, a second Start asks nothing; a Stop waits for
	// it to be ACTIVE, since Nova refuses os-stop during a task.
	n = len(c.Requests())
	if err := p.Start(ctx(t), id); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	wantCalls(t, "second Start", powerCalls(c, n, id), "GET 200")
	n = len(c.Requests())
	if err := p.Stop(ctx(t), id); err != nil {
		t.Fatalf("Stop while powering on: %v", err)
	}
	wantCalls(t, "Stop while powering on", powerCalls(c, n, id),
		"GET 200", "POST os-stop 202", "GET 200", "GET 200", "GET 200")

	// A Start while a stop is under way waits for SHUTOFF, then starts.
	if err := p.Start(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	for st.State != provider.StateRunning {
		if st, err = p.Status(ctx(t), id); err != nil {
			t.Fatal(err)
		}
	}
	if st.PublicAddress != inst.PublicAddress {
		t.Errorf("after Start the floating IP is %q, want %q (it stays)", st.PublicAddress, inst.PublicAddress)
	}
	c.PowerPolls = 1
	act(t, c, id, "os-stop")
	n = len(c.Requests())
	if err := p.Start(ctx(t), id); err != nil {
		t.Fatalf("Start while powering off: %v", err)
	}
	wantCalls(t, "Start while powering off", powerCalls(c, n, id), "GET 200", "GET 200", "POST os-start 202")

	if err := p.Delete(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(ctx(t), id); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("Stop of a deleted server: %v, want ErrNotFound", err)
	}
	if err := p.Start(ctx(t), id); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("Start of a deleted server: %v, want ErrNotFound", err)
	}
}

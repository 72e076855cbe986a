package ec2_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/ec2"
)

// transitions plays, in the fault proxy, the transitional states EC2 has
// and moto skips: moto's StopInstances makes an instance stopped at once
// and StartInstances running at once, where EC2 goes running → stopping →
// stopped and stopped → pending → running. After a StopInstances moto
// accepted, the instance reads "stopping" for the next lag
// DescribeInstances of it; after a StartInstances, "pending". Meanwhile,
// as on EC2, StartInstances of a stopping instance and StopInstances of a
// pending one are answered IncorrectInstanceState. log records each
// request with the state the client was shown.
type transitions struct {
	mu    sync.Mutex
	lag   int
	state map[string]string // instance id -> "stopping" or "pending"
	left  map[string]int    // describes left in that state
	log   []string
}

func newTransitions(fp *faultProxy, lag int) *transitions {
	tr := &transitions{lag: lag, state: map[string]string{}, left: map[string]int{}}
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fp.deny = tr.refuse
	fp.rewrite = tr.rewrite
	return tr
}

func (tr *transitions) note(s string) {
	tr.log = append(tr.log, s)
}

// refuse answers the state changes EC2 does not allow from a
// transitional state.
func (tr *transitions) refuse(r *http.Request, action string) *fault {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	id := form.Get("InstanceId.1")
	tr.mu.Lock()
	defer tr.mu.Unlock()
	st := tr.state[id]
	if tr.left[id] == 0 {
		st = ""
	}
	refused := action == "StartInstances" && st == "stopping" || action == "StopInstances" && st == "pending"
	if !refused {
		return nil
	}
	tr.note(action + " refused")
	return &fault{status: 400, code: "IncorrectInstanceState",
		message: fmt.Sprintf("The instance '%s' is not in a state from which it can be %s.", id, map[string]string{"StartInstances": "started", "StopInstances": "stopped"}[action])}
}

var (
	stoppedXML = regexp.MustCompile(`<code>80</code>(\s*)<name>stopped</name>`)
	runningXML = regexp.MustCompile(`<code>16</code>(\s*)<name>running</name>`)
	stateXML   = regexp.MustCompile(`<instanceState>\s*<code>\d+</code>\s*<name>([a-z-]+)</name>`)
)

func (tr *transitions) rewrite(action string, form url.Values, body []byte) []byte {
	id := form.Get("InstanceId.1")
	tr.mu.Lock()
	defer tr.mu.Unlock()
	switch action {
	case "StopInstances":
		tr.state[id], tr.left[id] = "stopping", tr.lag
		tr.note(action)
	case "StartInstances":
		tr.state[id], tr.left[id] = "pending", tr.lag
		tr.note(action)
	case "DescribeInstances":
		if id == "" {
			return body
		}
		if tr.left[id] > 0 {
			tr.left[id]--
			switch tr.state[id] {
			case "stopping":
				body = stoppedXML.ReplaceAll(body, []byte("<code>64</code>${1}<name>stopping</name>"))
			case "pending":
				body = runningXML.ReplaceAll(body, []byte("<code>0</code>${1}<name>pending</name>"))
			}
		}
		seen := "?"
		if m := stateXML.FindSubmatch(body); m != nil {
			seen = string(m[1])
		}
		tr.note(action + " " + seen)
	}
	return body
}

func (tr *transitions) take() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := tr.log
	tr.log = nil
	return out
}

func wantLog(t *testing.T, step string, tr *transitions, want ...string) {
	t.Helper()
	got := tr.take()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s: EC2 saw\n  %s\nwant\n  %s", step, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestStopStartStates drives Stop and Start through EC2's states as EC2
// has them (moto, with the transitional states played by the proxy): the
// exact requests, the waits on stopping and pending, idempotency, and the
// new public IPv4 address a started instance gets.
func TestStopStartStates(t *testing.T) {
	srv := moto(t)
	fp := newFaultProxy(t, srv.URL)
	ctx := context.Background()
	f := newProvider(t, fp.URL, "pw", "")
	ec2.SetPoll(f.p, 10*time.Millisecond)
	inst, err := f.p.Create(ctx, spec(t, "pw", "blue"))
	if err != nil {
		t.Fatal(err)
	}
	before, err := f.p.Status(ctx, inst.ID)
	if err != nil || before.PublicAddress == "" {
		t.Fatalf("Status after Create: %+v %v, want a public address", before, err)
	}
	tr := newTransitions(fp, 2)

	if err := f.p.Stop(ctx, inst.ID); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	wantLog(t, "Stop", tr,
		"DescribeInstances running", "StopInstances",
		"DescribeInstances stopping", "DescribeInstances stopping", "DescribeInstances stopped")
	st, err := f.p.Status(ctx, inst.ID)
	if err != nil || st.State != provider.StateStopped {
		t.Fatalf("Status after Stop: %+v %v, want stopped", st, err)
	}
	if st.PublicAddress != "" {
		t.Errorf("a stopped instance has public address %q; EC2 releases it", st.PublicAddress)
	}
	tr.take()

	if err := f.p.Stop(ctx, inst.ID); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	wantLog(t, "second Stop", tr, "DescribeInstances stopped")

	if err := f.p.Start(ctx, inst.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	wantLog(t, "Start", tr, "DescribeInstances stopped", "StartInstances")

	// Right after Start the instance is pending: a second Start asks
	// nothing, a Stop waits for it to run.
	if err := f.p.Start(ctx, inst.ID); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	wantLog(t, "second Start", tr, "DescribeInstances pending")
	if err := f.p.Stop(ctx, inst.ID); err != nil {
		t.Fatalf("Stop of a pending instance: %v", err)
	}
	wantLog(t, "Stop of a pending instance", tr,
		"DescribeInstances pending", "DescribeInstances running", "StopInstances",
		"DescribeInstances stopping", "DescribeInstances stopping", "DescribeInstances stopped")

	// A stop someone else asked for is still under way: EC2 refuses to
	// start a stopping instance, so Start waits until it is stopped.
	if err := f.p.Start(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	waitRunning(t, f.p, inst.ID)
	tr.take()
	raw := ec2Client(t, fp.URL)
	if _, err := raw.StopInstances(ctx, &awsec2.StopInstancesInput{InstanceIds: []string{inst.ID}}); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.StartInstances(ctx, &awsec2.StartInstancesInput{InstanceIds: []string{inst.ID}}); err == nil || !strings.Contains(err.Error(), "IncorrectInstanceState") {
		t.Fatalf("StartInstances of a stopping instance: %v, want IncorrectInstanceState (the proxy plays EC2)", err)
	}
	tr.take()
	if err := f.p.Start(ctx, inst.ID); err != nil {
		t.Fatalf("Start of a stopping instance: %v", err)
	}
	wantLog(t, "Start of a stopping instance", tr,
		"DescribeInstances stopping", "DescribeInstances stopping", "DescribeInstances stopped", "StartInstances")

	after := waitRunning(t, f.p, inst.ID)
	if after.PublicAddress == "" || after.PublicAddress == before.PublicAddress {
		t.Errorf("after Start the public address is %q (before the stop %q): EC2 gives a started instance a new one, and Status must report it", after.PublicAddress, before.PublicAddress)
	}
	if got := aws.ToString(describeOne(t, ec2Client(t, srv.URL), inst.ID).PublicIpAddress); got != after.PublicAddress {
		t.Errorf("Status says public address %q, EC2 says %q", after.PublicAddress, got)
	}

	if err := f.p.Delete(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	err = f.p.Stop(ctx, inst.ID)
	if !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("Stop of a terminated instance: %v, want ErrNotFound", err)
	}
	var hint *usererr.HintError
	if !errors.As(err, &hint) {
		t.Errorf("Stop of a terminated instance: %v, want a hint", err)
	}
	// An id EC2 does not know is asked about again for the consistency
	// window (shortened here), then not found.
	ec2.SetConsistency(f.p, 10*time.Millisecond, 100*time.Millisecond)
	if err := f.p.Start(ctx, "i-0123456789abcdef0"); !errors.Is(err, provider.ErrNotFound) {
		t.Errorf("Start of an unknown instance: %v, want ErrNotFound", err)
	}
}

// TestStopErrors: EC2's refusals to stop become what the user can do.
func TestStopErrors(t *testing.T) {
	srv := moto(t)
	fp := newFaultProxy(t, srv.URL)
	ctx := context.Background()
	f := newProvider(t, fp.URL, "pwe", "")
	inst, err := f.p.Create(ctx, spec(t, "pwe", "red"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		action string
		fault  fault
		hint   string
	}{
		{"StopInstances", fault{status: 400, code: "UnsupportedOperation", message: "The instance '" + inst.ID + "' does not have an 'ebs' root device type and cannot be stopped."}, "cannot stop this instance"},
		{"StopInstances", fault{status: 400, code: "OperationNotPermitted", message: "The instance '" + inst.ID + "' may not be stopped. Modify its 'disableApiStop' instance attribute and try again."}, "disableApiStop"},
		{"StopInstances", fault{status: 403, code: "UnauthorizedOperation", message: "You are not authorized to perform this operation."}, "ec2:StopInstances"},
	} {
		fp.inject(c.action, c.fault)
		err := f.p.Stop(ctx, inst.ID)
		var hint *usererr.HintError
		if !errors.As(err, &hint) || !strings.Contains(hint.Hint, c.hint) {
			t.Errorf("%s answers %s: Stop says %v, want a hint naming %q", c.action, c.fault.code, err, c.hint)
		}
	}
	if err := f.p.Stop(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	fp.inject("StartInstances", fault{status: 400, code: "InsufficientInstanceCapacity", message: "We currently do not have sufficient capacity in the Availability Zone you requested."})
	err = f.p.Start(ctx, inst.ID)
	var hint *usererr.HintError
	if !errors.As(err, &hint) || !strings.Contains(hint.Hint, "capacity") {
		t.Errorf("StartInstances answers InsufficientInstanceCapacity: Start says %v, want the capacity hint", err)
	}
}

// waitRunning reads Status until the instance is no longer pending (the
// proxy shows pending for a fixed number of looks) and wants it running.
func waitRunning(t *testing.T, p *ec2.Provider, id string) provider.Instance {
	t.Helper()
	st, err := p.Status(context.Background(), id)
	for err == nil && st.State == provider.StatePending {
		st, err = p.Status(context.Background(), id)
	}
	if err != nil || st.State != provider.StateRunning {
		t.Fatalf("Status after Start: %+v %v, want running", st, err)
	}
	return st
}

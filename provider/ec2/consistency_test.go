package ec2_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider/ec2"
)

// notFoundInstance is EC2's answer about an instance id it does not know
// (yet: right after RunInstances, say).
func notFoundInstance(id string) fault {
	return fault{status: 400, code: "InvalidInstanceID.NotFound", message: fmt.Sprintf("The instance ID '%s' does not exist", id)}
}

func notFoundGroup() fault {
	return fault{status: 400, code: "InvalidGroup.NotFound", message: "The security group 'sg-0123456789abcdef0' does not exist"}
}

// TestDeleteRightAfterRunInstances: EC2 answers InvalidInstanceID.NotFound
// to TerminateInstances, and a listing by tag does not show the instance
// yet, as it may right after RunInstances. Delete must not take that for
// "gone": the instance is running, and is terminated in the end.
func TestDeleteRightAfterRunInstances(t *testing.T) {
	srv := moto(t)
	fp := newFaultProxy(t, srv.URL)
	ctx := context.Background()
	f := newProvider(t, fp.URL, "ec", "")
	ec2.SetConsistency(f.p, 50*time.Millisecond, 30*time.Second)
	inst, err := f.p.Create(ctx, spec(t, "ec", "young"))
	if err != nil {
		t.Fatal(err)
	}
	fp.inject("TerminateInstances", notFoundInstance(inst.ID), notFoundInstance(inst.ID))
	fp.inject("DescribeInstances", fault{body: emptyDescribeInstances})
	if err := f.p.Delete(ctx, inst.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if st := describeOne(t, ec2Client(t, srv.URL), inst.ID).State.Name; st != types.InstanceStateNameTerminated {
		t.Errorf("after Delete the instance is %q, want terminated (NotFound right after RunInstances is not gone)", st)
	}
	t.Logf("calls %v", f.p.Calls())
	if n := f.p.Calls()["EC2:TerminateInstances"]; n != 3 {
		t.Errorf("TerminateInstances %d times, want 3 (two NotFound, then accepted)", n)
	}
}

// TestDeleteUnknownID: an id EC2 never knows within the window is gone,
// but only after asking again (and listing by tag) for the whole window.
func TestDeleteUnknownID(t *testing.T) {
	srv := moto(t)
	f := newProvider(t, srv.URL, "ec", "")
	ec2.SetConsistency(f.p, 50*time.Millisecond, 400*time.Millisecond)
	if err := f.p.Delete(context.Background(), "i-0123456789abcdef0"); err != nil {
		t.Fatalf("Delete of an unknown id: %v", err)
	}
	calls := f.p.Calls()
	if calls["EC2:TerminateInstances"] < 2 || calls["EC2:DescribeInstances"] < 2 {
		t.Errorf("calls %v: want TerminateInstances and DescribeInstances asked again before the id counts as gone", calls)
	}
}

// TestNewGroupNotFoundRetried: right after CreateSecurityGroup, EC2 may
// answer InvalidGroup.NotFound for the new group, to the ingress rules and
// to RunInstances. Create asks again and succeeds.
func TestNewGroupNotFoundRetried(t *testing.T) {
	srv := moto(t)
	fp := newFaultProxy(t, srv.URL)
	ctx := context.Background()
	f := newProvider(t, fp.URL, "grp", "")
	ec2.SetConsistency(f.p, 50*time.Millisecond, 30*time.Second)
	fp.inject("AuthorizeSecurityGroupIngress", notFoundGroup(), notFoundGroup())
	fp.inject("RunInstances", notFoundGroup())
	inst, err := f.p.Create(ctx, spec(t, "grp", "one"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	c := ec2Client(t, srv.URL)
	in := describeOne(t, c, inst.ID)
	g, err := c.DescribeSecurityGroups(ctx, &awsec2.DescribeSecurityGroupsInput{GroupIds: []string{aws.ToString(in.SecurityGroups[0].GroupId)}})
	if err != nil {
		t.Fatal(err)
	}
	grp := g.SecurityGroups[0]
	wantRules(t, grp, aws.ToString(grp.GroupId), "tcp/7946/self", "udp/7946/self", "tcp/7947/"+defaultPublicIP+"/32")
	if toks := fp.runTokens(); len(toks) != 2 || toks[0] != toks[1] {
		t.Errorf("RunInstances tokens %q: want the request repeated once with the same ClientToken", toks)
	}
	if l, err := f.p.List(ctx, "grp"); err != nil || len(l) != 1 {
		t.Errorf("List: %v %+v, want one instance", err, l)
	}
}

// TestNewGroupNeverVisible: when the new group stays unknown for the whole
// window, the error says what happened and is no bad input: the user set
// no security_group_id to fix.
func TestNewGroupNeverVisible(t *testing.T) {
	srv := moto(t)
	fp := newFaultProxy(t, srv.URL)
	f := newProvider(t, fp.URL, "grp", "")
	ec2.SetConsistency(f.p, 20*time.Millisecond, 200*time.Millisecond)
	for range 100 {
		fp.inject("AuthorizeSecurityGroupIngress", notFoundGroup())
	}
	_, err := f.p.Create(context.Background(), spec(t, "grp", "one"))
	var ie *usererr.InputError
	var he *usererr.HintError
	if err == nil || errors.As(err, &ie) || !errors.As(err, &he) {
		t.Fatalf("error %T %v: want a *HintError, not bad input", err, err)
	}
	if !strings.Contains(err.Error(), "which clusterctl made") || !strings.Contains(he.Hint, "run `clusterctl up` again") {
		t.Errorf("error %q hint %q", err, he.Hint)
	}
	if strings.Contains(he.Hint, "security_group_id") {
		t.Errorf("hint %q points at ec2.security_group_id, which the user did not set", he.Hint)
	}
}

// TestDeleteConcurrent: Deletes called at once overlap, waits included;
// nothing in the provider serialises them.
func TestDeleteConcurrent(t *testing.T) {
	srv := moto(t)
	fp := newFaultProxy(t, srv.URL)
	ctx := context.Background()
	f := newProvider(t, fp.URL, "par", "")
	var ids []string
	for i := range 4 {
		inst, err := f.p.Create(ctx, spec(t, "par", fmt.Sprintf("n%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, inst.ID)
	}
	fp.mu.Lock()
	fp.slow["DescribeInstances"] = 300 * time.Millisecond
	fp.slow["TerminateInstances"] = 300 * time.Millisecond
	fp.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f.p.Delete(ctx, id)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if n := fp.maxConcurrent("TerminateInstances"); n < 2 {
		t.Errorf("at most %d TerminateInstances at once: Deletes were serialised", n)
	}
	if n := fp.maxConcurrent("DescribeInstances"); n < 2 {
		t.Errorf("at most %d DescribeInstances at once: the terminated-waits were serialised", n)
	}
	c := ec2Client(t, srv.URL)
	for _, id := range ids {
		if st := describeOne(t, c, id).State.Name; st != types.InstanceStateNameTerminated {
			t.Errorf("%s is %q after Delete", id, st)
		}
	}
}

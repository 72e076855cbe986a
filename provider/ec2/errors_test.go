package ec2_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/ec2"
)

// faultProxy sits between the provider and moto and answers chosen EC2
// actions with an AWS error, the way AWS words it, for the errors moto
// cannot produce (capacity, quotas, permissions, throttling, eventual
// consistency). It also answers what moto lacks: DescribeInstances'
// client-token filter (see clientTokenFilter).
type faultProxy struct {
	*httptest.Server
	mu     sync.Mutex
	faults map[string][]fault // action -> errors to answer, in order
	tokens []string           // ClientToken of every RunInstances attempt
	// launched maps a ClientToken to the instances moto made for a
	// RunInstances that carried it.
	launched map[string][]string

	// deny, when set, answers a request before the faults (an
	// organisation policy, say).
	deny func(r *http.Request, action string) *fault
	// slow actions are held this long before moto answers them; inFlight
	// and maxInFlight count the requests held at once, by action.
	slow        map[string]time.Duration
	inFlight    map[string]int
	maxInFlight map[string]int
	// held actions wait, before they go on, until the hold is released;
	// they then reach moto even when their client has gone.
	held map[string]*hold
	// answered, when set, is called after a request was answered, before
	// the client gets the answer.
	answered func(action string, form url.Values)
	// rewrite, when set, may change moto's answer to an action before the
	// client gets it (a state moto skips).
	rewrite func(action string, form url.Values, body []byte) []byte
}

type fault struct {
	status  int
	code    string
	message string
	body    string // when set, answered as it is with status 200
}

// hold keeps requests of one action on their way: arrived is closed when
// the first one is held, letGo lets them all go on, done is closed when
// moto has answered the first one.
type hold struct {
	arrived, release, done      chan struct{}
	once, releaseOnce, doneOnce sync.Once
}

func (h *hold) letGo() { h.releaseOnce.Do(func() { close(h.release) }) }

// tokenKey carries a RunInstances' ClientToken from the request to moto's
// answer.
type tokenKey struct{}

func newFaultProxy(t *testing.T, motoURL string) *faultProxy {
	t.Helper()
	target, _ := url.Parse(motoURL)
	rp := httputil.NewSingleHostReverseProxy(target)
	fp := &faultProxy{faults: map[string][]fault{}, slow: map[string]time.Duration{}, inFlight: map[string]int{}, maxInFlight: map[string]int{},
		launched: map[string][]string{}, held: map[string]*hold{}}
	rp.ModifyResponse = fp.recordLaunch
	fp.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		action := form.Get("Action")
		fp.mu.Lock()
		if action == "RunInstances" {
			fp.tokens = append(fp.tokens, form.Get("ClientToken"))
			r = r.WithContext(context.WithValue(r.Context(), tokenKey{}, form.Get("ClientToken")))
		}
		var f *fault
		if fp.deny != nil {
			f = fp.deny(r, action)
		}
		if q := fp.faults[action]; f == nil && len(q) > 0 {
			f = &q[0]
			fp.faults[action] = q[1:]
		}
		if f == nil && action == "DescribeInstances" {
			var empty bool
			body, empty = fp.clientTokenFilter(maps.Clone(form), body)
			if empty {
				f = &fault{body: emptyDescribeInstances}
			}
		}
		delay := fp.slow[action]
		h := fp.held[action]
		fp.inFlight[action]++
		fp.maxInFlight[action] = max(fp.maxInFlight[action], fp.inFlight[action])
		answered, rewrite := fp.answered, fp.rewrite
		fp.mu.Unlock()
		defer func() {
			fp.mu.Lock()
			fp.inFlight[action]--
			fp.mu.Unlock()
		}()
		r.Body = io.NopCloser(bytes.NewReader(body)) // deny may have read it; the filter may have changed it
		r.ContentLength = int64(len(body))
		if h != nil {
			h.once.Do(func() { close(h.arrived) })
			<-h.release
			// A request that reached AWS completes whether or not its
			// client still waits for the answer. (A context that cannot
			// be cancelled would make the reverse proxy watch the client's
			// connection instead.)
			ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
			defer cancel()
			r = r.WithContext(ctx)
		}
		time.Sleep(delay)
		switch {
		case f != nil && f.body != "":
			w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
			fmt.Fprint(w, f.body)
		case f != nil:
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(f.status)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>00000000-test</RequestID></Response>`, f.code, f.message)
		case rewrite != nil:
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)
			out := rewrite(action, form, rec.Body.Bytes())
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			_, _ = w.Write(out)
		default:
			rp.ServeHTTP(w, r)
		}
		if h != nil {
			h.doneOnce.Do(func() { close(h.done) })
		}
		if answered != nil {
			answered(action, form)
		}
	}))
	t.Cleanup(fp.Close)
	return fp
}

// hold makes requests of action wait until the returned hold lets them go
// (at the latest when the test ends, so that the proxy can close).
func (fp *faultProxy) hold(t *testing.T, action string) *hold {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	h := &hold{arrived: make(chan struct{}), release: make(chan struct{}), done: make(chan struct{})}
	fp.held[action] = h
	t.Cleanup(h.letGo)
	return h
}

// recordLaunch notes which instances moto made for a RunInstances'
// ClientToken.
func (fp *faultProxy) recordLaunch(resp *http.Response) error {
	token, _ := resp.Request.Context().Value(tokenKey{}).(string)
	if token == "" || resp.StatusCode != http.StatusOK {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var out struct {
		Instances []string `xml:"instancesSet>item>instanceId"`
	}
	if err := xml.Unmarshal(body, &out); err != nil {
		return fmt.Errorf("moto's RunInstances answer: %w", err)
	}
	fp.mu.Lock()
	fp.launched[token] = append(fp.launched[token], out.Instances...)
	fp.mu.Unlock()
	return nil
}

// clientTokenFilter answers DescribeInstances' client-token filter, which
// moto does not implement (it fails the request), as AWS documents it: the
// instances launched with one of the given ClientTokens. The filter is
// replaced by an instance-id filter of the instances moto made for those
// tokens (the other filters stay moto's to apply); when there are none,
// nothing matches (empty). Called with fp.mu held.
func (fp *faultProxy) clientTokenFilter(form url.Values, body []byte) (_ []byte, empty bool) {
	for n := 1; form.Has(fmt.Sprintf("Filter.%d.Name", n)); n++ {
		prefix := fmt.Sprintf("Filter.%d.", n)
		if form.Get(prefix+"Name") != "client-token" {
			continue
		}
		var ids []string
		for k := range form {
			if strings.HasPrefix(k, prefix+"Value.") {
				ids = append(ids, fp.launched[form.Get(k)]...)
				form.Del(k)
			}
		}
		if len(ids) == 0 {
			return body, true
		}
		form.Set(prefix+"Name", "instance-id")
		for i, id := range ids {
			form.Set(fmt.Sprintf("%sValue.%d", prefix, i+1), id)
		}
		body = []byte(form.Encode())
	}
	return body, false
}

// emptyDescribeInstances is EC2's answer to a DescribeInstances whose
// filters match nothing (an instance not yet visible to the listing).
const emptyDescribeInstances = `<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>00000000-test</requestId><reservationSet/></DescribeInstancesResponse>`

func (fp *faultProxy) maxConcurrent(action string) int {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return fp.maxInFlight[action]
}

func (fp *faultProxy) inject(action string, fs ...fault) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fp.faults[action] = append(fp.faults[action], fs...)
}

func (fp *faultProxy) runTokens() []string {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return append([]string(nil), fp.tokens...)
}

// TestThrottlingRetriedBySDK: RequestLimitExceeded twice, then moto answers.
// The SDK retries with the same ClientToken and one instance exists.
func TestThrottlingRetriedBySDK(t *testing.T) {
	srv := moto(t)
	fp := newFaultProxy(t, srv.URL)
	f := newProvider(t, fp.URL, "thr", "")
	throttle := fault{status: 503, code: "RequestLimitExceeded", message: "Request limit exceeded."}
	fp.inject("RunInstances", throttle, throttle)
	inst, err := f.p.Create(context.Background(), spec(t, "thr", "one"))
	if err != nil {
		t.Fatalf("Create with two throttled attempts: %v", err)
	}
	toks := fp.runTokens()
	if len(toks) != 3 {
		t.Fatalf("RunInstances attempts %d, want 3 (two throttled, retried by the SDK)", len(toks))
	}
	if toks[0] == "" || toks[0] != toks[1] || toks[1] != toks[2] {
		t.Errorf("ClientTokens of the attempts %q: want one non-empty token", toks)
	}
	if n := f.p.Calls()["EC2:RunInstances"]; n != 1 {
		t.Errorf("RunInstances operations %d, want 1 (retries are the SDK's)", n)
	}
	list, err := f.p.List(context.Background(), "thr")
	if err != nil || len(list) != 1 || list[0].ID != inst.ID {
		t.Errorf("List: %v %+v, want just %s", err, list, inst.ID)
	}
}

// TestErrorMapping: each AWS error that RunInstances can give becomes a
// message that says what to do, with the right kind (bad input: exit 2),
// and nothing is left behind.
func TestErrorMapping(t *testing.T) {
	srv := moto(t)
	fp := newFaultProxy(t, srv.URL)
	f := newProvider(t, fp.URL, "errs", "")
	tests := []struct {
		code, msg string
		input     bool   // *usererr.InputError rather than *usererr.HintError
		want      string // in the hint or fix
	}{
		{"UnauthorizedOperation", "You are not authorized to perform this operation. Encoded authorization failure message: abc", false, "ec2:RunInstances"},
		{"AuthFailure", "AWS was not able to validate the provided access credentials", false, "aws sts get-caller-identity"},
		{"InvalidAMIID.NotFound", "The image id '[ami-0badbadbad]' does not exist", true, "ec2.ami"},
		{"InsufficientInstanceCapacity", "We currently do not have sufficient t3.micro capacity in the Availability Zone you requested", false, "another ec2.instance_type"},
		{"InstanceLimitExceeded", "You have requested more instances than your current instance limit allows", false, "Service Quotas"},
		{"VcpuLimitExceeded", "You have requested more vCPU capacity than your current vCPU limit", false, "Service Quotas"},
		{"OptInRequired", "In order to use this AWS Marketplace product you need to accept terms", false, "Marketplace"},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			fp.inject("RunInstances", fault{status: 400, code: tt.code, message: tt.msg})
			_, err := f.p.Create(context.Background(), spec(t, "errs", "n-"+strings.ToLower(strings.ReplaceAll(tt.code, ".", "-"))))
			if err == nil {
				t.Fatal("Create succeeded")
			}
			var ie *usererr.InputError
			var he *usererr.HintError
			switch {
			case tt.input && errors.As(err, &ie):
				if !strings.Contains(ie.Fix, tt.want) {
					t.Errorf("fix %q does not mention %q", ie.Fix, tt.want)
				}
			case !tt.input && errors.As(err, &he):
				if !strings.Contains(he.Hint, tt.want) {
					t.Errorf("hint %q does not mention %q", he.Hint, tt.want)
				}
			default:
				t.Fatalf("error %T %v: want input=%v", err, err, tt.input)
			}
			if !strings.Contains(err.Error(), tt.code) {
				t.Errorf("error %q does not name AWS's code", err)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Error("error shows the secret key")
			}
		})
	}
	list, err := f.p.List(context.Background(), "errs")
	if err != nil || len(list) != 0 {
		t.Errorf("after failed Creates: %v %+v, want no instances", err, list)
	}
}

// nothingMade fails t if moto holds any instance, clusterctl security
// group or bucket.
func nothingMade(t *testing.T, endpoint string) {
	t.Helper()
	ctx := context.Background()
	c := ec2Client(t, endpoint)
	out, err := c.DescribeInstances(ctx, &awsec2.DescribeInstancesInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Reservations) != 0 {
		t.Errorf("%d reservations exist, want none", len(out.Reservations))
	}
	g, err := c.DescribeSecurityGroups(ctx, &awsec2.DescribeSecurityGroupsInput{Filters: []types.Filter{{Name: aws.String("tag:" + ec2.TagManagedBy), Values: []string{"clusterctl"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.SecurityGroups) != 0 {
		t.Errorf("%d clusterctl security groups exist, want none", len(g.SecurityGroups))
	}
	b, err := s3Client(t, endpoint).ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Buckets) != 0 {
		t.Errorf("%d buckets exist, want none", len(b.Buckets))
	}
}

// TestPreflightBadInput: each bad input of the issue is an *InputError
// with a clear message before anything is made. (A region that does not
// exist is TestRegionThatDoesNotExist: on AWS it has no endpoint at all,
// while moto answers for any region name, with a 500 for one it lacks.)
func TestPreflightBadInput(t *testing.T) {
	srv := moto(t)
	ctx := context.Background()
	c := ec2Client(t, srv.URL)
	// A VPC and a security group that are not the default VPC's.
	vpc, err := c.CreateVpc(ctx, &awsec2.CreateVpcInput{CidrBlock: aws.String("10.77.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	sg, err := c.CreateSecurityGroup(ctx, &awsec2.CreateSecurityGroupInput{GroupName: aws.String("elsewhere"), Description: aws.String("x"), VpcId: vpc.Vpc.VpcId})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		config string
		want   []string
	}{
		{"instance type", "instance_type: t9.gigantic\n", []string{`instance type "t9.gigantic" does not exist`}},
		{"subnet in another VPC than the group", "security_group_id: " + aws.ToString(sg.GroupId) + "\n",
			[]string{"security group " + `"` + aws.ToString(sg.GroupId) + `" is in VPC "` + aws.ToString(vpc.Vpc.VpcId) + `"`}},
		{"AMI", "ami: ami-0badbadbadbadbad0\n", []string{`AMI "ami-0badbadbadbadbad0" does not exist`}},
		{"subnet", "subnet_id: subnet-0badbadbadbadbad0\n", []string{`subnet "subnet-0badbadbadbadbad0" does not exist`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, param := someAMI(t, srv.URL)
			text := fmt.Sprintf("endpoint_url: %s\ndelete_timeout: 1m\n", srv.URL)
			if !strings.Contains(tt.config, "region:") {
				text += "region: " + testRegion + "\n"
			}
			if !strings.Contains(tt.config, "ami:") {
				text += "ami_parameter: " + param + "\n"
			}
			p, err := ec2.New(provider.Env{Cluster: "bad", Dir: t.TempDir(), Config: yamlNode(t, text+tt.config)}, staticCreds())
			if err != nil {
				t.Fatal(err)
			}
			s := spec(t, "bad", "one")
			err = p.Preflight(ctx, []provider.NodeSpec{s})
			if err == nil {
				t.Fatal("Preflight accepted it")
			}
			var ie *usererr.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error %T %v is not an *InputError (exit 2)", err, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if ie.Fix == "" {
				t.Error("no fix suggested")
			}
			nothingMade(t, srv.URL)
		})
	}

	t.Run("good config passes", func(t *testing.T) {
		f := newProvider(t, srv.URL, "good", "")
		if err := f.p.Preflight(ctx, []provider.NodeSpec{spec(t, "good", "one")}); err != nil {
			t.Fatalf("Preflight of a good config: %v", err)
		}
		nothingMade(t, srv.URL)
	})
}

func TestNoDefaultVPC(t *testing.T) {
	srv := moto(t)
	ctx := context.Background()
	c := ec2Client(t, srv.URL)
	subs, err := c.DescribeSubnets(ctx, &awsec2.DescribeSubnetsInput{Filters: []types.Filter{{Name: aws.String("default-for-az"), Values: []string{"true"}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs.Subnets {
		if _, err := c.DeleteSubnet(ctx, &awsec2.DeleteSubnetInput{SubnetId: s.SubnetId}); err != nil {
			t.Fatal(err)
		}
	}
	f := newProvider(t, srv.URL, "novpc", "")
	err = f.p.Preflight(ctx, nil)
	var ie *usererr.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "has no default VPC") || !strings.Contains(ie.Fix, "subnet_id") {
		t.Fatalf("Preflight without a default VPC: %v", err)
	}
	if _, err := f.p.Create(ctx, spec(t, "novpc", "one")); !errors.As(err, &ie) {
		t.Errorf("Create without a default VPC: %v", err)
	}
	nothingMade(t, srv.URL)
}

// TestNoCredentials: with nothing in the default chain the user is told
// how to configure credentials, and nothing is made.
func TestNoCredentials(t *testing.T) {
	srv := moto(t)
	text := fmt.Sprintf("region: %s\nendpoint_url: %s\nami: ami-03cf127a\n", testRegion, srv.URL)
	p, err := ec2.New(provider.Env{Cluster: "nocreds", Dir: t.TempDir(), Config: yamlNode(t, text)})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Preflight(context.Background(), nil)
	var ie *usererr.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "no AWS credentials found") || !strings.Contains(ie.Fix, "aws configure") {
		t.Fatalf("Preflight without credentials: %T %v", err, err)
	}
	_, err = p.Create(context.Background(), spec(t, "nocreds", "one"))
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "no AWS credentials found") {
		t.Fatalf("Create without credentials: %T %v", err, err)
	}
	nothingMade(t, srv.URL)
}

// TestNoRegion: no region anywhere is a clear bad-input error.
func TestNoRegion(t *testing.T) {
	moto(t)
	p, err := ec2.New(provider.Env{Cluster: "noregion", Dir: t.TempDir()}, staticCreds())
	if err != nil {
		t.Fatal(err)
	}
	err = p.Preflight(context.Background(), nil)
	var ie *usererr.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "no AWS region") {
		t.Fatalf("%T %v", err, err)
	}
}

// TestCredentialsNeverShown runs every operation, successful and failing,
// and checks that the secret key appears in no error, no instance, and no
// file the provider wrote.
func TestCredentialsNeverShown(t *testing.T) {
	srv := moto(t)
	fp := newFaultProxy(t, srv.URL)
	ctx := context.Background()
	f := newProvider(t, fp.URL, "leak", "")
	var seen []string
	note := func(v ...any) { seen = append(seen, fmt.Sprint(v...)) }
	note(f.p.Config())
	note(fmt.Sprintf("%+v %#v", f.p.Config(), f.p.Config()))
	note(f.p.Preflight(ctx, nil))
	bin := filepath.Join(t.TempDir(), "agent")
	_ = os.WriteFile(bin, []byte("agent"), 0o755)
	u, sum, err := f.p.PublishAgent(ctx, "leak", bin)
	note(u, sum, err)
	inst, err := f.p.Create(ctx, spec(t, "leak", "one"))
	note(inst, err)
	fp.inject("RunInstances", fault{status: 401, code: "AuthFailure", message: "AWS was not able to validate the provided access credentials"})
	note(f.p.Create(ctx, spec(t, "leak", "two")))
	fp.inject("DescribeInstances", fault{status: 403, code: "UnauthorizedOperation", message: "You are not authorized to perform this operation."})
	note(f.p.Status(ctx, inst.ID))
	note(f.p.List(ctx, "leak"))
	note(f.p.ConsoleLog(ctx, inst.ID))
	note(f.p.Delete(ctx, inst.ID))
	note(f.p.CleanupCluster(ctx, "leak"))
	_ = filepath.Walk(f.dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(path)
			seen = append(seen, string(b))
		}
		return nil
	})
	if len(seen) < 10 {
		t.Fatalf("collected only %d outputs", len(seen))
	}
	for _, s := range seen {
		if strings.Contains(s, testSecret) {
			t.Errorf("the secret key shows in: %.200s", s)
		}
	}
}

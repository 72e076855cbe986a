package ec2_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/internal/publicip"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/ec2"
	"github.com/clusterctl/clusterctl/provider/ec2/mototest"
	"github.com/clusterctl/clusterctl/provider/providertest"
)

// Test credentials. The secret is distinctive so tests can check that it
// never shows up in errors, state or output.
const (
	testKeyID  = "AKIDCLUSTERCTLTEST01"
	testSecret = "sEcReT-clusterctl-test-do-not-print-7f3a9"
	testRegion = "eu-west-1"
	// defaultPublicIP is what this machine's public address is detected
	// as, unless a test sets publicip.EnvURL itself.
	defaultPublicIP = "203.0.113.44"
)

var (
	motoOnce sync.Once
	motoSrv  *mototest.Server
)

// moto returns the package's moto server (started once) after resetting it,
// and isolates the SDK from this machine's AWS configuration.
func moto(t testing.TB) *mototest.Server {
	t.Helper()
	mototest.Require(t)
	motoOnce.Do(func() { motoSrv = mototest.Start(t) })
	if motoSrv == nil {
		t.Fatal("moto did not start")
	}
	motoSrv.Reset(t)
	mototest.IsolateAWSEnv(t)
	return motoSrv
}

func TestMain(m *testing.M) {
	// No test may ask the real "what is my IP" endpoints: unless a test
	// says otherwise, this machine's public address is 203.0.113.44, as a
	// loopback server says.
	ip := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, defaultPublicIP)
	}))
	os.Setenv(publicip.EnvURL, ip.URL)
	code := m.Run()
	ip.Close()
	if motoSrv != nil {
		motoSrv.Stop()
	}
	os.Exit(code)
}

func staticCreds() ec2.Option {
	return ec2.WithLoadOptions(config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(testKeyID, testSecret, "")))
}

// awsConfig is an SDK config for the test's own look at moto.
func awsConfig(t testing.TB, endpoint string) aws.Config {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion(testRegion), config.WithBaseEndpoint(endpoint),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(testKeyID, testSecret, "")))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func ec2Client(t testing.TB, endpoint string) *awsec2.Client {
	return awsec2.NewFromConfig(awsConfig(t, endpoint))
}

func s3Client(t testing.TB, endpoint string) *s3.Client {
	return s3.NewFromConfig(awsConfig(t, endpoint), func(o *s3.Options) { o.UsePathStyle = true })
}

// someAMI returns an AMI moto knows and publishes it under an SSM parameter
// (moto, like AWS, reserves /aws/ names, so the test uses its own).
func someAMI(t testing.TB, endpoint string) (ami, param string) {
	t.Helper()
	ctx := context.Background()
	out, err := ec2Client(t, endpoint).DescribeImages(ctx, &awsec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(out.Images) == 0 {
		t.Fatalf("moto has no images: %v", err)
	}
	ami = aws.ToString(out.Images[0].ImageId)
	param = "/clusterctl-test/debian-12/latest"
	_, err = ssm.NewFromConfig(awsConfig(t, endpoint)).PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(param), Value: aws.String(ami), Type: "String", Overwrite: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	return ami, param
}

func yamlNode(t testing.TB, text string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	return &doc
}

type fixture struct {
	p        *ec2.Provider
	endpoint string
	dir      string
	cluster  string
}

// newProvider makes a provider of cluster on moto with the given extra
// config lines.
func newProvider(t testing.TB, endpoint, cluster, extra string) fixture {
	t.Helper()
	return newProviderEnv(t, endpoint, provider.Env{Cluster: cluster}, extra)
}

// newProviderEnv is newProvider with more of the environment (SSH, ports)
// given; its Dir and Config are filled in.
func newProviderEnv(t testing.TB, endpoint string, env provider.Env, extra string) fixture {
	t.Helper()
	_, param := someAMI(t, endpoint)
	text := fmt.Sprintf("region: %s\nendpoint_url: %s\nami_parameter: %s\ndelete_timeout: 1m\n%s", testRegion, endpoint, param, extra)
	dir := t.TempDir()
	cluster := env.Cluster
	env.Dir, env.Config = dir, yamlNode(t, text)
	p, err := ec2.New(env, staticCreds())
	if err != nil {
		t.Fatal(err)
	}
	return fixture{p: p, endpoint: endpoint, dir: dir, cluster: cluster}
}

func spec(t testing.TB, cluster, name string) provider.NodeSpec {
	nonce := make([]byte, 8)
	_, _ = rand.Read(nonce)
	dir := filepath.Join(t.TempDir(), name)
	_ = os.MkdirAll(dir, 0o700)
	return provider.NodeSpec{
		Cluster: cluster, Name: name, Nonce: hex.EncodeToString(nonce),
		Seed: provider.Seed{UserData: []byte("#cloud-config\nhostname: \"" + name + "\"\n")},
		Tags: map[string]string{"team": "blue"},
		Dir:  dir,
	}
}

func TestConformance(t *testing.T) {
	srv := moto(t)
	f := newProvider(t, srv.URL, "conf", "")
	providertest.Run(t, providertest.Harness{
		Provider: f.p,
		Cluster:  "conf",
		Spec:     func(t *testing.T, name string) provider.NodeSpec { return spec(t, "conf", name) },
		Timeout:  time.Minute,
	})
}

func describeOne(t *testing.T, c *awsec2.Client, id string) types.Instance {
	t.Helper()
	out, err := c.DescribeInstances(context.Background(), &awsec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil || len(out.Reservations) != 1 || len(out.Reservations[0].Instances) != 1 {
		t.Fatalf("describe %s: %v %+v", id, err, out)
	}
	return out.Reservations[0].Instances[0]
}

func tagsOf(tags []types.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

// TestCreate checks what Create makes, looking at moto directly: AMI from
// the SSM parameter, the default VPC's subnet, IMDSv2, tags, the user-data
// (gzip, base64) and one shared security group with the expected rules.
func TestCreate(t *testing.T) {
	srv := moto(t)
	ctx := context.Background()
	f := newProvider(t, srv.URL, "red", "api_from: [198.51.100.0/24]\n")
	c := ec2Client(t, srv.URL)
	ami, _ := someAMI(t, srv.URL)

	cidr, err := f.p.NodeCIDR(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subs, err := c.DescribeSubnets(ctx, &awsec2.DescribeSubnetsInput{Filters: []types.Filter{{Name: aws.String("default-for-az"), Values: []string{"true"}}}})
	if err != nil {
		t.Fatal(err)
	}
	var subnetID string
	for _, s := range subs.Subnets {
		if aws.ToString(s.CidrBlock) == cidr.String() {
			subnetID = aws.ToString(s.SubnetId)
		}
	}
	if subnetID == "" {
		t.Fatalf("NodeCIDR %s is not a default subnet's CIDR", cidr)
	}

	sa, sb := spec(t, "red", "alpha"), spec(t, "red", "beta")
	sa.Seed.UserData = []byte("#cloud-config\nhostname: alpha\nruncmd:\n  - [echo, " + strings.Repeat("padding ", 2000) + "]\n")
	a, err := f.p.Create(ctx, sa)
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.p.Create(ctx, sb)
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "alpha" || b.Name != "beta" || a.ID == b.ID {
		t.Fatalf("instances %+v %+v", a, b)
	}

	in := describeOne(t, c, a.ID)
	if got := aws.ToString(in.ImageId); got != ami {
		t.Errorf("AMI %q, want %q (from the SSM parameter)", got, ami)
	}
	if got := aws.ToString(in.SubnetId); got != subnetID {
		t.Errorf("subnet %q, want the default subnet %q", got, subnetID)
	}
	if string(in.InstanceType) != ec2.DefaultInstanceType {
		t.Errorf("instance type %q", in.InstanceType)
	}
	if in.MetadataOptions == nil || in.MetadataOptions.HttpTokens != types.HttpTokensStateRequired {
		t.Errorf("IMDSv2 is not required: %+v", in.MetadataOptions)
	}
	tags := tagsOf(in.Tags)
	for k, v := range map[string]string{ec2.TagCluster: "red", ec2.TagNode: "alpha", ec2.TagNonce: sa.Nonce, ec2.TagManagedBy: "clusterctl", "Name": "red-alpha", "team": "blue"} {
		if tags[k] != v {
			t.Errorf("tag %q = %q, want %q (all: %v)", k, tags[k], v, tags)
		}
	}
	if a.Address == "" || aws.ToString(in.PrivateIpAddress) != a.Address {
		t.Errorf("Create address %q, moto says %q", a.Address, aws.ToString(in.PrivateIpAddress))
	}

	// User-data as the instance would read it.
	attr, err := c.DescribeInstanceAttribute(ctx, &awsec2.DescribeInstanceAttributeInput{InstanceId: aws.String(a.ID), Attribute: types.InstanceAttributeNameUserData})
	if err != nil {
		t.Fatal(err)
	}
	raw := aws.ToString(attr.UserData.Value)
	ud, err := ec2.DecodeUserData(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ud, sa.Seed.UserData) {
		t.Errorf("user-data read back differs from what was rendered")
	}
	if gz, _ := io.ReadAll(strings.NewReader(raw)); len(gz) >= len(sa.Seed.UserData) {
		t.Errorf("user-data was not compressed: %d base64 bytes for %d bytes", len(gz), len(sa.Seed.UserData))
	}

	// One security group, shared, with exactly the gossip rules.
	if len(in.SecurityGroups) != 1 {
		t.Fatalf("instance security groups: %+v", in.SecurityGroups)
	}
	sg := aws.ToString(in.SecurityGroups[0].GroupId)
	if got := aws.ToString(describeOne(t, c, b.ID).SecurityGroups[0].GroupId); got != sg {
		t.Errorf("second node in group %q, first in %q: want one shared group", got, sg)
	}
	groups, err := c.DescribeSecurityGroups(ctx, &awsec2.DescribeSecurityGroupsInput{Filters: []types.Filter{{Name: aws.String("tag:" + ec2.TagCluster), Values: []string{"red"}}}})
	if err != nil || len(groups.SecurityGroups) != 1 {
		t.Fatalf("cluster security groups: %v %+v", err, groups)
	}
	g := groups.SecurityGroups[0]
	if aws.ToString(g.GroupName) != "clusterctl-red" || tagsOf(g.Tags)[ec2.TagManagedBy] != "clusterctl" {
		t.Errorf("group %q tags %v", aws.ToString(g.GroupName), tagsOf(g.Tags))
	}
	// Gossip only among the nodes, the API port only from api_from; SSH
	// is not opened (the cluster's ssh: switch, provider.Env.SSH, is off).
	wantRules(t, g, sg, "tcp/7946/self", "udp/7946/self", "tcp/7947/198.51.100.0/24")

	// A retried Create of the same incarnation makes no second instance.
	again, err := f.p.Create(ctx, sa)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != a.ID {
		t.Errorf("retried Create made %q, want the first instance %q", again.ID, a.ID)
	}
	list, err := f.p.List(ctx, "red")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Errorf("List after a retried Create: %d instances, want 2: %+v", len(list), list)
	}
	// Another cluster sees none of them.
	other := newProvider(t, srv.URL, "green", "")
	if l, err := other.p.List(ctx, "green"); err != nil || len(l) != 0 {
		t.Errorf("List of another cluster: %v %+v", err, l)
	}
}

func TestStatusStates(t *testing.T) {
	srv := moto(t)
	ctx := context.Background()
	f := newProvider(t, srv.URL, "st", "")
	inst, err := f.p.Create(ctx, spec(t, "st", "one"))
	if err != nil {
		t.Fatal(err)
	}
	c := ec2Client(t, srv.URL)
	if _, err := c.StopInstances(ctx, &awsec2.StopInstancesInput{InstanceIds: []string{inst.ID}}); err != nil {
		t.Fatal(err)
	}
	st, err := f.p.Status(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != provider.StateStopped && st.State != provider.StateStopping {
		t.Errorf("stopped instance: state %q", st.State)
	}
	if err := f.p.Delete(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	st, err = f.p.Status(ctx, inst.ID)
	if err != nil || st.State != provider.StateTerminated {
		t.Errorf("after Delete: %v %+v, want terminated", err, st)
	}
	// An id of the right shape that EC2 does not know.
	st, err = f.p.Status(ctx, "i-0123456789abcdef0")
	if err != nil || st.State != provider.StateNotFound {
		t.Errorf("unknown id: %v %+v", err, st)
	}
	log, err := f.p.ConsoleLog(ctx, inst.ID)
	if err != nil || len(log) == 0 {
		t.Errorf("console log: %v %q", err, log)
	}
}

// TestPublishAgentAndCleanup publishes an agent, downloads it through the
// presigned URL as a node would, and checks down --all's clean-up.
func TestPublishAgentAndCleanup(t *testing.T) {
	srv := moto(t)
	ctx := context.Background()
	f := newProvider(t, srv.URL, "pub", "")
	bin := filepath.Join(t.TempDir(), "clusterctl-agent")
	content := make([]byte, 300_000)
	_, _ = rand.Read(content)
	if err := os.WriteFile(bin, content, 0o755); err != nil {
		t.Fatal(err)
	}
	url, sum, err := f.p.PublishAgent(ctx, "pub", bin)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(content)
	if sum != hex.EncodeToString(want[:]) {
		t.Errorf("sha256 %s, want %x", sum, want)
	}
	if strings.Contains(url, testSecret) {
		t.Fatal("the presigned URL contains the secret key")
	}
	if !strings.Contains(url, "X-Amz-Signature=") || !strings.Contains(url, "X-Amz-Expires=7200") {
		t.Errorf("URL is not presigned for 2h: %s", url)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, content) {
		t.Fatalf("download through the presigned URL: %s, %d bytes", resp.Status, len(got))
	}

	// The bucket is private and tagged.
	s3c := s3Client(t, srv.URL)
	buckets, err := s3c.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil || len(buckets.Buckets) != 1 {
		t.Fatalf("buckets: %v %+v", err, buckets)
	}
	bucket := aws.ToString(buckets.Buckets[0].Name)
	pab, err := s3c.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	c := pab.PublicAccessBlockConfiguration
	if !aws.ToBool(c.BlockPublicAcls) || !aws.ToBool(c.BlockPublicPolicy) || !aws.ToBool(c.IgnorePublicAcls) || !aws.ToBool(c.RestrictPublicBuckets) {
		t.Errorf("public access block: %+v", c)
	}
	tg, err := s3c.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	bt := map[string]string{}
	for _, x := range tg.TagSet {
		bt[aws.ToString(x.Key)] = aws.ToString(x.Value)
	}
	if bt[ec2.TagCluster] != "pub" || bt[ec2.TagManagedBy] != "clusterctl" {
		t.Errorf("bucket tags %v", bt)
	}

	// Publishing the same binary again uploads nothing and reuses the bucket.
	before := f.p.Calls()["S3:PutObject"]
	if _, sum2, err := f.p.PublishAgent(ctx, "pub", bin); err != nil || sum2 != sum {
		t.Fatalf("second publish: %v", err)
	}
	if n := f.p.Calls()["S3:PutObject"]; n != before {
		t.Errorf("second publish uploaded again (%d PutObject calls, was %d)", n, before)
	}
	if b2, _ := s3c.ListBuckets(ctx, &s3.ListBucketsInput{}); len(b2.Buckets) != 1 {
		t.Errorf("second publish made another bucket: %d", len(b2.Buckets))
	}

	// A node, so there is a security group; then down --all's clean-up.
	inst, err := f.p.Create(ctx, spec(t, "pub", "n1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.p.Delete(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.p.CleanupCluster(ctx, "pub"); err != nil {
		t.Fatal(err)
	}
	if b3, _ := s3c.ListBuckets(ctx, &s3.ListBucketsInput{}); len(b3.Buckets) != 0 {
		t.Errorf("after clean-up: %d buckets left", len(b3.Buckets))
	}
	groups, err := ec2Client(t, srv.URL).DescribeSecurityGroups(ctx, &awsec2.DescribeSecurityGroupsInput{Filters: []types.Filter{{Name: aws.String("tag:" + ec2.TagCluster), Values: []string{"pub"}}}})
	if err != nil || len(groups.SecurityGroups) != 0 {
		t.Errorf("after clean-up: groups %v %+v", err, groups)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "ec2.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ec2.json left after clean-up: %v", err)
	}
	// Cleaning up twice is fine.
	if err := f.p.CleanupCluster(ctx, "pub"); err != nil {
		t.Errorf("second clean-up: %v", err)
	}
}

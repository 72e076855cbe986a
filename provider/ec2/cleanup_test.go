package ec2_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/ec2"
)

// agentFile writes a random agent binary and returns its path, content
// and SHA-256.
func agentFile(t *testing.T, size int) (string, []byte, string) {
	t.Helper()
	content := make([]byte, size)
	_, _ = rand.Read(content)
	bin := filepath.Join(t.TempDir(), "clusterctl-agent")
	if err := os.WriteFile(bin, content, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	return bin, content, hex.EncodeToString(sum[:])
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func bucketNames(t *testing.T, endpoint string) []string {
	t.Helper()
	out, err := s3Client(t, endpoint).ListBuckets(context.Background(), &s3.ListBucketsInput{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range out.Buckets {
		names = append(names, aws.ToString(b.Name))
	}
	return names
}

// TestAgentURLMakesNothing: AgentURL only chooses the bucket (recorded in
// ec2.json before anything exists) and signs a URL; UploadAgent then makes
// that very URL serve the binary.
func TestAgentURLMakesNothing(t *testing.T) {
	srv := moto(t)
	ctx := context.Background()
	f := newProvider(t, srv.URL, "plan", "")
	bin, content, sum := agentFile(t, 200_000)

	url, err := f.p.AgentURL(ctx, "plan", sum)
	if err != nil {
		t.Fatal(err)
	}
	if b := bucketNames(t, srv.URL); len(b) != 0 {
		t.Fatalf("AgentURL made buckets %v", b)
	}
	for k, n := range f.p.Calls() {
		if strings.HasPrefix(k, "S3:") {
			t.Errorf("AgentURL called %s %d times", k, n)
		}
	}
	raw, err := os.ReadFile(filepath.Join(f.dir, "ec2.json"))
	if err != nil {
		t.Fatalf("AgentURL recorded no bucket name: %v", err)
	}
	var rec struct {
		Bucket      string `json:"bucket"`
		BucketOwned bool   `json:"bucket_owned"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil || rec.Bucket == "" || !rec.BucketOwned {
		t.Fatalf("ec2.json %s: %v", raw, err)
	}
	if !strings.Contains(url, rec.Bucket) || !strings.Contains(url, sum) || !strings.Contains(url, "X-Amz-Signature=") {
		t.Errorf("URL %s is not a presigned URL of the recorded bucket %q and the agent's hash", url, rec.Bucket)
	}
	if code, _ := get(t, url); code == http.StatusOK {
		t.Fatal("the URL serves something before UploadAgent")
	}
	entries, _ := os.ReadDir(f.dir)
	if len(entries) != 1 {
		t.Errorf("state directory holds %v, want only ec2.json (no temporary file)", entries)
	}

	// Another process (a new provider on the same state) gets the same bucket.
	again, err := ec2.New(provider.Env{Cluster: "plan", Dir: f.dir, Config: yamlNode(t, "region: "+testRegion+"\nendpoint_url: "+srv.URL+"\nami: ami-0123456789abcdef0\n")}, staticCreds())
	if err != nil {
		t.Fatal(err)
	}
	url2, err := again.AgentURL(ctx, "plan", sum)
	if err != nil || !strings.Contains(url2, rec.Bucket) {
		t.Errorf("AgentURL of a second provider: %v %s, want bucket %q", err, url2, rec.Bucket)
	}

	// A binary that is not the one planned is refused.
	other, _, _ := agentFile(t, 1000)
	if err := f.p.UploadAgent(ctx, "plan", other, sum); err == nil || !strings.Contains(err.Error(), "changed after up planned") {
		t.Errorf("UploadAgent of another binary: %v", err)
	}

	if err := f.p.UploadAgent(ctx, "plan", bin, sum); err != nil {
		t.Fatal(err)
	}
	if code, got := get(t, url); code != http.StatusOK || !bytes.Equal(got, content) {
		t.Fatalf("after UploadAgent the URL answers %d with %d bytes, want the binary", code, len(got))
	}
	if b := bucketNames(t, srv.URL); len(b) != 1 || b[0] != rec.Bucket {
		t.Errorf("buckets %v, want just %q", b, rec.Bucket)
	}
	puts := f.p.Calls()["S3:PutObject"]
	if err := f.p.UploadAgent(ctx, "plan", bin, sum); err != nil {
		t.Fatal(err)
	}
	if n := f.p.Calls()["S3:PutObject"]; n != puts {
		t.Errorf("a second UploadAgent uploaded again (%d PutObject, was %d)", n, puts)
	}
}

func groupsOf(t *testing.T, endpoint, cluster string) []types.SecurityGroup {
	t.Helper()
	out, err := ec2Client(t, endpoint).DescribeSecurityGroups(context.Background(), &awsec2.DescribeSecurityGroupsInput{
		Filters: []types.Filter{{Name: aws.String("tag:" + ec2.TagCluster), Values: []string{cluster}}}})
	if err != nil {
		t.Fatal(err)
	}
	return out.SecurityGroups
}

// TestCleanupWithoutState: a cluster whose state and ec2.json are lost
// still owns instances, a security group and a bucket at AWS. A provider
// with an empty state directory lists the instances (strays), names
// everything, and down --all's clean-up removes all of it, and nothing of
// another cluster.
func TestCleanupWithoutState(t *testing.T) {
	srv := moto(t)
	ctx := context.Background()
	old := newProvider(t, srv.URL, "lost", "")
	bin, _, _ := agentFile(t, 1000)
	if _, _, err := old.p.PublishAgent(ctx, "lost", bin); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, n := range []string{"a", "b"} {
		inst, err := old.p.Create(ctx, spec(t, "lost", n))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, inst.ID)
	}
	// Another cluster, which must stay.
	keep := newProvider(t, srv.URL, "keep", "")
	if _, _, err := keep.p.PublishAgent(ctx, "keep", bin); err != nil {
		t.Fatal(err)
	}
	kept, err := keep.p.Create(ctx, spec(t, "keep", "k"))
	if err != nil {
		t.Fatal(err)
	}
	buckets := bucketNames(t, srv.URL)

	fresh := newProvider(t, srv.URL, "lost", "") // empty state directory
	list, err := fresh.p.List(ctx, "lost")
	if err != nil || len(list) != 2 {
		t.Fatalf("List without state: %v %+v, want the 2 instances", err, list)
	}
	names, err := fresh.p.ClusterResources(ctx, "lost")
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(names, "\n")
	for _, want := range append(ids, "security group ", "bucket clusterctl-lost-") {
		if !strings.Contains(all, want) {
			t.Errorf("ClusterResources does not name %q:\n%s", want, all)
		}
	}
	if len(names) != 4 {
		t.Errorf("ClusterResources names %d things, want 4 (2 instances, group, bucket):\n%s", len(names), all)
	}
	if strings.Contains(all, kept.ID) || strings.Contains(all, "clusterctl-keep") {
		t.Errorf("ClusterResources names another cluster's resources:\n%s", all)
	}

	if err := fresh.p.CleanupCluster(ctx, "lost"); err != nil {
		t.Fatal(err)
	}
	c := ec2Client(t, srv.URL)
	for _, id := range ids {
		if st := describeOne(t, c, id).State.Name; st != types.InstanceStateNameTerminated {
			t.Errorf("stray %s is %q after clean-up", id, st)
		}
	}
	if g := groupsOf(t, srv.URL, "lost"); len(g) != 0 {
		t.Errorf("after clean-up %d security groups of the cluster are left", len(g))
	}
	after := bucketNames(t, srv.URL)
	if len(after) != 1 || len(buckets) != 2 || !strings.HasPrefix(after[0], "clusterctl-keep-") {
		t.Errorf("buckets before %v, after %v: want only the other cluster's left", buckets, after)
	}
	if st := describeOne(t, c, kept.ID).State.Name; st != types.InstanceStateNameRunning {
		t.Errorf("the other cluster's instance is %q", st)
	}
	if g := groupsOf(t, srv.URL, "keep"); len(g) != 1 {
		t.Errorf("the other cluster has %d security groups, want 1", len(g))
	}
	if names, err := fresh.p.ClusterResources(ctx, "lost"); err != nil || len(names) != 0 {
		t.Errorf("after clean-up ClusterResources: %v %v, want nothing", err, names)
	}
	if err := fresh.p.CleanupCluster(ctx, "lost"); err != nil {
		t.Errorf("second clean-up: %v", err)
	}
}

//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/clusterctl/clusterctl/cloudinit"
	"github.com/clusterctl/clusterctl/internal/guesttest"
	"github.com/clusterctl/clusterctl/provider/ec2"
	"github.com/clusterctl/clusterctl/provider/openstack/openstacktest"
)

// player is what every e2e harness that plays a cloud's instances shares:
// the instances it booted, each with its agent process (nil while booting
// or when its boot failed), and what went wrong while booting them, which
// the test reports at its checkpoints (checkFailures) rather than from the
// playing goroutine.
type player struct {
	t    *testing.T
	what string // "instance" or "server", for the failure lines

	mu       sync.Mutex
	booted   map[string]*exec.Cmd
	failures []string
}

func newPlayer(t *testing.T, what string) player {
	return player{t: t, what: what, booted: map[string]*exec.Cmd{}}
}

// fail notes a problem found while booting; checkFailures reports it.
func (p *player) fail(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures = append(p.failures, fmt.Sprintf(format, args...))
}

// checkFailures reports, on the test, every problem noted since the last call.
func (p *player) checkFailures() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.failures {
		p.t.Error(p.what + " harness: " + f)
	}
	p.failures = nil
}

// playEC2 asks moto every 300 ms for the instances of cluster ec2ClusterNm
// until ctx ends: it calls boot (which records the instance in booted) for
// each running instance it has not seen, and kills the agent of each
// instance moto has terminated (powered off; whoever started the agent
// reaps it).
func (p *player) playEC2(ctx context.Context, client *awsec2.Client, boot func(context.Context, types.Instance)) {
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		out, err := client.DescribeInstances(ctx, &awsec2.DescribeInstancesInput{Filters: []types.Filter{
			{Name: aws.String("tag:" + ec2.TagCluster), Values: []string{ec2ClusterNm}}}})
		if err == nil {
			for _, r := range out.Reservations {
				for _, in := range r.Instances {
					id := aws.ToString(in.InstanceId)
					p.mu.Lock()
					cmd, seen := p.booted[id]
					p.mu.Unlock()
					switch {
					case !seen && in.State.Name == types.InstanceStateNameRunning:
						boot(ctx, in)
					case seen && in.State.Name == types.InstanceStateNameTerminated && cmd != nil:
						_ = cmd.Process.Kill()
						p.mu.Lock()
						p.booted[id] = nil
						p.mu.Unlock()
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// playOpenStack asks cloud every 100 ms for its servers until ctx ends: it
// calls boot for each ACTIVE server with a fixed address that it has not
// booted, and records the agent boot returns (nil when the boot failed)
// unless boot says the server is not ready yet; and it kills the agent of
// each server the cloud no longer has (powered off; whoever started the
// agent reaps it).
func (p *player) playOpenStack(ctx context.Context, cloud *openstacktest.Cloud, boot func(openstacktest.Server) (cmd *exec.Cmd, ready bool)) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		live := map[string]bool{}
		for _, s := range cloud.Servers() {
			live[s.ID] = true
			p.mu.Lock()
			_, seen := p.booted[s.ID]
			p.mu.Unlock()
			if seen || s.Status != "ACTIVE" || s.FixedIP == "" {
				continue
			}
			if cmd, ready := boot(s); ready {
				p.mu.Lock()
				p.booted[s.ID] = cmd
				p.mu.Unlock()
			}
		}
		p.mu.Lock()
		for id, cmd := range p.booted {
			if !live[id] && cmd != nil {
				_ = cmd.Process.Kill()
				p.booted[id] = nil
			}
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// ec2UserData reads instance id's user-data as the instance would get it:
// through DescribeInstanceAttribute (which EC2 answers base64-encoded),
// decoded.
func ec2UserData(ctx context.Context, client *awsec2.Client, id string) ([]byte, error) {
	attr, err := client.DescribeInstanceAttribute(ctx, &awsec2.DescribeInstanceAttributeInput{InstanceId: aws.String(id), Attribute: types.InstanceAttributeNameUserData})
	if err != nil {
		return nil, fmt.Errorf("read user-data: %w", err)
	}
	if attr.UserData == nil {
		return nil, errors.New("DescribeInstanceAttribute returned no userData")
	}
	return ec2.DecodeUserData(aws.ToString(attr.UserData.Value))
}

// instanceFiles is what a played instance runs: the agent downloaded as its
// user-data says, and the agent config from its write_files with the
// node's paths moved into the instance's directory.
type instanceFiles struct {
	agent  string         // the agent binary
	config string         // the agent config to start it with
	cfg    map[string]any // that config, for the harness's own checks
}

// unpack does what cloud-init and the install script would do with a
// cloud-config user-data ud, into dir: it checks that ud is a cloud-config
// that holds no secret, reads write_files, downloads the agent with client
// exactly as the install command in runcmd says (source url, then the
// SHA-256, which it checks), and writes the agent config, /etc/hosts and
// the instance data (instance id id) that the agent reads. adjust, when not
// nil, sees the agent config before it is written: it may check it, or
// place the agent where the harness runs it.
func unpack(client *http.Client, ud []byte, dir, id string, adjust func(cfg map[string]any) error) (instanceFiles, error) {
	doc, err := guesttest.Parse(ud)
	if err != nil {
		return instanceFiles{}, err
	}
	if bad := noSecrets(ud); bad != "" {
		return instanceFiles{}, fmt.Errorf("user-data holds %s", bad)
	}
	kind, url, sum, err := doc.AgentInstall()
	if err != nil {
		return instanceFiles{}, err
	}
	if kind != "url" {
		return instanceFiles{}, fmt.Errorf("agent source %s, want url", kind)
	}
	resp, err := client.Get(url)
	if err != nil {
		return instanceFiles{}, fmt.Errorf("download agent: %w", err)
	}
	bin, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if h := sha256.Sum256(bin); resp.StatusCode != http.StatusOK || hex.EncodeToString(h[:]) != sum {
		return instanceFiles{}, fmt.Errorf("agent download %s: %d bytes, sha256 %x, want %s", resp.Status, len(bin), h, sum)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return instanceFiles{}, err
	}
	out := instanceFiles{agent: filepath.Join(dir, "clusterctl-agent"), config: filepath.Join(dir, "agent.json")}
	if err := os.WriteFile(out.agent, bin, 0o755); err != nil {
		return instanceFiles{}, err
	}
	agentJSON, _ := doc.File(cloudinit.AgentConfigPath)
	if err := json.Unmarshal([]byte(agentJSON), &out.cfg); err != nil {
		return instanceFiles{}, fmt.Errorf("agent.json from write_files: %w", err)
	}
	if _, ok := out.cfg["api"].(map[string]any); !ok {
		return instanceFiles{}, errors.New("the agent config serves no API (no api section): the CLI could not reach the agent")
	}
	hosts, _ := doc.File(cloudinit.HostsPath)
	if hosts == "" {
		hosts = "127.0.0.1 localhost\n"
	}
	hostsFile, instanceData := filepath.Join(dir, "hosts"), filepath.Join(dir, "instance-data.json")
	out.cfg["hosts_file"], out.cfg["instance_data_path"], out.cfg["state_dir"] = hostsFile, instanceData, filepath.Join(dir, "state")
	if adjust != nil {
		if err := adjust(out.cfg); err != nil {
			return instanceFiles{}, fmt.Errorf("agent.json: %w", err)
		}
	}
	b, _ := json.Marshal(out.cfg)
	for path, content := range map[string]string{
		hostsFile:    hosts,
		instanceData: fmt.Sprintf(`{"v1":{"instance_id":%q}}`, id),
		out.config:   string(b),
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return instanceFiles{}, err
		}
	}
	return out, nil
}

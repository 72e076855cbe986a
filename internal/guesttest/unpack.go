package guesttest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/clusterctl/clusterctl/cloudinit"
)

// Files is what an unpacked guest runs: the agent downloaded as its
// user-data says, and the agent config from its write_files with the
// node's paths moved into the guest's directory.
type Files struct {
	Agent  string         // the agent binary
	Config string         // the agent config to start it with
	Cfg    map[string]any // that config, for the harness's own checks
}

// Unpack does what cloud-init and the install script would do with a
// cloud-config user-data ud, into dir: it checks that ud is a cloud-config
// that holds no secret, reads write_files, downloads the agent with client
// exactly as the install command in runcmd says (source url, then the
// SHA-256, which it checks), and writes the agent config, /etc/hosts and
// the instance data (instance id id) that the agent reads. adjust, when not
// nil, sees the agent config before it is written: it may check it, or
// place the agent where the harness runs it.
func Unpack(client *http.Client, ud []byte, dir, id string, adjust func(cfg map[string]any) error) (Files, error) {
	doc, err := Parse(ud)
	if err != nil {
		return Files{}, err
	}
	if bad := Secrets(ud); bad != "" {
		return Files{}, fmt.Errorf("user-data holds %s", bad)
	}
	if cfg, err := doc.AgentConfig(); err != nil {
		return Files{}, err
	} else if !cfg.API.Enabled() {
		return Files{}, errNoAPI
	}
	kind, url, sum, err := doc.AgentInstall()
	if err != nil {
		return Files{}, err
	}
	if kind != "url" {
		return Files{}, fmt.Errorf("agent source %s, want url", kind)
	}
	resp, err := client.Get(url)
	if err != nil {
		return Files{}, fmt.Errorf("download agent: %w", err)
	}
	bin, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if h := sha256.Sum256(bin); resp.StatusCode != http.StatusOK || hex.EncodeToString(h[:]) != sum {
		return Files{}, fmt.Errorf("agent download %s: %d bytes, sha256 %x, want %s", resp.Status, len(bin), h, sum)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, err
	}
	out := Files{Agent: filepath.Join(dir, "clusterctl-agent"), Config: filepath.Join(dir, "agent.json")}
	if err := os.WriteFile(out.Agent, bin, 0o755); err != nil {
		return Files{}, err
	}
	agentJSON, _ := doc.File(cloudinit.AgentConfigPath)
	if err := json.Unmarshal([]byte(agentJSON), &out.Cfg); err != nil {
		return Files{}, fmt.Errorf("agent.json from write_files: %w", err)
	}
	hostsFile, instanceData := filepath.Join(dir, "hosts"), filepath.Join(dir, "instance-data.json")
	out.Cfg["hosts_file"], out.Cfg["instance_data_path"], out.Cfg["state_dir"] = hostsFile, instanceData, filepath.Join(dir, "state")
	if adjust != nil {
		if err := adjust(out.Cfg); err != nil {
			return Files{}, fmt.Errorf("agent.json: %w", err)
		}
	}
	b, _ := json.Marshal(out.Cfg)
	for path, content := range map[string]string{
		hostsFile:    doc.Hosts(),
		instanceData: fmt.Sprintf(`{"v1":{"instance_id":%q}}`, id),
		out.Config:   string(b),
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return Files{}, err
		}
	}
	return out, nil
}

// Secrets says what long-lived secret user-data holds, if any: a private
// key block, or an agent config with a gossip key, a TLS key, an identity
// key or grant (a node gets those only when it enrols). It returns "" when
// there is none, as the read of user-data through the cloud's API (EC2's
// DescribeInstanceAttribute, Nova's user_data) must find.
func Secrets(ud []byte) string {
	if bytes.Contains(ud, []byte("PRIVATE KEY")) {
		return "a PRIVATE KEY block"
	}
	doc, err := Parse(ud)
	if err != nil {
		return fmt.Sprintf("unreadable user-data (%v)", err)
	}
	if text, ok := doc.File(cloudinit.AgentConfigPath); ok {
		var c struct {
			Key []byte `json:"key"`
			API struct {
				Cert string `json:"cert"`
				Key  string `json:"key"`
			} `json:"api"`
			Identity struct {
				Key   string `json:"key"`
				Grant []byte `json:"grant"`
			} `json:"identity"`
			Enrol *struct {
				Token []byte `json:"token"`
			} `json:"enrol"`
		}
		if err := json.Unmarshal([]byte(text), &c); err != nil {
			return fmt.Sprintf("unreadable agent config (%v)", err)
		}
		switch {
		case len(c.Key) > 0:
			return "the gossip key"
		case c.API.Key != "" || c.API.Cert != "":
			return "a TLS key or certificate"
		case c.Identity.Key != "" || len(c.Identity.Grant) > 0:
			return "an identity key or grant"
		case c.Enrol == nil || len(c.Enrol.Token) == 0:
			return "no bootstrap token (and so no way to enrol)"
		}
		return ""
	}
	return "no agent config"
}

package cloudinit

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/internal/testkit"
	"github.com/clusterctl/clusterctl/templates"
)

// unitSettings returns the KEY=VALUE lines of a systemd unit, every value
// of a key in order (comments and section headers skipped).
func unitSettings(unit string) map[string][]string {
	out := map[string][]string{}
	for _, line := range strings.Split(unit, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			out[k] = append(out[k], v)
		}
	}
	return out
}

// TestAgentUnitMatchesPaths: the unit, the install script and the paths
// the user-data and the agent's config use name the same user, group,
// binary, config and hosts directory.
func TestAgentUnitMatchesPaths(t *testing.T) {
	set := unitSettings(templates.AgentUnit())
	one := func(key, want string) {
		t.Helper()
		if got := set[key]; len(got) != 1 || got[0] != want {
			t.Errorf("unit: %s=%q, want exactly %q", key, got, want)
		}
	}
	one("User", "clusterctl-agent")
	one("Group", "clusterctl")
	one("ExecStart", AgentBinaryPath+" --config %d/agent.json")
	one("LoadCredential", "agent.json:"+AgentConfigPath)
	one("StateDirectory", "clusterctl-agent")
	one("StateDirectoryMode", "0700")
	one("ReadWritePaths", filepath.Dir(AgentHostsPath))
	one("RuntimeDirectory", "clusterctl") // agent.DefaultRunDir, /run/clusterctl: members.json, self.json, agent.sock
	one("CapabilityBoundingSet", "")
	one("AmbientCapabilities", "")
	one("NoNewPrivileges", "yes")
	one("ProtectSystem", "strict")
	script := templates.InstallAgent()
	for _, want := range []string{
		"dst=" + AgentBinaryPath + "\n",
		"user=clusterctl-agent\n",
		"group=clusterctl\n",
		"hostsdir=" + filepath.Dir(AgentHostsPath) + "\n",
		"hosts=$hostsdir/" + filepath.Base(AgentHostsPath) + "\n",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("install-agent.sh lacks %q", want)
		}
	}
}

// securityScore matches systemd-analyze security's summary line.
var securityScore = regexp.MustCompile(`Overall exposure level for clusterctl-agent\.service: ([0-9]+\.[0-9]+)`)

// TestAgentUnitSecurityScore runs systemd-analyze security on the unit
// file (offline: no systemd needed, only the tool) and wants an exposure of
// 2.0 or less. The QEMU e2e measures the installed unit in a guest too.
func TestAgentUnitSecurityScore(t *testing.T) {
	analyze := testkit.Tool(t, "systemd-analyze")
	unit := filepath.Join(t.TempDir(), "clusterctl-agent.service")
	if err := os.WriteFile(unit, []byte(templates.AgentUnit()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager", unit).CombinedOutput()
	m := securityScore.FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security printed no exposure level (%v):\n%s", err, out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security --offline=yes: exposure %.1f", score)
	if score > 2.0 {
		t.Errorf("exposure %.1f, want 2.0 or less:\n%s", score, out)
	}
}

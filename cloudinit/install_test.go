package cloudinit

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/internal/testkit"
)

// installArgv renders in and returns the first runcmd entry (the agent
// install command) as cloud-init would run it.
func installArgv(t *testing.T, in Input) []string {
	t.Helper()
	r, err := Render(in)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	var doc struct {
		Runcmd []any `yaml:"runcmd"`
	}
	if err := yaml.Unmarshal(r.UserData, &doc); err != nil {
		t.Fatal(err)
	}
	first, ok := doc.Runcmd[0].([]any)
	if !ok {
		t.Fatalf("runcmd[0] is %T, want an argv list", doc.Runcmd[0])
	}
	argv := make([]string, len(first))
	for i, a := range first {
		argv[i] = a.(string)
	}
	if argv[0] != "sh" {
		t.Fatalf("install command %q does not start with sh", argv[:2])
	}
	return argv
}

// shim writes an executable /bin/sh script called name into dir.
func shim(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// runInstall runs the install command under dash with PATH holding only
// shims and a few harmless tools, so the script cannot change this machine:
// a command without a shim fails as not found. Every shim logs its call in
// dir/calls. The install shim copies the agent binary's source to
// dir/installed; getent knows the names in $GETENT_KNOWN ("group:NAME" or
// "passwd:NAME"); readlink prints $READLINK (fails when it is empty); the
// rm shim removes only the script's own temporary download.
func runInstall(t *testing.T, argv []string, dir string, env ...string) (string, error) {
	t.Helper()
	dash := testkit.Tool(t, "dash")
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"mktemp", "sha256sum"} {
		if err := os.Symlink(testkit.Tool(t, tool), filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	cp := testkit.Tool(t, "cp")
	log := filepath.Join(dir, "calls")
	shim(t, bin, "curl", `echo "curl $*" >>"$CALLS"; while [ $# -gt 1 ]; do [ "$1" = -o ] && out=$2; shift; done; `+cp+` "$SOURCE" "$out"`+"\n")
	// Only logged: the test must not touch /run, /etc or the users.
	for _, name := range []string{"mkdir", "mount", "umount", "groupadd", "useradd", "ln", "mv"} {
		shim(t, bin, name, `echo "`+name+` $*" >>"$CALLS"`+"\n")
	}
	shim(t, bin, "getent", `echo "getent $*" >>"$CALLS"
for k in $GETENT_KNOWN; do [ "$k" = "$1:$2" ] && exit 0; done
exit 2
`)
	shim(t, bin, "readlink", `echo "readlink $*" >>"$CALLS"; [ -n "$READLINK" ] && echo "$READLINK"`+"\n")
	shim(t, bin, "rm", `echo "rm $*" >>"$CALLS"; case "$2" in /tmp/clusterctl-agent.*) `+testkit.Tool(t, "rm")+` -f "$2" ;; esac`+"\n")
	// Only the agent binary is "installed"; the seed's mount point is not
	// really mounted, so installing from it copies the test's source file.
	shim(t, bin, "install", `echo "install $*" >>"$CALLS"
eval "last=\${$#}"
[ "$last" = /usr/local/bin/clusterctl-agent ] || exit 0
case "$3" in
/run/clusterctl-seed/agent) `+cp+` "$SOURCE" "$INSTALLED" ;;
*) `+cp+` "$3" "$INSTALLED" ;;
esac
`)
	cmd := exec.Command(dash, argv[1:]...)
	cmd.Env = append([]string{
		"PATH=" + bin,
		"CALLS=" + log,
		"SOURCE=" + filepath.Join(dir, "source"),
		"INSTALLED=" + filepath.Join(dir, "installed"),
		"GETENT_KNOWN=", "READLINK=",
	}, env...)
	out, err := cmd.CombinedOutput()
	calls, _ := os.ReadFile(log)
	return string(out) + "\n--- calls\n" + string(calls), err
}

// setupCalls are the calls that set up the agent's user and hosts file on a
// fresh node, in order.
var setupCalls = []string{
	"groupadd --system clusterctl",
	"useradd --system --gid clusterctl --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --comment clusterctl agent clusterctl-agent",
	"install -d -m 0755 -o clusterctl-agent -g clusterctl /var/lib/clusterctl-agent-hosts",
	"install -m 0644 -o clusterctl-agent -g clusterctl /etc/hosts " + AgentHostsPath,
	"ln -sfn " + AgentHostsPath + " /etc/.hosts.clusterctl-agent",
	"mv -fT /etc/.hosts.clusterctl-agent /etc/hosts",
}

// checkInOrder fails unless out holds each of want, in that order.
func checkInOrder(t *testing.T, out string, want []string) {
	t.Helper()
	rest := out
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Errorf("calls lack %q (after the ones before it):\n%s", w, out)
			return
		}
		rest = rest[i+len(w):]
	}
}

func TestInstallAgentURL(t *testing.T) {
	binary := []byte("\x7fELF pretend agent")
	sum := sha256.Sum256(binary)
	tests := []struct {
		name      string
		sha       string
		wantOK    bool
		wantInOut string
	}{
		{"checksum matches", hex.EncodeToString(sum[:]), true, "installed /usr/local/bin/clusterctl-agent"},
		{"checksum matches, upper case", strings.ToUpper(hex.EncodeToString(sum[:])), true, "installed"},
		{"checksum differs", strings.Repeat("0", 64), false, "clusterctl-agent-install: SHA256 of https://downloads.example.com/agent is not 0000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := cloudInput()
			in.Agent = AgentSource{Kind: AgentURL, URL: "https://downloads.example.com/agent", SHA256: tt.sha}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "source"), binary, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := runInstall(t, installArgv(t, in), dir)
			if (err == nil) != tt.wantOK {
				t.Fatalf("install exit error = %v, want success %v\n%s", err, tt.wantOK, out)
			}
			if !strings.Contains(out, tt.wantInOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantInOut, out)
			}
			got, rerr := os.ReadFile(filepath.Join(dir, "installed"))
			if tt.wantOK && string(got) != string(binary) {
				t.Errorf("installed %q (%v), want the downloaded binary", got, rerr)
			}
			if !tt.wantOK && rerr == nil {
				t.Errorf("a binary was installed although its checksum did not match\n%s", out)
			}
			if tt.wantOK {
				checkInOrder(t, out, setupCalls)
			} else if strings.Contains(out, "useradd") || strings.Contains(out, "ln ") {
				t.Errorf("the node was set up although the agent was not installed:\n%s", out)
			}
		})
	}
}

func TestInstallAgentSeed(t *testing.T) {
	dir := t.TempDir()
	binary := []byte("\x7fELF agent from the seed")
	if err := os.WriteFile(filepath.Join(dir, "source"), binary, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runInstall(t, installArgv(t, sampleInput()), dir)
	if err != nil {
		t.Fatalf("install failed: %v\n%s", err, out)
	}
	checkInOrder(t, out, append([]string{
		"mkdir -p /run/clusterctl-seed",
		"mount -o ro LABEL=cidata /run/clusterctl-seed",
		"install -m 0755 /run/clusterctl-seed/agent /usr/local/bin/clusterctl-agent",
		"umount /run/clusterctl-seed",
	}, setupCalls...))
	if got, _ := os.ReadFile(filepath.Join(dir, "installed")); string(got) != string(binary) {
		t.Errorf("installed %q, want the seed's agent", got)
	}
}

// TestInstallAgentSetupAgain: on a node that already has the user, the group
// and the link (an image made from such a node), the script creates no user
// and does not overwrite the agent's hosts file.
func TestInstallAgentSetupAgain(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "source"), []byte("agent"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runInstall(t, installArgv(t, sampleInput()), dir,
		"GETENT_KNOWN=group:clusterctl passwd:clusterctl-agent", "READLINK="+AgentHostsPath)
	if err != nil {
		t.Fatalf("install failed: %v\n%s", err, out)
	}
	checkInOrder(t, out, []string{"getent group clusterctl", "getent passwd clusterctl-agent", setupCalls[2], "readlink /etc/hosts"})
	for _, call := range []string{"groupadd", "useradd", setupCalls[3], "ln ", "mv "} {
		if strings.Contains(out, call) {
			t.Errorf("the script ran %q although that was done:\n%s", call, out)
		}
	}
}

// TestInstallAgentPreinstalledMissing: with agent.source preinstalled and
// no binary in the image, the script fails saying so and sets up nothing.
func TestInstallAgentPreinstalledMissing(t *testing.T) {
	if _, err := os.Stat(AgentBinaryPath); err == nil {
		t.Skipf("this machine has %s", AgentBinaryPath)
	}
	in := cloudInput()
	in.Agent = AgentSource{Kind: AgentPreinstalled}
	out, err := runInstall(t, installArgv(t, in), t.TempDir())
	if err == nil {
		t.Fatalf("install succeeded without a binary:\n%s", out)
	}
	if !strings.Contains(out, "clusterctl-agent-install: agent.source is preinstalled but the image has no executable /usr/local/bin/clusterctl-agent") {
		t.Errorf("output does not say the binary is missing:\n%s", out)
	}
	if strings.Contains(out, "getent") || strings.Contains(out, "install ") {
		t.Errorf("the node was set up although the agent is missing:\n%s", out)
	}
}

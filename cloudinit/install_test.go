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

// runInstall runs the install command under dash with shims for curl,
// mkdir, mount, umount and install first on PATH. The install shim copies its
// source to dir/installed; calls are logged in dir/calls.
func runInstall(t *testing.T, argv []string, dir string) (string, error) {
	t.Helper()
	dash := requireTool(t, "dash")
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "calls")
	shim(t, bin, "curl", `echo "curl $*" >>"$CALLS"; while [ $# -gt 1 ]; do [ "$1" = -o ] && out=$2; shift; done; cp "$SOURCE" "$out"`+"\n")
	// mkdir, mount and umount only log: the test must not touch /run.
	for _, name := range []string{"mkdir", "mount", "umount"} {
		shim(t, bin, name, `echo "`+name+` $*" >>"$CALLS"`+"\n")
	}
	// The seed's mount point is not really mounted: "installing" from it
	// copies the test's source file instead.
	shim(t, bin, "install", `echo "install $*" >>"$CALLS"
case "$3" in
/run/clusterctl-seed/agent) cp "$SOURCE" "$INSTALLED" ;;
*) cp "$3" "$INSTALLED" ;;
esac
`)
	cmd := exec.Command(dash, argv[1:]...)
	cmd.Env = append(os.Environ(),
		"PATH="+bin+":"+os.Getenv("PATH"),
		"CALLS="+log,
		"SOURCE="+filepath.Join(dir, "source"),
		"INSTALLED="+filepath.Join(dir, "installed"),
	)
	out, err := cmd.CombinedOutput()
	calls, _ := os.ReadFile(log)
	return string(out) + "\n--- calls\n" + string(calls), err
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
	for _, want := range []string{
		"mkdir -p /run/clusterctl-seed",
		"mount -o ro LABEL=cidata /run/clusterctl-seed",
		"install -m 0755 /run/clusterctl-seed/agent /usr/local/bin/clusterctl-agent",
		"umount /run/clusterctl-seed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("calls lack %q:\n%s", want, out)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "installed")); string(got) != string(binary) {
		t.Errorf("installed %q, want the seed's agent", got)
	}
}

package cloudinit

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/internal/testkit"
)

// cloudInitSchema runs "cloud-init schema -c" on userData and returns its
// combined output and whether it accepted the file.
func cloudInitSchema(t *testing.T, userData []byte) (string, bool) {
	t.Helper()
	bin := testkit.Tool(t, "cloud-init")
	path := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(path, userData, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "schema", "-c", path).CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("running cloud-init schema: %v", err)
		}
	}
	ok := err == nil && strings.Contains(string(out), "Valid cloud-config")
	return string(out), ok
}

const schemaExtra = `#cloud-config
packages: [jq, curl]
package_update: true
timezone: Europe/Berlin
ssh_pwauth: false
runcmd:
  - echo extra runcmd
bootcmd:
  - [sh, -c, "echo booting"]
write_files:
  - path: /etc/motd
    permissions: '0644'
    content: |
      welcome to the cluster
users:
  - default
  - name: ops
    groups: [sudo]
    shell: /bin/sh
    ssh_authorized_keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDemoKeyDemoKeyDemoKeyDemoKeyDemoKey ops@example
`

func TestCloudInitSchema(t *testing.T) {
	withExtra := sampleInput()
	withExtra.Extra = []byte(schemaExtra)
	preinstalled := cloudInput()
	preinstalled.Agent = AgentSource{Kind: AgentPreinstalled}
	tests := []struct {
		name string
		in   Input
	}{
		{"local", sampleInput()},
		{"cloud", cloudInput()},
		{"preinstalled", preinstalled},
		{"with extra", withExtra},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Render(tt.in)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if out, ok := cloudInitSchema(t, r.UserData); !ok {
				t.Errorf("cloud-init schema rejected the user-data:\n%s\n--- user-data\n%s", out, r.UserData)
			}
		})
	}
}

// TestCloudInitSchemaCatchesErrors makes sure the schema check above can
// fail: an unquoted octal permission is a schema error in cloud-init.
func TestCloudInitSchemaCatchesErrors(t *testing.T) {
	bad := "#cloud-config\nwrite_files:\n  - path: /x\n    permissions: 0644\n    content: x\n"
	if out, ok := cloudInitSchema(t, []byte(bad)); ok {
		t.Fatalf("cloud-init schema accepted an invalid file:\n%s", out)
	}
}

// networkdScript feeds network-config to cloud-init's own v2 parser and
// systemd-networkd renderer (the combination Debian 12 images use) and
// prints the rendered files as JSON.
const networkdScript = `
import json, os, sys, tempfile, yaml
from cloudinit.net.network_state import parse_net_config_data
from cloudinit.net import networkd
ns = parse_net_config_data(yaml.safe_load(open(sys.argv[1])))
d = tempfile.mkdtemp()
networkd.Renderer({}).render_network_state(ns, target=d)
out = {}
for root, _, files in os.walk(d):
    for f in files:
        out[f] = open(os.path.join(root, f)).read()
print(json.dumps(out))
`

// cloudInitPython returns the interpreter named on cloud-init's #! line, the
// one that can import cloud-init's modules.
func cloudInitPython(t *testing.T) string {
	t.Helper()
	f, err := os.Open(testkit.Tool(t, "cloud-init"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	if !strings.HasPrefix(line, "#!") {
		t.Fatalf("cloud-init is not a script (first line %q)", line)
	}
	fields := strings.Fields(strings.TrimPrefix(line, "#!"))
	if len(fields) == 0 {
		t.Fatalf("cloud-init has an empty #! line")
	}
	return fields[0]
}

// TestNetworkConfigWithCloudInit checks network-config with cloud-init
// itself. cloud-init 22.4's "schema" command has no --schema-type option
// (it validates cloud-config only), so instead the file goes through
// cloud-init's network-config v2 parser and its systemd-networkd renderer,
// and the test checks the .network file it would write.
func TestNetworkConfigWithCloudInit(t *testing.T) {
	python := cloudInitPython(t)
	in := sampleInput()
	in.OutboundMAC = "52:54:00:bb:00:0b" // a NAT NIC (VirtualBox's NIC1) gets DHCP
	r, err := Render(in)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	path := filepath.Join(t.TempDir(), "network-config")
	if err := os.WriteFile(path, r.NetworkConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python, "-c", networkdScript, path).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("cloud-init's renderer failed: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var files map[string]string
	if err := json.Unmarshal(out, &files); err != nil {
		t.Fatalf("renderer output %q: %v", out, err)
	}
	unit, ok := files["10-cloud-init-cluster0.network"]
	if !ok {
		t.Fatalf("no .network file for cluster0; got files %v", files)
	}
	for _, want := range []string{"MACAddress=52:54:00:aa:00:0a", "Name=cluster0", "Address=192.168.56.10/24"} {
		if !strings.Contains(unit, want) {
			t.Errorf(".network file lacks %q:\n%s", want, unit)
		}
	}
	nat, ok := files["10-cloud-init-nat0.network"]
	if !ok {
		t.Fatalf("no .network file for the outbound NIC nat0; got files %v", files)
	}
	for _, want := range []string{"MACAddress=52:54:00:bb:00:0b", "Name=nat0", "DHCP=ipv4"} {
		if !strings.Contains(nat, want) {
			t.Errorf("nat0 .network file lacks %q:\n%s", want, nat)
		}
	}
	if strings.Contains(unit, "DHCP=ipv4") || strings.Contains(unit, "DHCP=yes") {
		t.Errorf("the cluster NIC must keep its static address only:\n%s", unit)
	}
}

// TestPyYAMLReadsWhatWeWrote loads rendered user-data with PyYAML (the
// parser cloud-init uses, YAML 1.1) and checks that hostname, /etc/hosts
// and agent.json read back exactly: yaml.v3 writes the document, but
// cloud-init reads it.
func TestPyYAMLReadsWhatWeWrote(t *testing.T) {
	python := cloudInitPython(t)
	in := sampleInput()
	in.Name = "yes" // a YAML 1.1 boolean if it were written plain
	in.AgentConfig = []byte("{\r\n\t\"key\": \"\u0085 \u2028 \ufeff é 😀 # x: y\",  \"trailing\": \"sp \" }  \n")
	in.Extra = []byte("timezone: 'on'\nbootcmd: [\"a\\u0085b\"]\n")
	r := mustRender(t, in)
	path := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(path, r.UserData, 0o600); err != nil {
		t.Fatal(err)
	}
	const script = `
import json, sys, yaml
d = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
files = {f["path"]: f["content"] for f in d["write_files"]}
print(json.dumps({"hostname": d["hostname"], "hosts": files["/etc/hosts"], "hostkey": d.get("ssh_keys", {}).get("ed25519_private", ""), "authorized": d["ssh_authorized_keys"],
    "agent": files["/etc/clusterctl/agent.json"], "timezone": d["timezone"], "bootcmd": d["bootcmd"]}))
`
	out, err := exec.Command(python, "-c", script, path).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("PyYAML could not read the user-data: %v\n%s\n%s", err, ee.Stderr, r.UserData)
		}
		t.Fatal(err)
	}
	var got struct {
		Hostname, Hosts, Agent, Timezone, Hostkey string
		Bootcmd, Authorized                       []string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("python output %q: %v", out, err)
	}
	if got.Hostname != in.Name {
		t.Errorf("hostname read by PyYAML = %q, want %q", got.Hostname, in.Name)
	}
	if got.Hosts != hostsFile(in) {
		t.Errorf("/etc/hosts read by PyYAML = %q, want %q", got.Hosts, hostsFile(in))
	}
	if got.Agent != string(in.AgentConfig) {
		t.Errorf("agent.json read by PyYAML = %q, want %q", got.Agent, in.AgentConfig)
	}
	if got.Hostkey != "" || len(got.Authorized) != 1 || got.Authorized[0] != in.SSH.AuthorizedKeys[0] {
		t.Errorf("ssh keys read by PyYAML: host key %q (want none), authorized %q", got.Hostkey, got.Authorized)
	}
	if got.Timezone != "on" || len(got.Bootcmd) != 1 || got.Bootcmd[0] != "a\u0085b" {
		t.Errorf("extra values read by PyYAML: timezone %q, bootcmd %q", got.Timezone, got.Bootcmd)
	}
}

package cloudinit

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const testAgentConfig = `{"cluster":"demo","name":"red","bind":"192.168.56.10:7946","secret_key":"c2VjcmV0LWtleS0zMi1ieXRlcy1sb25nLWZvci10ZXN0"}`

// testSSH is a fixed login key for golden files (a test-only key, made
// once with ssh-keygen -t ed25519; nothing accepts it).
var testSSH = SSH{
	AuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOhHTPjHmhdhlCSEtiJajRIBS0IlxpZKnxQDT42Ku110 clusterctl/demo"},
}

// sampleInput is a representative node of a local (QEMU/VirtualBox) cluster.
func sampleInput() Input {
	return Input{
		Cluster:    "demo",
		Name:       "red",
		Domain:     "demo.cluster.internal",
		InstanceID: "demo-red-6f1c2a",
		Address:    netip.MustParsePrefix("192.168.56.10/24"),
		MAC:        "52:54:00:AA:00:0A",
		Peers: []Peer{
			{Name: "blue", Address: netip.MustParseAddr("192.168.56.11")},
			{Name: "green", Address: netip.MustParseAddr("192.168.56.12")},
		},
		AgentConfig: []byte(testAgentConfig),
		Agent:       AgentSource{Kind: AgentSeed},
		SSH:         &testSSH,
	}
}

// cloudInput is a node on a cloud: the provider assigns the address and the
// agent is downloaded.
func cloudInput() Input {
	in := sampleInput()
	in.Address, in.MAC = netip.Prefix{}, ""
	in.Agent = AgentSource{Kind: AgentURL, URL: "https://downloads.example.com/clusterctl-agent", SHA256: strings.Repeat("ab", 32)}
	return in
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cloudinit -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run with -update if the change is intended)\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		name string
		in   Input
	}{
		{"local", sampleInput()},
		{"cloud", cloudInput()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Render(tt.in)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			golden(t, tt.name+".user-data", r.UserData)
			golden(t, tt.name+".meta-data", r.MetaData)
			if tt.in.Address.IsValid() {
				golden(t, tt.name+".network-config", r.NetworkConfig)
			} else if r.NetworkConfig != nil {
				t.Errorf("network-config rendered without an address:\n%s", r.NetworkConfig)
			}
		})
	}
}

// Without SSH (ssh: false) the user-data leaves the image's SSH alone; with
// it, the host key and the login key are there and the private key is the
// only secret besides the agent config.
func TestRenderSSHKeys(t *testing.T) {
	off := sampleInput()
	off.SSH = nil
	r := mustRender(t, off)
	for _, key := range []string{"ssh_keys", "ssh_deletekeys", "ssh_genkeytypes", "ssh_authorized_keys"} {
		if bytes.Contains(r.UserData, []byte(key)) {
			t.Errorf("user-data without SSH sets %s:\n%s", key, r.UserData)
		}
	}
	bad := sampleInput()
	bad.SSH = &SSH{AuthorizedKeys: []string{"not a key"}}
	_, err := Render(bad)
	if err == nil {
		t.Fatal("Render accepted malformed SSH keys")
	}
	if !strings.Contains(err.Error(), "authorized key 0") {
		t.Errorf("error does not mention the authorized key: %v", err)
	}
}

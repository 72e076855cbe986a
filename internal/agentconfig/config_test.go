package agentconfig

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/internal/identity/identitytest"
)

var testKey = bytes.Repeat([]byte{0x5a}, 32)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// identityJSON is the "identity" member of an agent config for name and
// nonce of cluster, from the test CA.
func identityJSON(cluster, name, nonce string) string {
	id, err := NewIdentity(identitytest.CA(cluster), name, nonce)
	if err != nil {
		panic(err)
	}
	b, err := json.Marshal(id)
	if err != nil {
		panic(err)
	}
	return `"identity": ` + string(b)
}

func TestLoadConfigDefaults(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(testKey)
	instanceData := writeFile(t, "instance-data.json", `{"v1": {"instance_id": "i-0abc", "cloud_name": "nocloud"}}`)
	path := writeFile(t, "agent.json", fmt.Sprintf(`{
  "cluster": "lab", "name": "red", "nonce": "n-1", "provider": "qemu",
  "instance_data_path": %q,
  "tags": {"rack": "a"}, "key": %q,
  "advertise_cidr": "192.168.56.0/24",
  "seeds": ["192.168.56.10:7946", "blue.lab:7946"],
  "hosts_file": "/etc/hosts", "domain": "lab.internal", %s
}`, instanceData, key, identityJSON("lab", "red", "n-1")))
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.BindAddr != "0.0.0.0" || c.Port != 7946 {
		t.Errorf("defaults: bind %q port %d, want 0.0.0.0 7946", c.BindAddr, c.Port)
	}
	if c.InstanceID != "i-0abc" {
		t.Errorf("instance id %q, want it read from cloud-init's instance data", c.InstanceID)
	}
	if !bytes.Equal(c.Key, testKey) {
		t.Errorf("key not decoded from base64")
	}
	if c.Tags["rack"] != "a" || len(c.Seeds) != 2 {
		t.Errorf("tags/seeds: %v %v", c.Tags, c.Seeds)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	shortKey := base64.StdEncoding.EncodeToString(testKey[:5])
	secretKey := base64.StdEncoding.EncodeToString([]byte("SECRETSECRETSECRETSECRETSECRETSE")[:30])
	tests := []struct {
		name    string
		json    string
		want    []string // each must appear in the error
		wantNot []string
	}{
		{
			name: "everything wrong at once",
			json: `{"cluster": "", "name": "Red_1", "nonce": "", "provider": "", "instance_id": "x",
			        "key": "` + shortKey + `", "bind_addr": "any", "port": 70000,
			        "advertise_addr": "10.0.0.1", "advertise_cidr": "10.0.0.0/8",
			        "seeds": ["nohost", "h:0"], "hosts_file": "etc/hosts", "domain": "bad domain"}`,
			want: []string{
				"cluster: must be set",
				`name: "Red_1" is not an RFC 1123 label`,
				"nonce: must be set",
				"provider: must be set",
				"key: must be 16, 24 or 32 bytes, got 5",
				`bind_addr: "any"`,
				"port: 70000",
				"set only one",
				`seeds: "nohost": must be "host:port"`,
				`seeds: "h:0": port "0"`,
				`hosts_file: "etc/hosts" must be an absolute path`,
				`domain: "bad domain"`,
			},
		},
		{
			name: "no advertise address",
			json: `{"cluster": "c", "name": "a", "nonce": "n", "provider": "p", "instance_id": "x", "key": "` + base64.StdEncoding.EncodeToString(testKey) + `"}`,
			want: []string{"advertise_addr or advertise_cidr: one must be set"},
		},
		{
			name:    "wrong key length does not show the key",
			json:    `{"cluster": "c", "name": "a", "nonce": "n", "provider": "p", "instance_id": "x", "advertise_addr": "10.0.0.1", "key": "` + secretKey + `"}`,
			want:    []string{"key: must be 16, 24 or 32 bytes, got 30"},
			wantNot: []string{secretKey, "SECRET"},
		},
		{
			name: "key is not base64",
			json: `{"cluster": "c", "name": "a", "nonce": "n", "provider": "p", "instance_id": "x", "advertise_addr": "10.0.0.1", "key": "%%%notbase64"}`,
			want: []string{"illegal base64"}, wantNot: []string{"notbase64"},
		},
		{
			name: "unknown key",
			json: `{"cluster": "c", "name": "a", "nonce": "n", "provider": "p", "instance_id": "x", "advertise_addr": "10.0.0.1", "key": "` + base64.StdEncoding.EncodeToString(testKey) + `", "seed": ["x:1"]}`,
			want: []string{`unknown field "seed"`},
		},
		{
			name: "no instance id and no cloud-init data",
			json: `{"cluster": "c", "name": "a", "nonce": "n", "provider": "p", "instance_data_path": "/nonexistent/instance-data.json", "advertise_addr": "10.0.0.1", "key": "` + base64.StdEncoding.EncodeToString(testKey) + `"}`,
			want: []string{"instance_id is empty", "/nonexistent/instance-data.json"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(writeFile(t, "agent.json", tt.json))
			if err == nil {
				t.Fatal("LoadConfig succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error shows %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.json"))
	if err == nil || !strings.Contains(err.Error(), "nope.json") {
		t.Fatalf("err = %v, want it to name the missing file", err)
	}
}

func TestConfigNeverPrintsKey(t *testing.T) {
	c := Config{Cluster: "c", Name: "a", Key: []byte("SUPERSECRETKEY16")}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "config", c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), logs.String()} {
		if strings.Contains(s, "SUPERSECRET") || strings.Contains(s, base64.StdEncoding.EncodeToString(c.Key)) {
			t.Errorf("key shown in %q", s)
		}
		if !strings.Contains(s, "redacted, 16 bytes") {
			t.Errorf("no key description in %q", s)
		}
	}
}

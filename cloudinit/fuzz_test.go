package cloudinit

import (
	"net/netip"
	"testing"

	"gopkg.in/yaml.v3"
)

// ourKeys are the top-level keys the default template writes.
var ourKeys = map[string]bool{
	"hostname": true, "fqdn": true, "prefer_fqdn_over_hostname": true,
	"preserve_hostname": true, "manage_etc_hosts": true,
	"write_files": true, "runcmd": true,
	"ssh_deletekeys": true, "ssh_genkeytypes": true, "ssh_authorized_keys": true,
}

// FuzzRender feeds arbitrary node names, peer names, extra cloud-config and
// agent config to Render. Either Render fails, or the user-data is YAML
// with exactly our hostname, /etc/hosts and agent.json round-trip byte for
// byte, and every top-level key is ours or came from the extra config.
func FuzzRender(f *testing.F) {
	f.Add("red", "blue", "", `{"a":1}`)
	f.Add("red\nhostname: evil", "blue", "", `{}`)
	f.Add("yes", "no", "ssh_pwauth: yes\n", `{"k":"v"}`)
	f.Add("red", "blue\n10.0.0.1 evil", "#cloud-config\nruncmd: [echo]\n", `{}`)
	f.Add("red", "blue", "hostname: evil\n", `{}`)
	f.Add("red", "blue", "- a\n- b\n", `{}`)
	f.Add("red", "blue", "write_files:\n  - path: /etc/hosts\n    content: x\n", `{}`)
	f.Add("red", "blue", "write_files:\n  - path: /etc/motd\n    content: \"a\\u0085b\"\n", `{}`)
	f.Add("red", "blue", "a: &a [x, y]\nb: &b [*a, *a]\nc: [*b, *b, *b]\n", `{}`)
	f.Add("red", "blue", "ntp: {<<: {enabled: true}}\n", `{}`)
	f.Add("red", "blue", "runcmd: !!str x\n", `{}`)
	f.Add("red", "blue", "\ufeffpackages: [jq]\n", `{}`)
	f.Add("red", "blue", "x: {{ .Name }}\n", `{}`)
	f.Add("red", "blue", "bootcmd:\n  - |\n    echo one\n    echo two\n", `{}`)
	f.Add("red", "blue", "'hostname': red\n\"fqdn\": red.demo.cluster.internal\n", `{}`)
	f.Add("red", "blue", "? [a, b]\n: c\n", `{}`)
	f.Add("red", "blue", "", "{\r\n\t\"key\": \"\u0085\u2028\ufeff é 😀\",  \"trailing\": \"sp \" }  \n")
	f.Add("red", "blue", "", "\"# BEGIN clusterctl-agent\\n\"")
	f.Add("red", "blue", "", "[\"|\", \"- \", \": \", \"'\", \"\\\"\", \"\\\\\"]")
	f.Add("a", "b", "", " \n\n{\"x\":\"\"}\n\n")
	f.Fuzz(func(t *testing.T, name, peer, extra, agentConfig string) {
		in := sampleInput()
		in.Name = name
		in.Peers = []Peer{{Name: peer, Address: netip.MustParseAddr("192.168.56.11")}}
		in.Extra = []byte(extra)
		in.AgentConfig = []byte(agentConfig)
		r, err := Render(in)
		if err != nil {
			return
		}
		checkFuzzResult(t, in, r)
	})
}

func checkFuzzResult(t *testing.T, in Input, r Rendered) {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(r.UserData, &doc); err != nil {
		t.Fatalf("user-data does not parse: %v\n%s", err, r.UserData)
	}
	if doc["hostname"] != in.Name {
		t.Errorf("hostname = %#v, want %q", doc["hostname"], in.Name)
	}
	files, _ := writeFiles(t, doc)
	if got := files[HostsPath]["content"]; got != hostsFile(in) {
		t.Errorf("/etc/hosts content = %q, want %q", got, hostsFile(in))
	}
	if got := files[AgentConfigPath]["content"]; got != string(in.AgentConfig) {
		t.Errorf("agent.json content = %q, want %q", got, in.AgentConfig)
	}
	var extra map[string]any
	_ = yaml.Unmarshal(in.Extra, &extra)
	if _, set := extra["ssh_genkeytypes"]; !set && in.SSH != nil {
		if types, _ := doc["ssh_genkeytypes"].([]any); len(types) != 1 || types[0] != "ed25519" {
			t.Errorf("ssh_genkeytypes = %#v, want the node to make its own ed25519 host key", doc["ssh_genkeytypes"])
		}
	}
	for k := range doc {
		if _, fromExtra := extra[k]; !ourKeys[k] && !fromExtra {
			t.Errorf("user-data has key %q that is neither ours nor from extra", k)
		}
	}
	var meta map[string]any
	if err := yaml.Unmarshal(r.MetaData, &meta); err != nil || meta["local-hostname"] != in.Name {
		t.Errorf("meta-data %q: local-hostname is not %q (%v)", r.MetaData, in.Name, err)
	}
}

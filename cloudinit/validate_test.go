package cloudinit

import (
	"net/netip"
	"strings"
	"testing"
)

func TestRenderValidation(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Input)
		want   []string // substrings the error must contain
	}{
		{"empty name", func(in *Input) { in.Name = "" }, []string{`node name "" is not a valid host name`}},
		{"upper case name", func(in *Input) { in.Name = "Red" }, []string{`node name "Red"`}},
		{"name with dot", func(in *Input) { in.Name = "red.x" }, []string{`node name "red.x"`}},
		{"name starts with dash", func(in *Input) { in.Name = "-red" }, []string{`node name "-red"`}},
		{"name ends with dash", func(in *Input) { in.Name = "red-" }, []string{`node name "red-"`}},
		{"name too long", func(in *Input) { in.Name = strings.Repeat("a", 64) }, []string{"not a valid host name"}},
		{"name with newline", func(in *Input) { in.Name = "red\nhostname: evil" }, []string{`node name "red\nhostname: evil"`}},
		{"empty domain", func(in *Input) { in.Domain = "" }, []string{`domain "" is not a valid DNS name`}},
		{"domain trailing dot", func(in *Input) { in.Domain = "example.com." }, []string{`domain "example.com."`}},
		{"domain empty label", func(in *Input) { in.Domain = "a..b" }, []string{`domain "a..b"`}},
		{"domain underscore", func(in *Input) { in.Domain = "my_domain.com" }, []string{`domain "my_domain.com"`}},
		{"fqdn too long", func(in *Input) { in.Domain = strings.Repeat(strings.Repeat("d", 63)+".", 3) + strings.Repeat("d", 60) }, []string{"longer than 253"}},
		{"empty cluster", func(in *Input) { in.Cluster = "" }, []string{"cluster is empty"}},
		{"empty instance id", func(in *Input) { in.InstanceID = "" }, []string{"instance id is empty"}},
		{"instance id with control char", func(in *Input) { in.InstanceID = "i-\x00" }, []string{`instance id "i-\x00" contains control characters`}},
		{"address without MAC", func(in *Input) { in.MAC = "" }, []string{`address "192.168.56.10/24" is set but MAC is empty`}},
		{"bad MAC", func(in *Input) { in.MAC = "52:54:00:zz:00:0a" }, []string{`MAC "52:54:00:zz:00:0a" is not a MAC-48 address`}},
		{"EUI-64 MAC", func(in *Input) { in.MAC = "02:00:5e:10:00:00:00:01" }, []string{`MAC "02:00:5e:10:00:00:00:01"`}},
		{"zoned peer address", func(in *Input) { in.Peers[0].Address = netip.MustParseAddr("fe80::1%eth0") }, []string{`peer "blue" address "fe80::1%eth0" has an IPv6 zone`}},
		{"bad peer name", func(in *Input) { in.Peers[0].Name = "Blue Node" }, []string{`peer 0 name "Blue Node" is not a valid host name`}},
		{"peer without address", func(in *Input) { in.Peers[1].Address = netip.Addr{} }, []string{`peer "green" has no address`}},
		{"peer is self", func(in *Input) { in.Peers[0].Name = "red" }, []string{`peer "red" is the node itself`}},
		{"duplicate peer", func(in *Input) { in.Peers[1].Name = "blue" }, []string{`peer "blue" is listed twice`}},
		{"empty agent config", func(in *Input) { in.AgentConfig = nil }, []string{"agent config is empty"}},
		{"agent config not JSON", func(in *Input) { in.AgentConfig = []byte("secret_key: hunter2") }, []string{"agent config is not valid UTF-8 JSON"}},
		{"agent config bad UTF-8", func(in *Input) { in.AgentConfig = []byte("\"\xff\"") }, []string{"agent config is not valid UTF-8 JSON"}},
		{"unknown agent kind", func(in *Input) { in.Agent.Kind = "scp" }, []string{`agent source kind "scp" is not one of "seed", "url", "preinstalled"`}},
		{"empty agent kind", func(in *Input) { in.Agent.Kind = "" }, []string{`agent source kind ""`}},
		{"url without URL and SHA", func(in *Input) { in.Agent = AgentSource{Kind: AgentURL} }, []string{`agent URL "" is not an http(s) URL`, `agent SHA256 "" is not 64 hex digits`}},
		{"url with ftp URL", func(in *Input) {
			in.Agent = AgentSource{Kind: AgentURL, URL: "ftp://x/agent", SHA256: strings.Repeat("a", 64)}
		}, []string{`agent URL "ftp://x/agent"`}},
		{"url with short SHA", func(in *Input) { in.Agent = AgentSource{Kind: AgentURL, URL: "https://x/agent", SHA256: "abc"} }, []string{`agent SHA256 "abc"`}},
		{"all at once", func(in *Input) {
			in.Name, in.Domain, in.MAC, in.Agent.Kind = "RED", "", "nope", "x"
		}, []string{`node name "RED"`, `domain ""`, `MAC "nope"`, `agent source kind "x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := sampleInput()
			tt.modify(&in)
			r, err := Render(in)
			if err == nil {
				t.Fatalf("Render succeeded, want an error containing %q\n%s", tt.want, r.UserData)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// TestValidationDoesNotLeakAgentConfig: the agent config holds the gossip
// key; no error may show it.
func TestValidationDoesNotLeakAgentConfig(t *testing.T) {
	in := sampleInput()
	in.AgentConfig = []byte(`{"secret_key": "TOPSECRET"`) // truncated JSON
	in.Extra = []byte("hostname: other\n")
	_, err := Render(in)
	if err == nil {
		t.Fatal("Render succeeded with invalid agent config")
	}
	if strings.Contains(err.Error(), "TOPSECRET") {
		t.Errorf("error shows the agent config: %v", err)
	}
}

func TestRenderAcceptsValidVariants(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Input)
	}{
		{"digit-leading name", func(in *Input) { in.Name = "1node" }},
		{"63-character name", func(in *Input) { in.Name = strings.Repeat("a", 63) }},
		{"single-label domain", func(in *Input) { in.Domain = "lan" }},
		{"IPv6 address and peers", func(in *Input) {
			in.Address = netip.MustParsePrefix("fd00::10/64")
			in.Peers = []Peer{{Name: "blue", Address: netip.MustParseAddr("fd00::11")}}
		}},
		{"MAC with dashes", func(in *Input) { in.MAC = "52-54-00-aa-00-0a" }},
		{"no peers", func(in *Input) { in.Peers = nil }},
		{"preinstalled agent", func(in *Input) { in.Agent = AgentSource{Kind: AgentPreinstalled} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := sampleInput()
			tt.modify(&in)
			if _, err := Render(in); err != nil {
				t.Fatalf("Render: %v", err)
			}
		})
	}
}

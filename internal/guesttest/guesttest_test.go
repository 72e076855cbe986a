package guesttest

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/cloudinit"
)

// Parse reads what Render writes: the hostname, the agent config,
// /etc/hosts, the install command's agent source and the SSH settings.
func TestParseReadsRenderedUserData(t *testing.T) {
	r, err := cloudinit.Render(cloudinit.Input{
		Cluster: "demo", Name: "red", Domain: "demo.cluster.internal", InstanceID: "i-1",
		Address: netip.MustParsePrefix("10.0.0.5/24"), MAC: "52:54:00:AA:00:0A",
		AgentConfig: []byte(`{"cluster":"demo","name":"red","api":{"port":7947}}`),
		Agent:       cloudinit.AgentSource{Kind: cloudinit.AgentURL, URL: "https://example.invalid/agent", SHA256: strings.Repeat("ab", 32)},
		SSH:         &cloudinit.SSH{AuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOfake clusterctl"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	u, err := Parse(r.UserData)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := u.AgentConfig()
	if err != nil || cfg.Name != "red" || cfg.API.Port != 7947 {
		t.Errorf("AgentConfig = %+v, %v; want red's, API on 7947", cfg, err)
	}
	if hosts, ok := u.File(cloudinit.HostsPath); !ok || !strings.Contains(hosts, "10.0.0.5") {
		t.Errorf("File(%s) = %q, %v; want the node's line", cloudinit.HostsPath, hosts, ok)
	}
	kind, url, sum, err := u.AgentInstall()
	if err != nil || kind != cloudinit.AgentURL || url != "https://example.invalid/agent" || sum != strings.Repeat("ab", 32) {
		t.Errorf("AgentInstall = %q %q %q %v; want the URL and SHA-256 rendered", kind, url, sum, err)
	}
	if len(u.Authorized) != 1 || u.Hostname != "red" || !u.DeleteKeys || len(u.GenKeyTypes) != 1 || u.GenKeyTypes[0] != "ed25519" || u.SSHKeys != nil {
		t.Errorf("hostname %q, ssh: delete keys %v, make %q, keys %v, authorized %q; want red, the image's keys deleted, an ed25519 key made, none given, the one key authorized",
			u.Hostname, u.DeleteKeys, u.GenKeyTypes, u.SSHKeys, u.Authorized)
	}
}

// Parse refuses what cloud-init would not read as a cloud-config.
func TestParseWantsCloudConfig(t *testing.T) {
	for _, ud := range []string{"", "#!/bin/sh\necho hi\n", "write_files: []\n"} {
		if _, err := Parse([]byte(ud)); err == nil || !strings.Contains(err.Error(), "#cloud-config") {
			t.Errorf("Parse(%q) = %v, want an error naming #cloud-config", ud, err)
		}
	}
}

// Secrets finds a long-lived secret in rendered user-data, and nothing in
// user-data that carries only a bootstrap token.
func TestSecretsInRenderedUserData(t *testing.T) {
	for _, tt := range []struct{ config, want string }{
		{`{"cluster":"demo","name":"red","enrol":{"token":"AAAA"}}`, ""},
		{`{"cluster":"demo","name":"red","key":"AAAAAAAAAAAAAAAAAAAAAA==","enrol":{"token":"AAAA"}}`, "the gossip key"},
		{`{"cluster":"demo","name":"red","api":{"key":"x"},"enrol":{"token":"AAAA"}}`, "a TLS key or certificate"},
		{`{"cluster":"demo","name":"red"}`, "no bootstrap token (and so no way to enrol)"},
	} {
		r, err := cloudinit.Render(cloudinit.Input{
			Cluster: "demo", Name: "red", Domain: "demo.cluster.internal", InstanceID: "i-1",
			AgentConfig: []byte(tt.config), Agent: cloudinit.AgentSource{Kind: cloudinit.AgentPreinstalled},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := Secrets(r.UserData); got != tt.want {
			t.Errorf("Secrets with agent config %s = %q, want %q", tt.config, got, tt.want)
		}
	}
}

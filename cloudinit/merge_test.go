package cloudinit

import (
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// decodeUserData parses rendered user-data into a generic map.
func decodeUserData(t *testing.T, data []byte) map[string]any {
	t.Helper()
	if !strings.HasPrefix(string(data), "#cloud-config\n") {
		t.Fatalf("user-data does not start with #cloud-config:\n%s", data)
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("user-data is not YAML: %v\n%s", err, data)
	}
	return m
}

// writeFiles returns path -> entry of the user-data's write_files.
func writeFiles(t *testing.T, m map[string]any) (map[string]map[string]any, []string) {
	t.Helper()
	files := map[string]map[string]any{}
	var order []string
	list, _ := m["write_files"].([]any)
	for _, e := range list {
		entry := e.(map[string]any)
		p := entry["path"].(string)
		files[p] = entry
		order = append(order, p)
	}
	return files, order
}

func TestMergeExtra(t *testing.T) {
	base := decodeUserData(t, mustRender(t, sampleInput()).UserData)
	baseRuncmd := base["runcmd"].([]any)
	tests := []struct {
		name  string
		extra string
		check func(t *testing.T, m map[string]any)
	}{
		{"runcmd appended after ours", "#cloud-config\nruncmd:\n  - echo one\n  - [echo, two]\n", func(t *testing.T, m map[string]any) {
			got := m["runcmd"].([]any)
			if len(got) != len(baseRuncmd)+2 {
				t.Fatalf("runcmd has %d entries, want %d", len(got), len(baseRuncmd)+2)
			}
			if !reflect.DeepEqual(got[:len(baseRuncmd)], baseRuncmd) {
				t.Errorf("our runcmd entries are not first: %v", got)
			}
			if got[len(baseRuncmd)] != "echo one" || !reflect.DeepEqual(got[len(baseRuncmd)+1], []any{"echo", "two"}) {
				t.Errorf("extra runcmd entries = %v", got[len(baseRuncmd):])
			}
		}},
		{"write_files appended", "write_files:\n  - path: /etc/motd\n    content: hi\n", func(t *testing.T, m map[string]any) {
			files, order := writeFiles(t, m)
			if order[len(order)-1] != "/etc/motd" || files["/etc/motd"]["content"] != "hi" {
				t.Errorf("write_files order %v, motd %v", order, files["/etc/motd"])
			}
			if len(order) != 4 {
				t.Errorf("write_files has %d entries, want 4", len(order))
			}
		}},
		{"new keys taken", "packages: [jq]\ntimezone: UTC\nssh_pwauth: false\n", func(t *testing.T, m map[string]any) {
			if !reflect.DeepEqual(m["packages"], []any{"jq"}) || m["timezone"] != "UTC" || m["ssh_pwauth"] != false {
				t.Errorf("packages %v timezone %v ssh_pwauth %v", m["packages"], m["timezone"], m["ssh_pwauth"])
			}
		}},
		{"owned key with the same value", "hostname: red\nmanage_etc_hosts: false\nfqdn: red.demo.cluster.internal\n", func(t *testing.T, m map[string]any) {
			if m["hostname"] != "red" || m["manage_etc_hosts"] != false {
				t.Errorf("hostname %v manage_etc_hosts %v", m["hostname"], m["manage_etc_hosts"])
			}
		}},
		{"nested maps merged, scalars taken", "apt:\n  preserve_sources_list: true\nntp:\n  enabled: true\n  servers: [a]\n---\n", func(t *testing.T, m map[string]any) {
			want := map[string]any{"enabled": true, "servers": []any{"a"}}
			if !reflect.DeepEqual(m["ntp"], want) {
				t.Errorf("ntp = %v, want %v", m["ntp"], want)
			}
		}},
		{"aliases expanded", "x-common: &c [echo, hi]\nbootcmd:\n  - *c\n", func(t *testing.T, m map[string]any) {
			if !reflect.DeepEqual(m["bootcmd"], []any{[]any{"echo", "hi"}}) {
				t.Errorf("bootcmd = %v", m["bootcmd"])
			}
		}},
		{"empty extra", "#cloud-config\n", func(t *testing.T, m map[string]any) {
			if !reflect.DeepEqual(m, base) {
				t.Errorf("empty extra changed the user-data")
			}
		}},
		{"null value adds nothing", "runcmd:\n", func(t *testing.T, m map[string]any) {
			if !reflect.DeepEqual(m["runcmd"], baseRuncmd) {
				t.Errorf("runcmd = %v", m["runcmd"])
			}
		}},
		{"YAML 1.1 booleans stay plain", "ssh_pwauth: yes\n", func(t *testing.T, m map[string]any) {
			// cloud-init (YAML 1.1) reads a plain yes as true; the
			// merged document must keep it plain, not make it "yes".
			if m["ssh_pwauth"] != "yes" {
				t.Errorf("ssh_pwauth = %#v", m["ssh_pwauth"])
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := sampleInput()
			in.Extra = []byte(tt.extra)
			r, err := Render(in)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			tt.check(t, decodeUserData(t, r.UserData))
		})
	}
}

func TestMergeExtraPlainBoolText(t *testing.T) {
	in := sampleInput()
	in.Extra = []byte("ssh_pwauth: yes\n")
	r := mustRender(t, in)
	if !strings.Contains(string(r.UserData), "\nssh_pwauth: yes\n") {
		t.Errorf("ssh_pwauth is not written as a plain yes:\n%s", r.UserData)
	}
}

func TestMergeExtraErrors(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		want  []string
	}{
		{"not YAML", "runcmd: [echo\n", []string{"cloudinit.extra:", "line"}},
		{"a list", "- echo hi\n", []string{"cloudinit.extra: line 1: the document is a list, not a mapping"}},
		{"a scalar", "#cloud-config\nhello\n", []string{"cloudinit.extra: line 2: the document is a scalar, not a mapping"}},
		{"duplicate key", "a: 1\na: 2\n", []string{"cloudinit.extra:", `"a" already defined`}},
		{"hostname changed", "hostname: evil\n", []string{`cloudinit.extra: line 1: key "hostname" is set by clusterctl`}},
		{"fqdn changed", "x: 1\nfqdn: evil.example.com\n", []string{`line 2: key "fqdn"`}},
		{"manage_etc_hosts true", "manage_etc_hosts: true\n", []string{`key "manage_etc_hosts"`}},
		{"manage_etc_hosts localhost", "manage_etc_hosts: localhost\n", []string{`key "manage_etc_hosts"`}},
		{"preserve_hostname", "preserve_hostname: true\n", []string{`key "preserve_hostname"`}},
		{"prefer_fqdn_over_hostname", "prefer_fqdn_over_hostname: true\n", []string{`key "prefer_fqdn_over_hostname"`}},
		{"hostname as a list", "hostname: [a]\n", []string{`key "hostname"`}},
		{"several owned keys", "hostname: a\nfqdn: b\n", []string{`key "hostname"`, `key "fqdn"`}},
		{"writes /etc/hosts", "write_files:\n  - path: /etc/hosts\n    content: x\n", []string{`cloudinit.extra: line 2: write_files entry for "/etc/hosts": clusterctl writes that file`}},
		{"writes agent.json by another spelling", "write_files:\n  - path: /etc//clusterctl/./agent.json\n", []string{`"/etc//clusterctl/./agent.json"`}},
		{"writes the unit", "write_files:\n  - path: /etc/systemd/system/clusterctl-agent.service\n", []string{`"/etc/systemd/system/clusterctl-agent.service"`}},
		{"list into a scalar", "runcmd: echo hi\n", []string{`line 1: key "runcmd" is a scalar here but a list in the user-data`}},
		{"merge key", "base: &b {a: 1}\nntp:\n  <<: *b\n", []string{"line 3: merge keys (<<) are not supported"}},
		{"null key", "?\n", []string{`cloudinit.extra: line 1: the key that is null (an empty "?" key) is not a name`}},
		{"null key with a value", "? \n: x\nruncmd: [ls]\n", []string{"line 1: the key that is null"}},
		{"empty key", "'': x\n", []string{`line 1: the key "" is not a name`}},
		{"number key", "runcmd: [ls]\n8080: x\n", []string{"line 2: the key 8080 (a int) is not a name", "quote a key"}},
		{"list key", "? [a, b]\n: c\n", []string{"cloudinit.extra:", "invalid map key"}},
		{"nested null key", "ntp:\n  enabled: true\n  ~: x\n", []string{"line 3: the key that is null", "under ntp"}},
		{"a key thousands of times", strings.Repeat("packages: [jq]\n", 3000), []string{`line 2: mapping key "packages" already defined at line 1`, "and 2989 more duplicate keys"}},
		{"every bad key at once", "1: a\n2: b\n", []string{"line 1: the key 1", "line 2: the key 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := sampleInput()
			in.Extra = []byte(tt.extra)
			r, err := Render(in)
			if err == nil {
				t.Fatalf("Render succeeded, want error %q\n%s", tt.want, r.UserData)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func mustRender(t *testing.T, in Input) Rendered {
	t.Helper()
	r, err := Render(in)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return r
}

func TestUserTemplate(t *testing.T) {
	tests := []struct {
		name     string
		template string
		wantErr  string
		wantKeys map[string]any
	}{
		{"minimal", "#cloud-config\nhostname: {{ .Name | yaml }}\nruncmd: [{{ yaml .FQDN }}]\n{{ range .Peers }}# {{ .Name | yaml }}\n{{ end }}",
			"", map[string]any{"hostname": "red", "runcmd": []any{"red.demo.cluster.internal"}}},
		{"not a mapping", "- {{ .Name | yaml }}\n", "output of the template: line 1: the document is a list, not a mapping", nil},
		{"not YAML", "a: [\n", "output of the template: yaml:", nil},
		{"unquoted action", "hostname: {{ .Name }}\n", `user template:1:13: {{.Name}} prints a value without quoting it`, nil},
		{"unquoted in range", "{{ range .Peers }}\n- {{ .Address }}\n{{ end }}", `{{.Address}} prints a value without quoting it`, nil},
		{"unquoted in define", `{{ define "x" }}{{ .Name }}{{ end }}a: {{ .Name | yaml }}`, `{{.Name}} prints a value without quoting it`, nil},
		{"quote then print", "a: {{ .Name | yaml | printf \"%s\" }}\n", "prints a value without quoting it", nil},
		{"unknown field", "a: {{ .Nope | yaml }}\n", "user-data template:", nil},
		{"yaml of a map", "a: {{ yaml .Paths }}\n", "cannot quote a value of type cloudinit.TemplatePaths", nil},
		{"syntax error", "a: {{ .Name | yaml \n", "user-data template:", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := sampleInput()
			in.Template = []byte(tt.template)
			r, err := Render(in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got := decodeUserData(t, r.UserData); !reflect.DeepEqual(got, tt.wantKeys) {
				t.Errorf("user-data = %v, want %v", got, tt.wantKeys)
			}
		})
	}
}

func TestQuoteString(t *testing.T) {
	for _, s := range []string{"", "plain", "a: b\n- c", `"'\`, "tab\there", "\x00\x1b\x7f", "é ü \u0085 \u2028 \ufeff 😀", "#comment", "yes", "0644", "{{x}}", "*alias &anchor !tag"} {
		q, err := quoteString(s)
		if err != nil {
			t.Fatalf("quoteString(%q): %v", s, err)
		}
		for _, c := range []byte(q) {
			if c < 0x20 || c > 0x7e {
				t.Errorf("quoteString(%q) = %q has a byte outside printable ASCII", s, q)
				break
			}
		}
		var back string
		if err := yaml.Unmarshal([]byte("k: "+q), &struct{ K *string }{&back}); err != nil {
			t.Fatalf("quoteString(%q) = %q does not parse: %v", s, q, err)
		}
		if back != s {
			t.Errorf("quoteString(%q) = %q reads back as %q", s, q, back)
		}
	}
	if _, err := quoteString("\xff"); err == nil {
		t.Error("quoteString accepted invalid UTF-8")
	}
}

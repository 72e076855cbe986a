package openstack_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/openstack/openstacktest"
)

const resources = "flavor: m1.small\nimage: debian-12-genericcloud-amd64\nnetwork: private\npoll_interval: 1ms\n"

// TestAuthSources authenticates from each place credentials can come from
// and checks that the provider then works (Preflight lists flavors, images
// and networks with the token it got).
func TestAuthSources(t *testing.T) {
	c := newCloud(t, false)
	f := openstacktest.DomainName
	pw := passwordClouds(c, openstacktest.Password)
	noPassword := strings.Replace(pw, fmt.Sprintf("      password: %q\n", openstacktest.Password), "", 1)
	appCred := fmt.Sprintf(`clouds:
  fake:
    auth_type: v3applicationcredential
    auth:
      auth_url: %s
      application_credential_id: %s
      application_credential_secret: %s
    region_name: RegionOne
`, c.AuthURL(), openstacktest.AppCredID, openstacktest.AppCredSecret)
	unversioned := strings.Replace(pw, c.AuthURL(), c.URL+"/identity", 1)
	if noPassword == pw || unversioned == pw {
		t.Fatal("test set-up: the clouds.yaml edits did not apply")
	}

	tests := []struct {
		name            string
		clouds, secure  string // "" = none
		section         string // before the resources; CLOUDS is replaced by the clouds.yaml path
		env             env
		useCloudsEnvVar bool // pass clouds.yaml through OS_CLIENT_CONFIG_FILE
	}{
		{name: "clouds.yaml password", clouds: pw, section: "cloud: fake\nclouds_file: CLOUDS\n"},
		{name: "OS_CLOUD picks the cloud", clouds: pw, env: env{"OS_CLOUD": "fake"}, useCloudsEnvVar: true},
		{name: "secure.yaml holds the password", clouds: noPassword, secure: fmt.Sprintf("clouds:\n  fake:\n    auth:\n      password: %q\n", openstacktest.Password),
			section: "cloud: fake\nclouds_file: CLOUDS\n"},
		{name: "application credential in clouds.yaml", clouds: appCred, section: "cloud: fake\nclouds_file: CLOUDS\n"},
		{name: "unversioned auth_url (version discovery)", clouds: unversioned, section: "cloud: fake\nclouds_file: CLOUDS\n"},
		{name: "OS_* password", env: env{"OS_AUTH_URL": c.AuthURL(), "OS_USERNAME": openstacktest.UserName, "OS_PASSWORD": openstacktest.Password,
			"OS_PROJECT_NAME": openstacktest.ProjectName, "OS_USER_DOMAIN_NAME": f, "OS_PROJECT_DOMAIN_ID": openstacktest.DomainID, "OS_REGION_NAME": openstacktest.Region}},
		{name: "OS_* project id", env: env{"OS_AUTH_URL": c.AuthURL(), "OS_USERNAME": openstacktest.UserName, "OS_PASSWORD": openstacktest.Password,
			"OS_PROJECT_ID": openstacktest.ProjectID, "OS_USER_DOMAIN_NAME": f}},
		{name: "OS_* application credential by id", env: env{"OS_AUTH_URL": c.AuthURL(), "OS_AUTH_TYPE": "v3applicationcredential",
			"OS_APPLICATION_CREDENTIAL_ID": openstacktest.AppCredID, "OS_APPLICATION_CREDENTIAL_SECRET": openstacktest.AppCredSecret}},
		{name: "OS_TOKEN scoped to a project", env: env{"OS_AUTH_URL": c.AuthURL(), "OS_TOKEN": c.IssueToken(), "OS_PROJECT_ID": openstacktest.ProjectID}},
		{name: "OS_* application credential by name", env: env{"OS_AUTH_URL": c.AuthURL(), "OS_USERNAME": openstacktest.UserName, "OS_USER_DOMAIN_NAME": f,
			"OS_APPLICATION_CREDENTIAL_NAME": openstacktest.AppCredName, "OS_APPLICATION_CREDENTIAL_SECRET": openstacktest.AppCredSecret}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			section := tt.section
			e := env{}
			for k, v := range tt.env {
				e[k] = v
			}
			if tt.clouds != "" {
				path := writeClouds(t, tt.clouds, tt.secure)
				section = strings.ReplaceAll(section, "CLOUDS", path)
				if tt.useCloudsEnvVar {
					e["OS_CLIENT_CONFIG_FILE"] = path
				}
			}
			p := newProvider(t, section+resources, e)
			if err := p.Preflight(ctx(t), nil); err != nil {
				t.Fatalf("Preflight: %v", err)
			}
		})
	}
}

// TestCloudsYAMLSearchPath finds clouds.yaml under XDG_CONFIG_HOME and
// secure.yaml next to it, with no path configured.
func TestCloudsYAMLSearchPath(t *testing.T) {
	c := newCloud(t, false)
	cfgHome := t.TempDir()
	dir := filepath.Join(cfgHome, "openstack")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	pw := passwordClouds(c, openstacktest.Password)
	noPassword := strings.Replace(pw, fmt.Sprintf("      password: %q\n", openstacktest.Password), "", 1)
	if noPassword == pw {
		t.Fatal("test set-up: the password was not removed from clouds.yaml")
	}
	must(t, os.WriteFile(filepath.Join(dir, "clouds.yaml"), []byte(noPassword), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "secure.yaml"), []byte(fmt.Sprintf("clouds:\n  fake:\n    auth:\n      password: %q\n", openstacktest.Password)), 0o600))
	t.Setenv("XDG_CONFIG_HOME", cfgHome)
	t.Chdir(t.TempDir()) // no ./clouds.yaml
	p := newProvider(t, "cloud: fake\n"+resources, nil)
	if err := p.Preflight(ctx(t), nil); err != nil {
		t.Fatalf("Preflight with clouds.yaml in $XDG_CONFIG_HOME/openstack: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestTLS(t *testing.T) {
	c := newCloud(t, true)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	must(t, os.WriteFile(caFile, c.CertificatePEM(), 0o600))
	base := passwordClouds(c, openstacktest.Password)

	t.Run("untrusted certificate is bad input naming cacert", func(t *testing.T) {
		p := newProvider(t, "cloud: fake\nclouds_file: "+writeClouds(t, base, "")+"\n"+resources, nil)
		err := p.Preflight(ctx(t), nil)
		var ie *usererr.InputError
		if !errors.As(err, &ie) || !strings.Contains(ie.Fix, "cacert") || !strings.Contains(err.Error(), "not trusted") {
			t.Fatalf("Preflight against an unknown CA: %v (want an input error about cacert)", err)
		}
		noSecrets(t, err.Error(), ie.Fix)
	})
	t.Run("cacert in clouds.yaml", func(t *testing.T) {
		cl := base + "    cacert: " + caFile + "\n"
		p := newProvider(t, "cloud: fake\nclouds_file: "+writeClouds(t, cl, "")+"\n"+resources, nil)
		if err := p.Preflight(ctx(t), nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OS_CACERT", func(t *testing.T) {
		e := env{"OS_AUTH_URL": c.AuthURL(), "OS_USERNAME": openstacktest.UserName, "OS_PASSWORD": openstacktest.Password,
			"OS_PROJECT_ID": openstacktest.ProjectID, "OS_USER_DOMAIN_ID": openstacktest.DomainID, "OS_CACERT": caFile}
		p := newProvider(t, resources, e)
		if err := p.Preflight(ctx(t), nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("verify: false", func(t *testing.T) {
		cl := base + "    verify: false\n"
		p := newProvider(t, "cloud: fake\nclouds_file: "+writeClouds(t, cl, "")+"\n"+resources, nil)
		if err := p.Preflight(ctx(t), nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("openstack.cacert in the cluster config, relative to it", func(t *testing.T) {
		p := newProvider(t, "cloud: fake\ninsecure: false\ncacert: "+caFile+"\nclouds_file: "+writeClouds(t, base, "")+"\n"+resources, nil)
		if err := p.Preflight(ctx(t), nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("cacert that is not PEM", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.pem")
		must(t, os.WriteFile(bad, []byte("not a certificate"), 0o600))
		p := newProvider(t, "cloud: fake\ncacert: "+bad+"\nclouds_file: "+writeClouds(t, base, "")+"\n"+resources, nil)
		var ie *usererr.InputError
		if err := p.Preflight(ctx(t), nil); !errors.As(err, &ie) {
			t.Fatalf("Preflight: %v, want an input error", err)
		}
	})
}

// TestBadInput: each problem is an *InputError (exit 2) that says what is
// wrong and what to do, nothing is created at the cloud, and no secret
// shows in the message.
func TestBadInput(t *testing.T) {
	c := newCloud(t, false)
	pw := passwordClouds(c, openstacktest.Password)
	wrongPw := passwordClouds(c, "not-the-password")
	appCred := fmt.Sprintf("clouds:\n  fake:\n    auth:\n      auth_url: %s\n      application_credential_id: %s\n      application_credential_secret: expired-secret\n",
		c.AuthURL(), openstacktest.AppCredID)
	tests := []struct {
		name, clouds, section string
		env                   env
		want                  []string // in the message
		fix                   string   // in the fix
	}{
		{name: "flavor typo", clouds: pw, section: "flavor: m1.smal\nimage: debian-12-genericcloud-amd64\nnetwork: private\n",
			want: []string{`flavor "m1.smal" not found`, `did you mean "m1.small"`}, fix: "m1.tiny"},
		{name: "image near match", clouds: pw, section: "flavor: m1.small\nimage: debian-12\nnetwork: private\n",
			want: []string{`image "debian-12" not found`, `"debian-12-genericcloud-amd64"`}},
		{name: "unknown network", clouds: pw, section: "flavor: m1.small\nimage: debian-12-genericcloud-amd64\nnetwork: privat\n",
			want: []string{`network "privat" not found`, `did you mean "private"`}},
		{name: "external network as cluster network", clouds: pw, section: "flavor: m1.small\nimage: debian-12-genericcloud-amd64\nnetwork: public\n",
			want: []string{`network "public" is an external network`}, fix: "floating_ip_pool"},
		{name: "floating IP pool that does not exist", clouds: pw, section: resources + "floating_ip_pool: pubic\n",
			want: []string{`floating IP pool (external network) "pubic" not found`, `did you mean "public"`}},
		{name: "a tenant network is no floating IP pool", clouds: pw, section: resources + "floating_ip_pool: private\n",
			want: []string{`"private" not found`}, fix: "public"},
		{name: "unknown key pair", clouds: pw, section: resources + "key_name: nokey\n", want: []string{`key pair "nokey" not found`}},
		{name: "all problems at once", clouds: pw, section: "flavor: x1\nimage: y1\nnetwork: z1\n",
			want: []string{`flavor "x1"`, `image "y1"`, `network "z1"`}},
		{name: "cloud not in clouds.yaml", clouds: pw, section: resources, env: env{"OS_CLOUD": "fak"},
			want: []string{`cloud "fak" is not in`, `did you mean "fake"`}, fix: "fake"},
		{name: "wrong password", clouds: wrongPw, section: resources,
			want: []string{"password auth", `user "demo"`, "refused (HTTP 401)"}, fix: "password"},
		{name: "expired application credential", clouds: appCred, section: resources,
			want: []string{"application credential auth", openstacktest.AppCredID, "refused"}, fix: "expired"},
		{name: "no credentials at all", section: resources, want: []string{"no credentials"}, fix: "OS_CLOUD"},
		{name: "password auth without project", section: resources,
			env:  env{"OS_AUTH_URL": c.AuthURL(), "OS_USERNAME": "demo", "OS_PASSWORD": openstacktest.Password, "OS_USER_DOMAIN_NAME": "Default"},
			want: []string{"password auth from OS_* environment variables is missing: project_name"}},
		{name: "region not in the catalog", clouds: pw, section: resources + "region: RegionTwo\n", want: []string{"region RegionTwo"}, fix: "region"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			section := tt.section
			e := env{}
			for k, v := range tt.env {
				e[k] = v
			}
			if tt.clouds != "" {
				path := writeClouds(t, tt.clouds, "")
				e["OS_CLIENT_CONFIG_FILE"] = path
				if e["OS_CLOUD"] == "" {
					e["OS_CLOUD"] = "fake"
				}
			}
			p := newProvider(t, section, e)
			before := len(c.Requests())
			err := p.Preflight(ctx(t), []provider.NodeSpec{spec(t, "red")})
			var ie *usererr.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("Preflight: %v (%T), want *usererr.InputError", err, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q does not contain %q", err, w)
				}
			}
			fixes := allFixes(err)
			if tt.fix != "" && !strings.Contains(fixes, tt.fix) {
				t.Errorf("fix %q does not mention %q", fixes, tt.fix)
			}
			noSecrets(t, err.Error(), fixes)
			for _, r := range c.Requests()[before:] {
				if r.Method != "GET" && r.Path != "/identity/v3/auth/tokens" {
					t.Errorf("bad input still changed the cloud: %s %s", r.Method, r.Path)
				}
			}
		})
	}
	if n := len(c.Servers()); n != 0 {
		t.Errorf("%d servers were created by bad input", n)
	}
}

// allFixes joins the Fix of every *InputError in err's tree.
func allFixes(err error) string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if ie, ok := e.(*usererr.InputError); ok {
			out = append(out, ie.Fix)
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			if x := u.Unwrap(); x != nil {
				walk(x)
			}
		}
	}
	walk(err)
	return strings.Join(out, "; ")
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		section string
		want    []string
	}{
		{"flavour: m1.small\n", []string{`unknown key "flavour"`, `did you mean "flavor"`}},
		{"cloud: x\n", []string{"flavor is required", "image is required", "network is required"}},
		{resources + "api_from: [not-a-cidr]\n", []string{`openstack.api_from entry 1 "not-a-cidr" is not a CIDR`}},
		{resources + "api_from: [198.51.100.7/24]\n", []string{`openstack.api_from entry 1 "198.51.100.7/24" has host bits set`}},
		{resources + "interface: private\n", []string{`unknown interface "private"`}},
		{resources + "security_group: default\n", []string{`security_group "default" cannot be used`}},
		{resources + "password: hunter2\n", []string{`unknown key "password"`}},
	}
	for _, tt := range tests {
		_, err := makeProvider(t, tt.section, nil)
		var ie *usererr.InputError
		if !errors.As(err, &ie) {
			t.Errorf("config %q: %v, want an input error", tt.section, err)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("config %q: message %q lacks %q", tt.section, err, w)
			}
		}
	}
}

// TestNoSecretsAnywhere runs a whole life cycle with password auth and
// checks that nothing the provider returns shows a secret (the password,
// a token, Nova's generated admin password).
func TestNoSecretsAnywhere(t *testing.T) {
	c := newCloud(t, false)
	p := standard(t, c, "floating_ip_pool: public\n")
	var texts []string
	add := func(v any, err error) {
		texts = append(texts, fmt.Sprintf("%v %+v %#v", v, v, v))
		if err != nil {
			texts = append(texts, err.Error(), fmt.Sprintf("%+v %#v", err, err))
		}
	}
	inst, err := p.Create(ctx(t), spec(t, "red"))
	add(inst, err)
	add(p.Status(ctx(t), inst.ID))
	add(p.List(ctx(t), testCluster))
	add(p.ConsoleLog(ctx(t), inst.ID))
	add(p.Config(), nil)
	add(p, nil)
	add(p.Status(ctx(t), "no-such"))
	c.ExpireTokens()
	add(p.Status(ctx(t), inst.ID))
	add(nil, p.Delete(ctx(t), inst.ID))
	// A failing call's error (a refused token mid-run).
	add(nil, p.Delete(context.Background(), "x"))
	noSecrets(t, texts...)
}

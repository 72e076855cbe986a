package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cloudSDKs are the module paths of the cloud SDKs the providers use.
var cloudSDKs = []string{
	"github.com/aws/aws-sdk-go-v2",
	"github.com/aws/smithy-go",
	"github.com/gophercloud/gophercloud",
}

// omitTags maps each provider to the build tag that leaves it out.
var omitTags = map[string]string{
	"ec2":        "clusterctl_omit_ec2",
	"openstack":  "clusterctl_omit_openstack",
	"qemu":       "clusterctl_omit_qemu",
	"virtualbox": "clusterctl_omit_virtualbox",
}

// goCmd runs the go command from the repository root and returns its
// standard output.
func goCmd(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// deps lists the packages pkg depends on, as built with tags.
func deps(t *testing.T, env []string, tags, pkg string) []string {
	t.Helper()
	return strings.Fields(goCmd(t, env, "list", "-deps", "-tags", tags, pkg))
}

func dependsOn(list []string, module string) bool {
	for _, p := range list {
		if p == module || strings.HasPrefix(p, module+"/") {
			return true
		}
	}
	return false
}

// The agent runs on every node and is downloaded by cloud nodes: it must
// stay free of the cloud SDKs (docs/architecture.md).
func TestAgentImportsNoCloudSDK(t *testing.T) {
	// As `make build` builds it, and as built for this machine.
	for _, env := range [][]string{{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"}, nil} {
		list := deps(t, env, "", "./cmd/clusterctl-agent")
		if !dependsOn(list, "github.com/hashicorp/memberlist") {
			t.Fatalf("go list -deps of the agent (%v) does not show memberlist; the listing is wrong:\n%s", env, strings.Join(list, "\n"))
		}
		for _, sdk := range cloudSDKs {
			if dependsOn(list, sdk) {
				t.Errorf("cmd/clusterctl-agent (%v) depends on %s; see `go mod why -m %s`", env, sdk, sdk)
			}
		}
	}
}

// gossipModules are the membership modules only the agent may link.
var gossipModules = []string{
	"github.com/hashicorp/serf",
	"github.com/hashicorp/memberlist",
}

// The CLI watches the membership through the node API and never gossips:
// it must not link serf or memberlist (the agent's config, which it
// renders, is internal/agentconfig's; docs/architecture.md).
func TestCLIImportsNoGossip(t *testing.T) {
	agent := deps(t, nil, "", "./cmd/clusterctl-agent")
	for _, m := range gossipModules {
		if !dependsOn(agent, m) {
			t.Fatalf("go list -deps of the agent does not show %s; the listing is wrong:\n%s", m, strings.Join(agent, "\n"))
		}
	}
	list := deps(t, nil, "", "./cmd/clusterctl")
	for _, m := range gossipModules {
		if dependsOn(list, m) {
			t.Errorf("cmd/clusterctl depends on %s; see `go list -deps ./cmd/clusterctl` and who imports it", m)
		}
	}
}

// Each clusterctl_omit_<provider> tag takes that provider's package, and
// with it the SDK only it uses, out of the CLI.
func TestOmitTagsLeaveProvidersOut(t *testing.T) {
	const mod = "github.com/clusterctl/clusterctl/provider/"
	full := deps(t, nil, "", "./cmd/clusterctl")
	for name := range omitTags {
		if !dependsOn(full, mod+name) {
			t.Fatalf("the full CLI does not depend on provider/%s", name)
		}
	}
	for name, tag := range omitTags {
		list := deps(t, nil, tag, "./cmd/clusterctl")
		if dependsOn(list, mod+name) {
			t.Errorf("-tags %s: the CLI still depends on provider/%s", tag, name)
		}
		for other := range omitTags {
			if other != name && !dependsOn(list, mod+other) {
				t.Errorf("-tags %s: provider/%s is left out too", tag, other)
			}
		}
	}
	all := make([]string, 0, len(omitTags))
	for _, tag := range omitTags {
		all = append(all, tag)
	}
	list := deps(t, nil, strings.Join(all, ","), "./cmd/clusterctl")
	for _, sdk := range cloudSDKs {
		if dependsOn(list, sdk) {
			t.Errorf("with every provider omitted the CLI still depends on %s", sdk)
		}
	}
}

// A CLI built without a provider says so when a config asks for it: exit 2,
// and nothing is made in the state directory.
func TestOmittedProviderSaysSo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLI")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "clusterctl")
	tags := make([]string, 0, len(omitTags))
	for _, tag := range omitTags {
		tags = append(tags, tag)
	}
	binAbs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	goCmd(t, nil, "build", "-tags", strings.Join(tags, ","), "-o", binAbs, "./cmd/clusterctl")
	home := filepath.Join(dir, "home")
	for name := range omitTags {
		t.Run(name, func(t *testing.T) {
			config := filepath.Join(dir, name+".yaml")
			// The provider's section is accepted (it is only checked by the
			// provider), so a config written for a full build still loads.
			text := "cluster: omit-" + name + "\nprovider: " + name + "\n" + name + ": {}\n"
			if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"up", "red"}, {"render", "red"}} {
				cmd := exec.Command(bin, append([]string{"--config", config}, args...)...)
				cmd.Env = append(os.Environ(), "CLUSTERCTL_HOME="+home)
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 2 {
					t.Errorf("%v: %v, want exit status 2:\n%s", args, err, out)
				}
				want := "error: this clusterctl was built without provider " + name + "\n  fix: use a clusterctl built without the build tag " + omitTags[name] + "\n"
				if string(out) != want {
					t.Errorf("%v printed:\n%s\nwant:\n%s", args, out, want)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(home, "clusters")); !os.IsNotExist(err) {
		t.Errorf("an omitted provider left state behind: %v", err)
	}
}

// The packages under internal/ are the bottom layer: none may import
// provider (a user error is internal/usererr's; docs/architecture.md).
func TestInternalImportsNoProvider(t *testing.T) {
	out := goCmd(t, nil, "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./internal/...")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 5 {
		t.Fatalf("go list ./internal/... listed %d packages; the listing is wrong:\n%s", len(lines), out)
	}
	for _, line := range lines {
		f := strings.Fields(line)
		for _, imp := range f[1:] {
			if imp == "github.com/clusterctl/clusterctl/provider" || strings.HasPrefix(imp, "github.com/clusterctl/clusterctl/provider/") {
				t.Errorf("%s imports %s", f[0], imp)
			}
		}
	}
}

// testKits are the packages that exist for tests only.
var testKits = []string{
	"github.com/clusterctl/clusterctl/internal/testkit",
	"github.com/clusterctl/clusterctl/internal/guesttest",
	"github.com/clusterctl/clusterctl/internal/sshtest",
	"github.com/clusterctl/clusterctl/internal/netnstest",
}

// Neither binary links a test kit: they are for tests only.
func TestBinariesLinkNoTestKit(t *testing.T) {
	for _, pkg := range []string{"./cmd/clusterctl", "./cmd/clusterctl-agent"} {
		list := deps(t, nil, "", pkg)
		if !dependsOn(list, "github.com/clusterctl/clusterctl/internal/agentconfig") {
			t.Fatalf("go list -deps %s does not show internal/agentconfig; the listing is wrong", pkg)
		}
		for _, kit := range testKits {
			if dependsOn(list, kit) {
				t.Errorf("%s links %s, which is for tests only", pkg, kit)
			}
		}
	}
}

package qemu

import (
	"errors"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

func parse(t *testing.T, text string) (Config, error) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("test YAML: %v", err)
	}
	if doc.Kind == 0 {
		return ParseConfig(provider.Env{})
	}
	return ParseConfig(provider.Env{Config: &doc})
}

// inputErrors unjoins err and checks every part is an *InputError with a Fix.
func inputErrors(t *testing.T, err error) []*usererr.InputError {
	t.Helper()
	if err == nil {
		t.Fatal("got nil error, want input errors")
	}
	parts := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts = j.Unwrap()
	}
	var out []*usererr.InputError
	for _, e := range parts {
		var ie *usererr.InputError
		if !errors.As(e, &ie) {
			t.Errorf("error %q is %T, want *usererr.InputError", e, e)
			continue
		}
		if ie.Fix == "" {
			t.Errorf("error %q has no Fix", e)
		}
		out = append(out, ie)
	}
	return out
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := parse(t, "image: /img/base.qcow2\n")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Binary: DefaultBinary, QemuImg: DefaultQemuImg, Image: "/img/base.qcow2",
		Accel: "auto", Machine: "q35", Bridge: "clusterbr0", CIDR: "192.168.56.0/24",
		Memory: 1024, CPUs: 1, PowerdownTimeout: 30 * time.Second,
	}
	want.prefix = cfg.prefix
	if cfg != want {
		t.Errorf("config:\n got %+v\nwant %+v", cfg, want)
	}
	if got := cfg.Prefix().String(); got != "192.168.56.0/24" {
		t.Errorf("prefix %s", got)
	}
	if cfg.Append != "" {
		t.Errorf("append %q without kernel, want empty", cfg.Append)
	}
}

func TestConfigKernelAppendDefault(t *testing.T) {
	cfg, err := parse(t, "image: /i.raw\nkernel: /k\ninitrd: /r\nmemory: 2048\ncpus: 2\naccel: tcg\npowerdown_timeout: 5s\ncidr: 10.9.0.0/16\nbridge: br9\n")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Append != DefaultAppend || cfg.Kernel != "/k" || cfg.Initrd != "/r" {
		t.Errorf("kernel/initrd/append: %q %q %q", cfg.Kernel, cfg.Initrd, cfg.Append)
	}
	if cfg.Memory != 2048 || cfg.CPUs != 2 || cfg.Accel != "tcg" || cfg.PowerdownTimeout != 5*time.Second ||
		cfg.Bridge != "br9" || cfg.Prefix().String() != "10.9.0.0/16" {
		t.Errorf("values not taken: %+v", cfg)
	}
}

func TestConfigRelativePathsBecomeAbsolute(t *testing.T) {
	cfg, err := parse(t, "image: images/base.raw\n")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cfg.Image, "/") || !strings.HasSuffix(cfg.Image, "/images/base.raw") {
		t.Errorf("image %q, want an absolute path", cfg.Image)
	}
}

func TestConfigUnknownKeys(t *testing.T) {
	_, err := parse(t, "image: /i.raw\nmemroy: 512\nfoo: bar\n")
	ies := inputErrors(t, err)
	if len(ies) != 1 {
		t.Fatalf("got %d errors, want one wrapping all unknown keys: %v", len(ies), err)
	}
	msg := err.Error()
	for _, want := range []string{`line 2: unknown key "memroy"`, `did you mean "memory"`, `line 3: unknown key "foo"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
}

func TestConfigBadValues(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // one substring per expected error
	}{
		{"missing image", "accel: tcg\n", []string{"image is required"}},
		{"empty section", "", []string{"image is required"}},
		{"bad accel", "image: /i\naccel: hvf\n", []string{`unknown accel "hvf"`}},
		{"bad format", "image: /i\nimage_format: iso\n", []string{`unknown image_format "iso"`}},
		{"bad cidr", "image: /i\ncidr: 192.168.56.0\n", []string{`cidr "192.168.56.0"`}},
		{"host bits", "image: /i\ncidr: 192.168.56.1/24\n", []string{"host bits"}},
		{"ipv6", "image: /i\ncidr: fd00::/64\n", []string{"not IPv4"}},
		{"tiny net", "image: /i\ncidr: 10.0.0.0/31\n", []string{"too small"}},
		{"memory", "image: /i\nmemory: 64\n", []string{"memory 64 MiB"}},
		{"cpus", "image: /i\ncpus: -1\n", []string{"cpus -1"}},
		{"bridge", "image: /i\nbridge: averyveryverylongbridge\n", []string{"bad bridge name"}},
		{"initrd alone", "image: /i\ninitrd: /r\n", []string{"kernel is not"}},
		{"append alone", "image: /i\nappend: quiet\n", []string{"append is set"}},
		{"machine", "image: /i\nmachine: q35,accel=kvm\n", []string{"bad machine"}},
		{"negative timeout", "image: /i\npowerdown_timeout: -1s\n", []string{"negative"}},
		{"all at once", "accel: x\nmemory: 1\ncpus: 100\ncidr: nope\n",
			[]string{"image is required", `unknown accel "x"`, `cidr "nope"`, "memory 1 MiB", "cpus 100"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, tt.yaml)
			ies := inputErrors(t, err)
			if len(ies) != len(tt.want) {
				t.Fatalf("got %d errors, want %d: %v", len(ies), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(ies[i].Error(), w) {
					t.Errorf("error %d %q does not contain %q", i, ies[i], w)
				}
			}
		})
	}
}

func TestConfigTypeError(t *testing.T) {
	_, err := parse(t, "image: /i\nmemory: lots\n")
	ies := inputErrors(t, err)
	if len(ies) != 1 || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("got %v, want one error naming line 2", err)
	}
}

func TestRegistered(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("image: /i.raw\n"), &doc); err != nil {
		t.Fatal(err)
	}
	p, err := provider.New("qemu", provider.Env{Cluster: "c", Dir: t.TempDir(), Config: &doc})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != "qemu" {
		t.Errorf("name %q", p.Name())
	}
	_, err = provider.New("qemu", provider.Env{Cluster: "c", Dir: t.TempDir()})
	inputErrors(t, err) // no image
}

// FuzzParseConfig checks that any YAML either parses into a valid config or
// fails with input errors, and never panics.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"image: /i.raw\n",
		"image: /i\nkernel: /k\ninitrd: /r\naccel: tcg\ncidr: 10.0.0.0/8\n",
		"memroy: 5\n",
		"image: [1, 2]\n",
		"cidr: 192.168.56.1/24\nmemory: -3\npowerdown_timeout: x\n",
		"- a\n- b\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		var doc yaml.Node
		if yaml.Unmarshal([]byte(text), &doc) != nil || doc.Kind == 0 {
			return
		}
		cfg, err := ParseConfig(provider.Env{Config: &doc})
		if err != nil {
			for _, e := range unjoin(err) {
				var ie *usererr.InputError
				if !errors.As(e, &ie) || ie.Fix == "" {
					t.Fatalf("error %q is not an input error with a fix", e)
				}
			}
			return
		}
		if cfg.Image == "" || !cfg.Prefix().IsValid() || cfg.Memory < 128 || cfg.CPUs < 1 ||
			(cfg.Accel != "auto" && cfg.Accel != "tcg" && cfg.Accel != "kvm") {
			t.Fatalf("invalid config accepted: %+v", cfg)
		}
	})
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestRelativePathsFollowTheConfigFile(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("image: img/disk.raw\nkernel: /abs/vmlinuz\n"), &doc); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(provider.Env{Config: &doc, ConfigDir: "/etc/clusters"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Image != "/etc/clusters/img/disk.raw" || cfg.Kernel != "/abs/vmlinuz" {
		t.Errorf("image %q, kernel %q: want the image relative to the config's directory and the kernel unchanged", cfg.Image, cfg.Kernel)
	}
}

package qemu

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/internal/strictyaml"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

// Defaults of the configuration keys.
const (
	DefaultBinary           = "qemu-system-x86_64"
	DefaultQemuImg          = "qemu-img"
	DefaultAppend           = "root=/dev/vda rw console=ttyS0"
	DefaultAccel            = "auto"
	DefaultMachine          = "q35"
	DefaultBridge           = "clusterbr0"
	DefaultCIDR             = "192.168.56.0/24"
	DefaultMemoryMiB        = 1024
	DefaultCPUs             = 1
	DefaultPowerdownTimeout = 30 * time.Second
)

// Config is the "qemu:" section of the cluster config. See the package
// documentation for what each key means.
type Config struct {
	Binary           string        `yaml:"binary"`
	QemuImg          string        `yaml:"qemu_img"`
	Image            string        `yaml:"image"`
	ImageFormat      string        `yaml:"image_format"`
	Kernel           string        `yaml:"kernel"`
	Initrd           string        `yaml:"initrd"`
	Append           string        `yaml:"append"`
	Accel            string        `yaml:"accel"`
	Machine          string        `yaml:"machine"`
	Bridge           string        `yaml:"bridge"`
	CIDR             string        `yaml:"cidr"`
	Memory           int           `yaml:"memory"`
	CPUs             int           `yaml:"cpus"`
	PowerdownTimeout time.Duration `yaml:"powerdown_timeout"`

	prefix netip.Prefix // parsed CIDR
}

const fixConfig = `edit the "qemu:" section of the cluster config`

// ParseConfig decodes the provider's config section strictly, fills in the
// defaults and validates the values. Every problem is reported at once, each
// as a *usererr.InputError.
//
// Relative paths (image, kernel, initrd) are taken relative to env.ConfigDir, the
// config file's directory, or to the working directory when it is "".
func ParseConfig(env provider.Env) (Config, error) {
	node, baseDir := env.Config, env.ConfigDir
	var cfg Config
	if err := strictyaml.Decode(node, &cfg); err != nil {
		return Config{}, &usererr.InputError{Err: fmt.Errorf("qemu config: %w", err), Fix: fixConfig}
	}
	cfg.setDefaults()
	if err := cfg.validate(baseDir); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func (c *Config) setDefaults() {
	provider.Default(&c.Binary, DefaultBinary)
	provider.Default(&c.QemuImg, DefaultQemuImg)
	provider.Default(&c.Accel, DefaultAccel)
	provider.Default(&c.Machine, DefaultMachine)
	provider.Default(&c.Bridge, DefaultBridge)
	provider.Default(&c.CIDR, DefaultCIDR)
	if c.Kernel != "" {
		provider.Default(&c.Append, DefaultAppend)
	}
	provider.Default(&c.Memory, DefaultMemoryMiB)
	provider.Default(&c.CPUs, DefaultCPUs)
	provider.Default(&c.PowerdownTimeout, DefaultPowerdownTimeout)
}

func (c *Config) validate(baseDir string) error {
	pr := provider.NewProblems("qemu", baseDir)

	if c.Image == "" {
		pr.Bad(`set "image:" to the path of a base disk image (raw or qcow2), e.g. the one test/e2e/build-image.sh builds`,
			"image is required")
	}
	pr.Abs("image", fixConfig, &c.Image)
	pr.Abs("kernel", fixConfig, &c.Kernel)
	pr.Abs("initrd", fixConfig, &c.Initrd)
	if c.Initrd != "" && c.Kernel == "" {
		pr.Bad(`set "kernel:" too, or remove "initrd:"`, "initrd %q is set but kernel is not", c.Initrd)
	}
	if c.Append != "" && c.Kernel == "" {
		pr.Bad(`set "kernel:" too, or remove "append:"`, "append is set but kernel is not (the command line is only used for direct-kernel boot)")
	}
	switch c.ImageFormat {
	case "", "raw", "qcow2", "vmdk", "vdi", "vhdx", "qed", "vpc":
	default:
		pr.Bad(`use image_format: raw or qcow2 (or leave it empty to detect it)`, "unknown image_format %q", c.ImageFormat)
	}
	switch c.Accel {
	case "auto", "tcg", "kvm":
	default:
		pr.Bad(`use accel: auto, tcg or kvm`, "unknown accel %q", c.Accel)
	}
	if strings.ContainsAny(c.Machine, ", \t") {
		pr.Bad(`use a machine type name such as q35 or pc`, "bad machine %q", c.Machine)
	}
	if len(c.Bridge) > 15 || strings.ContainsAny(c.Bridge, "/ \t") {
		pr.Bad(`use the name of an existing Linux bridge (at most 15 characters)`, "bad bridge name %q", c.Bridge)
	}
	p, err := netip.ParsePrefix(c.CIDR)
	switch {
	case err != nil:
		pr.Bad(`use cidr: NETWORK/PREFIXLEN, e.g. 192.168.56.0/24`, "cidr %q: %v", c.CIDR, err)
	case !p.Addr().Is4():
		pr.Bad(`use an IPv4 network, e.g. 192.168.56.0/24`, "cidr %q is not IPv4", c.CIDR)
	case p.Bits() > 30:
		pr.Bad(`use a network with room for nodes, e.g. a /24`, "cidr %q is too small", c.CIDR)
	case p.Masked() != p:
		pr.Bad(fmt.Sprintf("use cidr: %s", p.Masked()), "cidr %q has host bits set", c.CIDR)
	default:
		c.prefix = p
	}
	if c.Memory < 128 {
		pr.Bad(`set memory: to at least 128 (MiB); 1024 is a good start`, "memory %d MiB is too small", c.Memory)
	}
	if c.CPUs < 1 || c.CPUs > 64 {
		pr.Bad(`set cpus: between 1 and 64`, "cpus %d is out of range", c.CPUs)
	}
	if c.PowerdownTimeout < 0 {
		pr.Bad(`set powerdown_timeout: to a duration like 30s`, "powerdown_timeout %s is negative", c.PowerdownTimeout)
	}
	return pr.Err()
}

// Prefix is the parsed cidr.
func (c Config) Prefix() netip.Prefix { return c.prefix }

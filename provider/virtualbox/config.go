package virtualbox

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/internal/strictyaml"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/localvm"
)

// EnvVBoxManage names the environment variable that, when set, is the path
// of VBoxManage. It wins over the vboxmanage: key.
const EnvVBoxManage = "CLUSTERCTL_VBOXMANAGE"

// Defaults of the configuration keys.
const (
	DefaultClone            = CloneLinked
	DefaultOSType           = "Debian_64"
	DefaultController       = "sata"
	DefaultHostOnly         = "auto"
	DefaultCIDR             = "192.168.56.0/24"
	DefaultMemoryMiB        = 1024
	DefaultCPUs             = 1
	DefaultPowerdownTimeout = 30 * time.Second
	DefaultCommandTimeout   = 2 * time.Minute
)

// The clone modes.
const (
	// CloneLinked makes each node's disk a VDI differencing image whose
	// parent is the base image (createmedium --diffparent): a few KiB are
	// written per node, whatever the size of the base.
	CloneLinked = "linked"
	// CloneFull copies the base image to a standalone VDI per node
	// (clonemedium): the node no longer depends on the base file.
	CloneFull = "full"
)

// Limits VirtualBox and a cloud image put on a node's size.
const (
	MinMemoryMiB = 256     // cloud-init on Debian/Ubuntu does not finish with less
	MaxMemoryMiB = 2097152 // VirtualBox's maximum guest RAM (2 TiB)
	MaxCPUs      = 64      // VirtualBox's maximum guest CPU count
)

// Config is the "virtualbox:" section of the cluster config. See the
// package documentation for what each key means.
type Config struct {
	VBoxManage       string        `yaml:"vboxmanage"`
	Image            string        `yaml:"image"`
	Clone            string        `yaml:"clone"`
	OSType           string        `yaml:"ostype"`
	Controller       string        `yaml:"controller"`
	HostOnly         string        `yaml:"hostonly"`
	HostOnlyName     string        `yaml:"hostonly_name"`
	CIDR             string        `yaml:"cidr"`
	HostAddress      string        `yaml:"host_address"`
	Memory           int           `yaml:"memory"`
	CPUs             int           `yaml:"cpus"`
	PowerdownTimeout time.Duration `yaml:"powerdown_timeout"`
	CommandTimeout   time.Duration `yaml:"command_timeout"`

	prefix netip.Prefix
	host   netip.Addr
}

const fixConfig = `edit the "virtualbox:" section of the cluster config`

// ParseConfig decodes the provider's config section strictly, fills in the
// defaults and validates the values. Relative paths are taken relative to
// env.ConfigDir ("" = the working directory). Every problem is reported at once,
// each as a *usererr.InputError.
func ParseConfig(env provider.Env) (Config, error) {
	node, configDir := env.Config, env.ConfigDir
	var cfg Config
	if err := strictyaml.Decode(node, &cfg); err != nil {
		return Config{}, &usererr.InputError{Err: fmt.Errorf("virtualbox config: %w", err), Fix: fixConfig}
	}
	cfg.setDefaults()
	if err := cfg.validate(configDir); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func (c *Config) setDefaults() {
	provider.Default(&c.Clone, DefaultClone)
	provider.Default(&c.OSType, DefaultOSType)
	provider.Default(&c.Controller, DefaultController)
	provider.Default(&c.HostOnly, DefaultHostOnly)
	provider.Default(&c.CIDR, DefaultCIDR)
	provider.Default(&c.Memory, DefaultMemoryMiB)
	provider.Default(&c.CPUs, DefaultCPUs)
	provider.Default(&c.PowerdownTimeout, DefaultPowerdownTimeout)
	provider.Default(&c.CommandTimeout, DefaultCommandTimeout)
}

func (c *Config) validate(configDir string) error {
	pr := provider.NewProblems("virtualbox", configDir)

	if c.Image == "" {
		pr.Bad(`set "image:" to the path of a base disk in VDI format (see docs/virtualbox.md: base image)`, "image is required")
	}
	pr.Abs("image", fixConfig, &c.Image)
	if c.VBoxManage != "" && strings.ContainsAny(c.VBoxManage, `/\`) {
		pr.Abs("vboxmanage", fixConfig, &c.VBoxManage)
	}
	switch c.Clone {
	case CloneLinked, CloneFull:
	default:
		pr.Bad(`use clone: linked (a differencing disk per node) or full (a copy per node)`, "unknown clone %q", c.Clone)
	}
	if !isIdent(c.OSType) {
		pr.Bad(`use a VirtualBox OS type id such as Debian_64 or Ubuntu_64 (VBoxManage list ostypes)`, "bad ostype %q", c.OSType)
	}
	switch c.Controller {
	case "sata", "virtio":
	default:
		pr.Bad(`use controller: sata (AHCI; Debian "generic" and Ubuntu images) or virtio (virtio-scsi; VirtualBox 6.1 or later)`, "unknown controller %q", c.Controller)
	}
	switch c.HostOnly {
	case "auto", "hostonlyif", "hostonlynet":
	default:
		pr.Bad(`use hostonly: auto, hostonlyif (VirtualBox 6, and 7 on Linux/Windows) or hostonlynet (VirtualBox 7 on macOS)`, "unknown hostonly %q", c.HostOnly)
	}
	if c.HostOnlyName != "" && (len(c.HostOnlyName) > 64 || strings.ContainsAny(c.HostOnlyName, "/\\\"' \t\n")) {
		pr.Bad(`use the name of a host-only interface such as vboxnet0, or leave hostonly_name empty`, "bad hostonly_name %q", c.HostOnlyName)
	}
	p, err := netip.ParsePrefix(c.CIDR)
	switch {
	case err != nil:
		pr.Bad(`use cidr: NETWORK/PREFIXLEN, e.g. 192.168.56.0/24`, "cidr %q: %v", c.CIDR, err)
	case !p.Addr().Is4():
		pr.Bad(`use an IPv4 network, e.g. 192.168.56.0/24`, "cidr %q is not IPv4", c.CIDR)
	case p.Bits() < 8 || p.Bits() > 28:
		pr.Bad(`use a network between /8 and /28, e.g. a /24`, "cidr %q: prefix length /%d is not usable for a host-only network", c.CIDR, p.Bits())
	case p.Masked() != p:
		pr.Bad(fmt.Sprintf("use cidr: %s", p.Masked()), "cidr %q has host bits set", c.CIDR)
	default:
		c.prefix = p
	}
	if c.prefix.IsValid() {
		if c.HostAddress == "" {
			c.host = c.prefix.Addr().Next()
		} else if a, err := netip.ParseAddr(c.HostAddress); err != nil {
			pr.Bad(`use host_address: an IPv4 address in cidr, e.g. 192.168.56.1`, "host_address %q: %v", c.HostAddress, err)
		} else if !c.prefix.Contains(a) || a == c.prefix.Addr() || a == localvm.Broadcast(c.prefix) {
			pr.Bad(fmt.Sprintf("use a host address inside %s, e.g. %s", c.prefix, c.prefix.Addr().Next()), "host_address %s is not a host address of cidr %s", a, c.prefix)
		} else {
			c.host = a
		}
	}
	pr.Add(checkSize("", c.Memory, c.CPUs)...)
	if c.PowerdownTimeout < 0 {
		pr.Bad(`set powerdown_timeout: to a duration like 30s`, "powerdown_timeout %s is negative", c.PowerdownTimeout)
	}
	if c.CommandTimeout < time.Second {
		pr.Bad(`set command_timeout: to a duration like 2m`, "command_timeout %s is too short", c.CommandTimeout)
	}
	return pr.Err()
}

// checkSize checks a node's memory (MiB) and CPU count against what
// VirtualBox and a cloud image accept. who names the node ("" = the config).
func checkSize(who string, memory, cpus int) []error {
	var errs []error
	where := "virtualbox config: "
	if who != "" {
		where = fmt.Sprintf("virtualbox: node %q: ", who)
	}
	if memory < MinMemoryMiB || memory > MaxMemoryMiB {
		errs = append(errs, usererr.BadInput(fmt.Sprintf("set the memory (MiB) between %d and %d; 1024 is a good start", MinMemoryMiB, MaxMemoryMiB),
			"%smemory %d MiB is out of range", where, memory))
	}
	if cpus < 1 || cpus > MaxCPUs {
		errs = append(errs, usererr.BadInput(fmt.Sprintf("set cpus between 1 and %d (VirtualBox's maximum)", MaxCPUs),
			"%scpus %d is out of range", where, cpus))
	}
	return errs
}

// Prefix is the parsed cidr.
func (c Config) Prefix() netip.Prefix { return c.prefix }

// Host is the host's address on the host-only network.
func (c Config) Host() netip.Addr { return c.host }

func isIdent(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// netmask returns the dotted netmask of p ("255.255.255.0").
func netmask(p netip.Prefix) string {
	var m [4]byte
	for i := 0; i < p.Bits(); i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(m).String()
}

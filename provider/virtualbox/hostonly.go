package virtualbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

// hostOnly is the host-only network the nodes' second NIC is attached to.
type hostOnly struct {
	Kind string // "hostonlyif" or "hostonlynet"
	Name string // vboxnet0, or the host-only network's name
}

// modifyvmArgs attaches NIC n to the network.
func (h hostOnly) modifyvmArgs(n int) []string {
	if h.Kind == "hostonlynet" {
		return []string{fmt.Sprintf("--nic%d", n), "hostonlynet", fmt.Sprintf("--host-only-net%d", n), h.Name}
	}
	return []string{fmt.Sprintf("--nic%d", n), "hostonly", fmt.Sprintf("--hostonlyadapter%d", n), h.Name}
}

// defaultNetName is the name clusterctl gives a host-only network it makes
// (VirtualBox 7, hostonlynet); host-only interfaces are named by VirtualBox.
const defaultNetName = "clusterctl"

// hostOnlyKind resolves hostonly: auto from the platform and the
// VirtualBox version: VirtualBox 7 on macOS has host-only networks only.
func (p *Provider) hostOnlyKind(ctx context.Context, r *runner) (string, error) {
	if p.cfg.HostOnly != "auto" {
		return p.cfg.HostOnly, nil
	}
	if p.goos != "darwin" {
		return "hostonlyif", nil
	}
	major, err := vboxMajor(ctx, r)
	if err != nil {
		return "", err
	}
	if major >= 7 {
		return "hostonlynet", nil
	}
	return "hostonlyif", nil
}

// vboxMajor runs VBoxManage --version ("7.0.14r161095") and returns 7.
func vboxMajor(ctx context.Context, r *runner) (int, error) {
	out, err := r.run(ctx, "--version")
	if err != nil {
		return 0, err
	}
	v := strings.TrimSpace(out)
	if i := strings.LastIndexByte(v, '\n'); i >= 0 {
		v = v[i+1:] // warnings may come first
	}
	major, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return 0, fmt.Errorf("virtualbox: cannot read the version from VBoxManage --version: %q", strings.TrimSpace(out))
	}
	return n, nil
}

// findHostOnly looks for the configured host-only network without changing
// anything. ok is false when it does not exist (yet).
func (p *Provider) findHostOnly(ctx context.Context, r *runner, kind string) (h hostOnly, ok bool, err error) {
	c := p.cfg
	mask := netmask(c.Prefix())
	h.Kind = kind
	if kind == "hostonlynet" {
		out, err := r.run(ctx, "list", "hostonlynets")
		if err != nil {
			return h, false, err
		}
		want := c.HostOnlyName
		for _, rec := range parseRecords(out, "Name") {
			name, lower := rec["Name"], rec["LowerIP"]
			if (want != "" && name == want) || (want == "" && (name == defaultNetName || lower == c.Host().String())) {
				if lower != c.Host().String() || rec["NetworkMask"] != mask {
					return h, false, usererr.BadInput(
						fmt.Sprintf("set cidr: and host_address: to the network's (%s, mask %s), or change it: VBoxManage hostonlynet modify --name=%s --lower-ip=%s --netmask=%s",
							lower, rec["NetworkMask"], name, c.Host(), mask),
						"virtualbox: host-only network %q has host address %s mask %s, the config wants %s mask %s", name, lower, rec["NetworkMask"], c.Host(), mask)
				}
				h.Name = name
				return h, true, nil
			}
		}
		return h, false, nil
	}
	out, err := r.run(ctx, "list", "hostonlyifs")
	if err != nil {
		return h, false, err
	}
	for _, rec := range parseRecords(out, "Name") {
		name, ip := rec["Name"], rec["IPAddress"]
		if c.HostOnlyName != "" && name != c.HostOnlyName {
			continue
		}
		if c.HostOnlyName == "" && ip != c.Host().String() {
			continue
		}
		if ip != c.Host().String() || rec["NetworkMask"] != mask {
			return h, false, usererr.BadInput(
				fmt.Sprintf("set cidr: and host_address: to the interface's, or change it: VBoxManage hostonlyif ipconfig %s --ip %s --netmask %s", name, c.Host(), mask),
				"virtualbox: host-only interface %q has address %s mask %s, the config wants %s mask %s", name, ip, rec["NetworkMask"], c.Host(), mask)
		}
		h.Name = name
		return h, true, nil
	}
	return h, false, nil
}

// hostOnlyIfCreate makes a host-only interface; VirtualBox names it
// (vboxnetN) and says so in its output (createdIf).
var hostOnlyIfCreate = []string{"hostonlyif", "create"}

// hostOnlyIfIPConfig gives the host-only interface name the host address
// and the mask of cidr.
func (p *Provider) hostOnlyIfIPConfig(name string) []string {
	return []string{"hostonlyif", "ipconfig", name, "--ip", p.cfg.Host().String(), "--netmask", netmask(p.cfg.Prefix())}
}

// hostOnlyNetAdd makes the host-only network name (VirtualBox 7). The host
// takes the lowest address of the range; nodes get static addresses from
// .10 up (cluster.allocate), outside the range VirtualBox's DHCP hands out.
func (p *Provider) hostOnlyNetAdd(name string) []string {
	c := p.cfg
	upper := c.Host()
	for i := 0; i < 8 && c.Prefix().Contains(upper.Next()); i++ {
		upper = upper.Next()
	}
	return []string{"hostonlynet", "add", "--name=" + name, "--netmask=" + netmask(c.Prefix()),
		"--lower-ip=" + c.Host().String(), "--upper-ip=" + upper.String(), "--enable"}
}

// errNoInterface is the error for a configured host-only interface that
// does not exist: clusterctl only creates interfaces VirtualBox names.
func errNoInterface(name string) error {
	return usererr.BadInput(
		"remove hostonly_name: to let clusterctl create an interface, or create one (VBoxManage hostonlyif create) and name it here",
		"virtualbox: host-only interface %q does not exist", name)
}

var createdIf = regexp.MustCompile(`Interface '([^']+)' was successfully created`)

// ensureHostOnly finds the host-only network or makes it: a new host-only
// interface with the host address (VirtualBox names it vboxnetN), or on
// VirtualBox 7/macOS a host-only network whose lowest address, the host's,
// is host_address. The address range VirtualBox allows is checked first.
func (p *Provider) ensureHostOnly(ctx context.Context, r *runner) (hostOnly, error) {
	p.netMu.Lock()
	defer p.netMu.Unlock()
	if p.net != nil {
		return *p.net, nil
	}
	kind, err := p.hostOnlyKind(ctx, r)
	if err != nil {
		return hostOnly{}, err
	}
	h, ok, err := p.findHostOnly(ctx, r, kind)
	if err != nil {
		return h, err
	}
	if !ok {
		if err := p.checkAllowedRange(); err != nil {
			return h, err
		}
		c := p.cfg
		if kind == "hostonlynet" {
			h.Name = c.HostOnlyName
			if h.Name == "" {
				h.Name = defaultNetName
			}
			if _, err := r.run(ctx, p.hostOnlyNetAdd(h.Name)...); err != nil {
				return h, fmt.Errorf("virtualbox: create host-only network %q: %w", h.Name, err)
			}
		} else {
			if c.HostOnlyName != "" {
				return h, errNoInterface(c.HostOnlyName)
			}
			out, err := r.run(ctx, hostOnlyIfCreate...)
			if err != nil {
				return h, fmt.Errorf("virtualbox: create a host-only interface: %w", err)
			}
			m := createdIf.FindStringSubmatch(out)
			if m == nil {
				return h, fmt.Errorf("virtualbox: hostonlyif create: cannot find the new interface's name in %q", strings.TrimSpace(out))
			}
			h.Name = m[1]
			if _, err := r.run(ctx, p.hostOnlyIfIPConfig(h.Name)...); err != nil {
				return h, fmt.Errorf("virtualbox: give host-only interface %q the address %s: %w", h.Name, c.Host(), err)
			}
		}
	}
	p.net = &h
	return h, nil
}

// networksConf is where VirtualBox (6.1.28 and later, on Linux, macOS and
// Solaris) reads the address ranges host-only networks may use.
const networksConf = "/etc/vbox/networks.conf"

// defaultAllowed is what VirtualBox allows without networks.conf.
var defaultAllowed = netip.MustParsePrefix("192.168.56.0/21")

// allowedRanges returns the IPv4 ranges VirtualBox allows host-only
// networks in: the "* A/B C/D" lines of networks.conf, or 192.168.56.0/21.
func allowedRanges(path string) ([]netip.Prefix, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return []netip.Prefix{defaultAllowed}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []netip.Prefix
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "*" {
			continue
		}
		for _, s := range fields[1:] {
			if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
				out = append(out, p.Masked())
			}
		}
	}
	return out, sc.Err()
}

// checkAllowedRange fails when cidr is outside the ranges VirtualBox will
// accept, before VirtualBox refuses it with an access-denied error.
func (p *Provider) checkAllowedRange() error {
	if p.goos == "windows" {
		return nil // no such restriction on Windows hosts
	}
	ranges, err := allowedRanges(p.networksConf)
	if err != nil {
		return fmt.Errorf("virtualbox: read %s: %w", p.networksConf, err)
	}
	cidr := p.cfg.Prefix()
	for _, r := range ranges {
		if r.Bits() <= cidr.Bits() && r.Contains(cidr.Addr()) {
			return nil
		}
	}
	var names []string
	for _, r := range ranges {
		names = append(names, r.String())
	}
	return usererr.BadInput(fixNetworksConf,
		"virtualbox: cidr %s is outside the ranges VirtualBox allows for host-only networks (%s, from %s or VirtualBox's default)",
		cidr, strings.Join(names, ", "), p.networksConf)
}

// hostRoute is a network the host reaches through one of its interfaces.
type hostRoute struct {
	Dev    string
	Prefix netip.Prefix
}

// systemRoutes lists the networks of the host's interface addresses and,
// on Linux, its routing table (default routes left out).
func systemRoutes() ([]hostRoute, error) {
	var out []hostRoute
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				ip, ok := netip.AddrFromSlice(ipn.IP)
				ones, _ := ipn.Mask.Size()
				if ok && ip.Unmap().Is4() && !ip.IsLoopback() {
					out = append(out, hostRoute{Dev: ifc.Name, Prefix: netip.PrefixFrom(ip.Unmap(), ones).Masked()})
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/net/route"); err == nil {
		out = append(out, parseProcRoute(string(b))...)
	}
	return out, nil
}

// parseProcRoute reads Linux's /proc/net/route: destination and mask are
// little-endian hex. Default routes are left out.
func parseProcRoute(s string) []hostRoute {
	var out []hostRoute
	for i, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 8 {
			continue
		}
		dst, err1 := strconv.ParseUint(f[1], 16, 32)
		mask, err2 := strconv.ParseUint(f[7], 16, 32)
		if err1 != nil || err2 != nil || mask == 0 {
			continue
		}
		le := func(v uint64) netip.Addr {
			return netip.AddrFrom4([4]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)})
		}
		bits, _ := net.IPMask(le(mask).AsSlice()).Size()
		out = append(out, hostRoute{Dev: f[0], Prefix: netip.PrefixFrom(le(dst), bits).Masked()})
	}
	return out
}

// checkRoutes fails when cidr overlaps a network the host already reaches
// through another interface than the host-only one (hostIf, "" if none).
// When the host-only network exists (found), a route of exactly cidr is
// taken to be its own: on macOS its interface has a name of the system's
// (bridge100), not VirtualBox's.
func (p *Provider) checkRoutes(hostIf string, found bool) error {
	routes, err := p.routes()
	if err != nil {
		return fmt.Errorf("virtualbox: list the host's routes: %w", err)
	}
	cidr := p.cfg.Prefix()
	for _, r := range routes {
		if r.Dev == hostIf || r.Prefix.Bits() == 0 || !r.Prefix.Overlaps(cidr) || (found && r.Prefix == cidr) {
			continue
		}
		return usererr.BadInput(
			"choose another cidr: for the host-only network, one no interface of this machine uses (e.g. 192.168.57.0/24 or 192.168.58.0/24, inside VirtualBox's default 192.168.56.0/21)",
			"virtualbox: cidr %s collides with the host's network %s on %s", cidr, r.Prefix, r.Dev)
	}
	return nil
}

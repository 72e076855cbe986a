// hostonlyif and hostonlynet (VBoxManageHostonly.cpp).

package vboxtest

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

func allowed(conf string, p netip.Prefix) bool {
	ranges := []netip.Prefix{netip.MustParsePrefix("192.168.56.0/21")}
	if conf != "" {
		if b, err := os.ReadFile(conf); err == nil {
			ranges = nil
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Fields(line)
				if len(f) < 2 || f[0] != "*" {
					continue
				}
				for _, s := range f[1:] {
					if q, err := netip.ParsePrefix(s); err == nil {
						ranges = append(ranges, q.Masked())
					}
				}
			}
		}
	}
	for _, r := range ranges {
		if r.Bits() <= p.Bits() && r.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func maskBits(mask string) (int, error) {
	a, err := netip.ParseAddr(mask)
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("bad netmask %q", mask)
	}
	v := binary.BigEndian.Uint32(a.AsSlice())
	bits := 0
	for v&0x80000000 != 0 {
		bits++
		v <<= 1
	}
	if v != 0 {
		return 0, fmt.Errorf("bad netmask %q", mask)
	}
	return bits, nil
}

func cmdHostOnlyIf(r *Registry, args []string) (string, error) {
	if len(args) == 0 {
		return "", syntaxErr("Not enough parameters")
	}
	switch args[0] {
	case "create":
		if len(args) > 1 {
			return "", syntaxErr("Too many parameters")
		}
		if r.Faults.NoNetCtl {
			f := comErr("Failed to create the host-only adapter", "NS_ERROR_FAILURE", "HostNetworkInterfaceWrap", "IHostNetworkInterface", "RTEXITCODE handleCreate(HandlerArg *)", "VBoxManageHostonly.cpp")
			f.lines = append([]string{f.lines[0], "VBoxManage: error: VBoxNetAdpCtl: Error while adding new interface: failed to open /dev/vboxnetctl: No such file or directory"}, f.lines[1:]...)
			return "0%...\nProgress state: NS_ERROR_FAILURE\n", f
		}
		n := 0
		for ; ; n++ {
			taken := false
			for _, h := range r.HostOnlyIfs {
				taken = taken || h.Name == fmt.Sprintf("vboxnet%d", n)
			}
			if !taken {
				break
			}
		}
		h := &HostOnlyIf{Name: fmt.Sprintf("vboxnet%d", n), IP: fmt.Sprintf("192.168.%d.1", 56+n), Netmask: "255.255.255.0"}
		r.HostOnlyIfs = append(r.HostOnlyIfs, h)
		return progress + fmt.Sprintf("Interface '%s' was successfully created\n", h.Name), nil
	case "remove":
		if len(args) != 2 {
			return "", syntaxErr("Not enough parameters")
		}
		for i, h := range r.HostOnlyIfs {
			if h.Name == args[1] {
				r.HostOnlyIfs = append(r.HostOnlyIfs[:i], r.HostOnlyIfs[i+1:]...)
				return progress, nil
			}
		}
		return "", comErr(fmt.Sprintf("Could not find interface '%s'", args[1]), "E_INVALIDARG", "HostWrap", "IHost", "FindHostNetworkInterfaceByName", "VBoxManageHostonly.cpp")
	case "ipconfig":
		if len(args) < 2 {
			return "", syntaxErr("Not enough parameters")
		}
		p, err := parseOpts(args[2:], map[string]int{"--dhcp": 0, "--ip": 1, "--netmask": 1, "--ipv6": 1, "--netmasklengthv6": 1})
		if err != nil {
			return "", err
		}
		var h *HostOnlyIf
		for _, x := range r.HostOnlyIfs {
			if x.Name == args[1] {
				h = x
			}
		}
		if h == nil {
			return "", comErr(fmt.Sprintf("Could not find interface '%s'", args[1]), "E_INVALIDARG", "HostWrap", "IHost", "FindHostNetworkInterfaceByName(Bstr(pszName).raw(), hif.asOutParam())", "VBoxManageHostonly.cpp")
		}
		if !p.has("--ip") {
			return "", syntaxErr("--ip or --dhcp is required")
		}
		ip, err := netip.ParseAddr(p.get("--ip"))
		if err != nil || !ip.Is4() {
			return "", syntaxErr("Invalid IP address '%s'", p.get("--ip"))
		}
		mask := p.get("--netmask")
		if mask == "" {
			mask = "255.255.255.0"
		}
		bits, err := maskBits(mask)
		if err != nil {
			return "", syntaxErr("Invalid netmask '%s'", mask)
		}
		if !allowed(r.Faults.NetworksConf, netip.PrefixFrom(ip, bits).Masked()) {
			return "", &failure{code: exitFailure, lines: []string{
				"VBoxManage: error: Code E_ACCESSDENIED (0x80070005) - Access denied (extended info not available)",
				"VBoxManage: error: Context: \"EnableStaticIPConfig(Bstr(pszIp).raw(), Bstr(pszNetmask).raw())\" at line 242 of file VBoxManageHostonly.cpp",
			}}
		}
		h.IP, h.Netmask = ip.String(), mask
		return "", nil
	}
	return "", syntaxErr("Invalid parameter '%s'", args[0])
}

func cmdHostOnlyNet(r *Registry, args []string) (string, error) {
	if len(args) == 0 {
		return "", syntaxErr("Not enough parameters")
	}
	v := r.Faults.Version
	if v != "" && !strings.HasPrefix(v, "7.") {
		return "", syntaxErr("Invalid command 'hostonlynet'")
	}
	switch args[0] {
	case "add":
		p, err := parseOpts(args[1:], map[string]int{"--name": 1, "--id": 1, "--netmask": 1, "--lower-ip": 1, "--upper-ip": 1, "--enable": 0, "--disable": 0})
		if err != nil {
			return "", err
		}
		if len(p.pos) > 0 {
			return "", syntaxErr("Invalid parameter '%s'", p.pos[0])
		}
		name, mask, lo, hi := p.get("--name"), p.get("--netmask"), p.get("--lower-ip"), p.get("--upper-ip")
		if name == "" || mask == "" || lo == "" || hi == "" {
			return "", syntaxErr("The --name, --netmask, --lower-ip and --upper-ip options are mandatory")
		}
		for _, h := range r.HostOnlyNets {
			if h.Name == name {
				return "", comErr(fmt.Sprintf("Host-only network '%s' already exists", name), "E_INVALIDARG", "VirtualBoxWrap", "IVirtualBox", "CreateHostOnlyNetwork", "VBoxManageHostonly.cpp")
			}
		}
		bits, err := maskBits(mask)
		lower, err1 := netip.ParseAddr(lo)
		upper, err2 := netip.ParseAddr(hi)
		if err != nil || err1 != nil || err2 != nil || upper.Less(lower) {
			return "", syntaxErr("Invalid network mask or address range")
		}
		pfx := netip.PrefixFrom(lower, bits).Masked()
		if !pfx.Contains(upper) {
			return "", syntaxErr("Invalid network mask or address range")
		}
		if !allowed(r.Faults.NetworksConf, pfx) {
			return "", comErr("Access denied (extended info not available)", "E_ACCESSDENIED", "HostOnlyNetworkWrap", "IHostOnlyNetwork", "COMSETTER(LowerIP)(Bstr(pszLowerIp).raw())", "VBoxManageHostonly.cpp")
		}
		r.HostOnlyNets = append(r.HostOnlyNets, &HostOnlyNet{Name: name, UUID: newUUID(), Netmask: mask, LowerIP: lo, UpperIP: hi, Enabled: !p.has("--disable")})
		return "", nil
	case "remove":
		p, err := parseOpts(args[1:], map[string]int{"--name": 1, "--id": 1})
		if err != nil {
			return "", err
		}
		for i, h := range r.HostOnlyNets {
			if h.Name == p.get("--name") || h.UUID == p.get("--id") {
				r.HostOnlyNets = append(r.HostOnlyNets[:i], r.HostOnlyNets[i+1:]...)
				return "", nil
			}
		}
		return "", comErr("Host-only network not found", "VBOX_E_OBJECT_NOT_FOUND", "VirtualBoxWrap", "IVirtualBox", "FindHostOnlyNetworkByName", "VBoxManageHostonly.cpp")
	}
	return "", syntaxErr("Invalid parameter '%s'", args[0])
}

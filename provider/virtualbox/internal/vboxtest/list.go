// list and showvminfo (VBoxManageList.cpp, VBoxManageInfo.cpp).

package vboxtest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

func cmdList(r *Registry, args []string) (string, error) {
	p, err := parseOpts(args, map[string]int{"--long": 0, "-l": 0, "--sorted": 0, "-s": 0})
	if err != nil {
		return "", err
	}
	if len(p.pos) != 1 {
		return "", syntaxErr("Missing or too many parameters")
	}
	var b strings.Builder
	switch p.pos[0] {
	case "vms", "runningvms":
		for _, m := range r.Machines {
			if p.pos[0] == "runningvms" && !running(m) {
				continue
			}
			fmt.Fprintf(&b, "\"%s\" {%s}\n", m.Name, m.UUID)
		}
	case "hostonlyifs":
		// listNetworkInterfaces (VBoxManageList.cpp): every record ends
		// with "VBoxNetworkName: ...\n\n".
		for i, h := range r.HostOnlyIfs {
			fmt.Fprintf(&b, "Name:            %s\nGUID:            %s\nDHCP:            Disabled\nIPAddress:       %s\nNetworkMask:     %s\n"+
				"IPV6Address:     \nIPV6NetworkMaskPrefixLength: 0\nHardwareAddress: 0a:00:27:00:00:%02x\nMediumType:      Ethernet\nWireless:        No\n"+
				"Status:          Up\nVBoxNetworkName: HostInterfaceNetworking-%s\n\n",
				h.Name, "786f6276-656e-4074-8000-0a00270000"+fmt.Sprintf("%02x", i), h.IP, h.Netmask, i, h.Name)
		}
	case "hostonlynets":
		if v := r.Faults.Version; v != "" && !strings.HasPrefix(v, "7.") {
			return "", syntaxErr("Invalid parameter 'hostonlynets'")
		}
		// listHostOnlyNetworks (VBoxManageList.cpp, VirtualBox 7): a blank
		// line after the GUID line inside each record, and one after it.
		for _, h := range r.HostOnlyNets {
			state := "Enabled"
			if !h.Enabled {
				state = "Disabled"
			}
			fmt.Fprintf(&b, "Name:            %s\nGUID:            %s\n\nState:           %s\nNetworkMask:     %s\nLowerIP:         %s\nUpperIP:         %s\nVBoxNetworkName: hostonly-%s\n\n",
				h.Name, h.UUID, state, h.Netmask, h.LowerIP, h.UpperIP, h.Name)
		}
	case "hdds", "dvds":
		// listMedia (VBoxManageList.cpp): the base media, each followed by
		// a blank line and then, depth first, its children with their
		// parent's UUID; the fields as showMediumInfo (VBoxManageDisk.cpp)
		// prints them.
		kind := "hdd"
		if p.pos[0] == "dvds" {
			kind = "dvd"
		}
		for _, md := range r.Media {
			if md.Kind == kind && (md.Parent == "" || r.mediumByUUID(md.Parent) == nil) {
				r.listMedium(&b, md, "base")
			}
		}
	default:
		return "", syntaxErr("Unknown subcommand '%s'", p.pos[0])
	}
	return b.String(), nil
}

// mrQuote quotes a --machinereadable string value.
func mrQuote(s string) string {
	return `"` + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`) + `"`
}

func cmdShowVMInfo(r *Registry, args []string) (string, error) {
	p, err := parseOpts(args, map[string]int{"--machinereadable": 0, "--details": 0, "--log": 1})
	if err != nil {
		return "", err
	}
	if len(p.pos) != 1 {
		return "", syntaxErr("Incorrect number of parameters")
	}
	m, err := r.machine(p.pos[0])
	if err != nil {
		return "", err
	}
	if m.ShuttingDown > 0 {
		// Time passes for a guest shutting down after the ACPI button.
		if m.ShuttingDown--; m.ShuttingDown == 0 {
			powerOff(m, r.Faults.SessionRelease)
		}
	}
	if !p.has("--machinereadable") {
		return fmt.Sprintf("Name:                        %s\nGroups:                      %s\nUUID:                        %s\nConfig file:                 %s\nMemory size:                 %dMB\nNumber of CPUs:              %d\nState:                       %s (since %s)\n",
			m.Name, strings.Join(m.Groups, ","), m.UUID, m.CfgFile, m.Memory, m.CPUs, stateLong[m.State], m.StateSince.Format(time.RFC3339Nano)), nil
	}
	dir := filepath.Dir(m.CfgFile)
	var b strings.Builder
	kv := func(k, v string) { fmt.Fprintf(&b, "%s=%s\n", k, mrQuote(v)) }
	kv("name", m.Name)
	kv("groups", strings.Join(m.Groups, ","))
	kv("ostype", osTypes[m.OSType])
	kv("UUID", m.UUID)
	kv("CfgFile", m.CfgFile)
	kv("SnapFldr", filepath.Join(dir, "Snapshots"))
	kv("LogFldr", filepath.Join(dir, "Logs"))
	fmt.Fprintf(&b, "memory=%d\n", m.Memory)
	kv("firmware", "BIOS")
	fmt.Fprintf(&b, "cpus=%d\n", m.CPUs)
	for i, d := range m.Boot {
		fmt.Fprintf(&b, "boot%d=%s\n", i+1, mrQuote(d))
	}
	kv("ioapic", m.IOAPIC)
	kv("rtcuseutc", m.RTCUseUTC)
	kv("VMState", m.State)
	if locked(m) {
		// VBoxManageInfo.cpp prints the session's name while the session
		// state is not Unlocked.
		kv("SessionName", "headless")
	}
	kv("VMStateChangeTime", m.StateSince.Format("2006-01-02T15:04:05.000000000"))
	for _, c := range m.Controllers {
		i := 0
		fmt.Fprintf(&b, "storagecontrollername%d=%s\nstoragecontrollertype%d=%s\nstoragecontrollerportcount%d=%d\nstoragecontrollerbootable%d=%s\n",
			i, mrQuote(c.Name), i, mrQuote(c.Type), i, c.PortCount, i, mrQuote(c.Bootable))
		slots := make([]string, 0, len(c.Attached))
		for s := range c.Attached {
			slots = append(slots, s)
		}
		sort.Strings(slots)
		for _, s := range slots {
			md := r.mediumByUUID(c.Attached[s])
			loc := "none"
			if md != nil {
				loc = md.Location
			}
			fmt.Fprintf(&b, "%s=%s\n%s=%s\n", mrQuote(c.Name+"-"+s), mrQuote(loc), mrQuote(c.Name+"-ImageUUID-"+s), mrQuote(c.Attached[s]))
		}
	}
	for i := 1; i <= 8; i++ {
		d := strconv.Itoa(i)
		mode := m.NICs["nic"+d]
		if mode == "" {
			mode = "none"
		}
		kv("nic"+d, mode)
		if mode == "none" {
			continue
		}
		switch mode {
		case "hostonly":
			kv("hostonlyadapter"+d, m.NICs["hostonlyadapter"+d])
		case "hostonlynet":
			kv("hostonly-network"+d, m.NICs["hostonly-network"+d])
		}
		mac := m.NICs["macaddress"+d]
		if mac == "" || mac == "AUTO" {
			mac = fmt.Sprintf("080027%06X", i)
		}
		fmt.Fprintf(&b, "macaddress%d=%s\n", i, mrQuote(mac))
		kv("nictype"+d, firstNonEmpty(m.NICs["nictype"+d], "82540EM"))
	}
	for i := 1; i <= 4; i++ {
		d := strconv.Itoa(i)
		u := firstNonEmpty(m.UART["uart"+d], "off")
		kv("uart"+d, u)
		if u != "off" {
			kv("uartmode"+d, firstNonEmpty(m.UART["uartmode"+d], "disconnected"))
		}
	}
	return b.String(), nil
}

var stateLong = map[string]string{"poweroff": "powered off", "running": "running", "paused": "paused", "aborted": "aborted", "saved": "saved"}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// listMedium prints md and, depth first, its children (list hdds/dvds).
func (r *Registry) listMedium(b *strings.Builder, md *Medium, parent string) {
	fmt.Fprintf(b, "UUID:           %s\n", md.UUID)
	if md.Kind == "hdd" {
		fmt.Fprintf(b, "Parent UUID:    %s\n", parent)
	}
	state := "created"
	if _, err := os.Stat(md.Location); err != nil {
		state = "inaccessible"
	}
	typ := "normal (base)"
	if md.Parent != "" {
		typ = "normal (differencing)"
	}
	fmt.Fprintf(b, "State:          %s\nType:           %s\nLocation:       %s\n", state, typ, md.Location)
	if md.Kind == "hdd" {
		fmt.Fprintf(b, "Storage format: %s\nCapacity:       2048 MBytes\nEncryption:     disabled\n", md.Format)
	}
	var inUse []string
	for _, m := range r.attachedTo(md.UUID) {
		inUse = append(inUse, fmt.Sprintf("%s (UUID: %s)", m.Name, m.UUID))
	}
	if len(inUse) > 0 {
		fmt.Fprintf(b, "In use by VMs:  %s\n", strings.Join(inUse, ", "))
	}
	b.WriteString("\n")
	for _, c := range r.Media {
		if c.Parent == md.UUID {
			r.listMedium(b, c, md.UUID)
		}
	}
}

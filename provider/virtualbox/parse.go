package virtualbox

import (
	"strings"
)

// parseMachineReadable parses `showvminfo --machinereadable` output: one
// key=value per line, where strings are in double quotes with \" and \\
// escaped, numbers are bare, and some keys are quoted too
// ("SATA-0-0"="/path/disk.vdi").
func parseMachineReadable(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			continue
		}
		key, rest, ok := cutQuoted(line)
		if !ok || !strings.HasPrefix(rest, "=") {
			continue
		}
		val := rest[1:]
		if strings.HasPrefix(val, `"`) {
			v, _, ok := cutQuoted(val)
			if !ok {
				continue
			}
			val = v
		}
		if _, dup := m[key]; !dup {
			m[key] = val
		}
	}
	return m
}

// cutQuoted splits s into its first token and the rest. A token in double
// quotes is unescaped; a bare token ends at '='.
func cutQuoted(s string) (tok, rest string, ok bool) {
	if !strings.HasPrefix(s, `"`) {
		i := strings.IndexByte(s, '=')
		if i < 0 {
			return s, "", true
		}
		return s[:i], s[i:], true
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}

// parseRecords parses the "Key:   value" records that `VBoxManage list
// hostonlyifs|hostonlynets|hdds|dvds` print. A record starts at each line
// whose key is first (the key every record of that list begins with: "Name"
// for host-only interfaces and networks, "UUID" for media). Blank lines do
// not end a record: VirtualBox 7 prints one inside each host-only network,
// after its GUID line (listHostOnlyNetworks in VBoxManageList.cpp:
// "GUID:            %ls\n\n"), and one after every record. Indented
// continuation lines are skipped; lines before the first record are too.
func parseRecords(out, first string) []map[string]string {
	var recs []map[string]string
	var cur map[string]string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == first {
			cur = map[string]string{}
			recs = append(recs, cur)
		}
		if cur == nil {
			continue
		}
		if _, dup := cur[k]; !dup {
			cur[k] = v
		}
	}
	return recs
}

// vmEntry is one line of `VBoxManage list vms`: "name" {uuid}.
type vmEntry struct{ Name, UUID string }

func parseVMList(out string) []vmEntry {
	var vms []vmEntry
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		i := strings.LastIndex(line, " {")
		if !strings.HasPrefix(line, `"`) || i < 0 || !strings.HasSuffix(line, "}") {
			continue
		}
		name := line[1:i]
		if !strings.HasSuffix(name, `"`) {
			continue
		}
		vms = append(vms, vmEntry{Name: strings.TrimSuffix(name, `"`), UUID: line[i+2 : len(line)-1]})
	}
	return vms
}

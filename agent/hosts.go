package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/hostsblock"

	"github.com/clusterctl/clusterctl/internal/atomicfile"
)

// The lines that delimit the part of a hosts file the agent owns.
const (
	HostsBegin = hostsblock.Begin
	HostsEnd   = hostsblock.End
)

// HostEntry is one line of the agent's hosts block.
type HostEntry struct {
	Addr string // an IP address
	Name string // the node name (an RFC 1123 label)
}

// findBlock returns the byte range [start, end) of the marked block: from
// the first line that is exactly HostsBegin to the end of the first
// following line that is exactly HostsEnd (or to the end of content when
// that line is missing, since the agent owns everything after its BEGIN).
func findBlock(content []byte) (start, end int, ok bool) {
	pos := 0
	start = -1
	for pos < len(content) {
		nl := bytes.IndexByte(content[pos:], '\n')
		lineEnd, next := len(content), len(content)
		if nl >= 0 {
			lineEnd, next = pos+nl, pos+nl+1
		}
		line := string(content[pos:lineEnd])
		if start < 0 && line == HostsBegin {
			start = pos
		} else if start >= 0 && line == HostsEnd {
			return start, next, true
		}
		pos = next
	}
	if start >= 0 {
		return start, len(content), true
	}
	return 0, 0, false
}

// usableEntries drops entries that would not make a valid hosts line and
// sorts the rest by name (then address).
func usableEntries(entries []HostEntry) []HostEntry {
	out := make([]HostEntry, 0, len(entries))
	for _, e := range entries {
		a, err := netip.ParseAddr(e.Addr)
		if err != nil || a.Zone() != "" || !agentconfig.ValidName(e.Name) {
			continue
		}
		out = append(out, HostEntry{Addr: a.String(), Name: e.Name})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Addr < out[j].Addr
	})
	return out
}

// renderBlock renders the marked block, each line ending in "\n".
func renderBlock(domain string, entries []HostEntry) []byte {
	var b bytes.Buffer
	b.WriteString(HostsBegin + "\n")
	for _, e := range usableEntries(entries) {
		if domain != "" {
			fmt.Fprintf(&b, "%s %s.%s %s\n", e.Addr, e.Name, strings.TrimSuffix(domain, "."), e.Name)
		} else {
			fmt.Fprintf(&b, "%s %s\n", e.Addr, e.Name)
		}
	}
	b.WriteString(HostsEnd + "\n")
	return b.Bytes()
}

// RewriteHosts returns content with the marked block replaced by one line
// "ADDR name.domain name" ("ADDR name" without a domain) per entry, sorted
// by name. Everything outside the block is kept byte for byte; a missing
// block is appended. Entries with an invalid address or name are skipped.
//
// An entry whose address and name a line outside the block already has
// (the node's own line that user-data wrote) is not repeated: a name
// listed twice is resolved twice (`getent hosts` printed the node's own
// line twice).
func RewriteHosts(content []byte, domain string, entries []HostEntry) []byte {
	start, end, ok := findBlock(content)
	outside := content
	if ok {
		outside = append(append([]byte{}, content[:start]...), content[end:]...)
	}
	block := renderBlock(domain, unlisted(outside, entries))
	var out []byte
	if ok {
		out = make([]byte, 0, len(content)-(end-start)+len(block))
		out = append(out, content[:start]...)
		out = append(out, block...)
		out = append(out, content[end:]...)
		return out
	}
	out = make([]byte, 0, len(content)+len(block)+1)
	out = append(out, content...)
	if len(content) > 0 && content[len(content)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, block...)
}

// unlisted is entries without those whose address and name a line of
// outside (the hosts file less the block) already has.
func unlisted(outside []byte, entries []HostEntry) []HostEntry {
	listed := outsidePairs(outside)
	return slices.DeleteFunc(slices.Clone(entries), func(e HostEntry) bool {
		a, err := netip.ParseAddr(e.Addr)
		return err == nil && listed[HostEntry{Addr: a.String(), Name: e.Name}]
	})
}

// outsidePairs is every (address, name) pair the lines of content give,
// comments left out.
func outsidePairs(content []byte) map[HostEntry]bool {
	pairs := map[HostEntry]bool{}
	for _, line := range strings.Split(string(content), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		for _, name := range f[1:] {
			pairs[HostEntry{Addr: a.String(), Name: name}] = true
		}
	}
	return pairs
}

// ParseHostsBlock returns the entries of the marked block in content (nil
// when there is none). The name is the last field of each line.
func ParseHostsBlock(content []byte) []HostEntry {
	start, end, ok := findBlock(content)
	if !ok {
		return nil
	}
	var out []HostEntry
	for _, line := range strings.Split(string(content[start:end]), "\n") {
		if line == HostsBegin || line == HostsEnd || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		out = append(out, HostEntry{Addr: f[0], Name: f[len(f)-1]})
	}
	return out
}

// WriteHostsFile rewrites the marked block of the hosts file at path (see
// RewriteHosts). It writes only when the content changes, atomically: a
// temporary file in the same directory, fsync, rename. The file keeps its
// mode (0644 for a new file). It reports whether it wrote.
func WriteHostsFile(path, domain string, entries []HostEntry) (bool, error) {
	old, err := os.ReadFile(path)
	mode := fs.FileMode(0o644)
	switch {
	case err == nil:
		if st, err := os.Stat(path); err == nil {
			mode = st.Mode().Perm()
		}
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	default:
		return false, fmt.Errorf("hosts file: %w", err)
	}
	updated := RewriteHosts(old, domain, entries)
	if old != nil && bytes.Equal(old, updated) {
		return false, nil
	}
	if err := atomicfile.WriteFile(path, updated, mode); err != nil {
		return false, fmt.Errorf("hosts file %q: %w", path, err)
	}
	return true, nil
}

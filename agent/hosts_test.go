package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
)

func TestRewriteHosts(t *testing.T) {
	entries := []HostEntry{{"192.168.56.12", "green"}, {"192.168.56.10", "red"}, {"192.168.56.11", "blue"}}
	block := "# BEGIN clusterctl-agent\n" +
		"192.168.56.11 blue.lab blue\n" +
		"192.168.56.12 green.lab green\n" +
		"192.168.56.10 red.lab red\n" +
		"# END clusterctl-agent\n"
	tests := []struct {
		name, in, want string
		entries        []HostEntry
	}{
		{"empty file", "", block, entries},
		{"append keeps content", "127.0.0.1 localhost\n", "127.0.0.1 localhost\n" + block, entries},
		{"append adds missing newline", "127.0.0.1 localhost", "127.0.0.1 localhost\n" + block, entries},
		{
			"replace block in the middle",
			"127.0.0.1 localhost\n# BEGIN clusterctl-agent\n10.0.0.1 old\n# END clusterctl-agent\n::1 ip6-localhost  # keep   spacing\n",
			"127.0.0.1 localhost\n" + block + "::1 ip6-localhost  # keep   spacing\n",
			entries,
		},
		{
			"block at end without final newline",
			"127.0.0.1 localhost\n# BEGIN clusterctl-agent\n10.0.0.1 old\n# END clusterctl-agent",
			"127.0.0.1 localhost\n" + block,
			entries,
		},
		{
			"unterminated block runs to the end",
			"a\n# BEGIN clusterctl-agent\n10.0.0.1 old\n",
			"a\n" + block,
			entries,
		},
		{
			"markers must be whole lines",
			"#  BEGIN clusterctl-agent\n",
			"#  BEGIN clusterctl-agent\n" + block,
			entries,
		},
		{
			"no members: empty block",
			"x\n# BEGIN clusterctl-agent\n10.0.0.1 old\n# END clusterctl-agent\ny\n",
			"x\n# BEGIN clusterctl-agent\n# END clusterctl-agent\ny\n",
			nil,
		},
		{
			"the node's own line outside the block is not repeated in it",
			"127.0.0.1 localhost\n192.168.56.10 red.lab red # written by user-data\n",
			"127.0.0.1 localhost\n192.168.56.10 red.lab red # written by user-data\n" +
				"# BEGIN clusterctl-agent\n192.168.56.11 blue.lab blue\n192.168.56.12 green.lab green\n# END clusterctl-agent\n",
			entries,
		},
		{
			"a name outside at another address is still listed",
			"10.9.9.9 red\n# 192.168.56.11 blue (a comment lists nothing)\n",
			"10.9.9.9 red\n# 192.168.56.11 blue (a comment lists nothing)\n" + block,
			entries,
		},
		{
			"invalid entries skipped",
			"",
			"# BEGIN clusterctl-agent\n192.168.56.10 red.lab red\n# END clusterctl-agent\n",
			[]HostEntry{{"192.168.56.10", "red"}, {"not-an-ip", "x"}, {"10.0.0.1", "bad name"}, {"10.0.0.2", "evil\n1.2.3.4 bank"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(RewriteHosts([]byte(tt.in), "lab", tt.entries))
			if got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestRewriteHostsWithoutDomain(t *testing.T) {
	got := string(RewriteHosts(nil, "", []HostEntry{{"fd00::1", "red"}}))
	want := "# BEGIN clusterctl-agent\nfd00::1 red\n# END clusterctl-agent\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestWriteHostsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts")
	orig := "127.0.0.1 localhost\n"
	if err := os.WriteFile(path, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	entries := []HostEntry{{"10.0.0.2", "b"}, {"10.0.0.1", "a"}}
	wrote, err := WriteHostsFile(path, "lab", entries)
	if err != nil || !wrote {
		t.Fatalf("first write: wrote=%v err=%v", wrote, err)
	}
	data, _ := os.ReadFile(path)
	want := orig + "# BEGIN clusterctl-agent\n10.0.0.1 a.lab a\n10.0.0.2 b.lab b\n# END clusterctl-agent\n"
	if string(data) != want {
		t.Errorf("file:\n%s\nwant:\n%s", data, want)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	before := st.ModTime()
	_ = before
	inode := st.Sys()
	wrote, err = WriteHostsFile(path, "lab", []HostEntry{entries[1], entries[0]})
	if err != nil || wrote {
		t.Errorf("unchanged entries: wrote=%v err=%v, want no write", wrote, err)
	}
	st2, _ := os.Stat(path)
	if !reflect.DeepEqual(st2.Sys(), inode) {
		t.Error("file was replaced although nothing changed")
	}
	left, _ := os.ReadDir(filepath.Dir(path))
	if len(left) != 1 {
		t.Errorf("directory holds %d files, want only hosts (no temp files left)", len(left))
	}

	// A new file is created with mode 0644.
	newPath := filepath.Join(t.TempDir(), "hosts")
	if _, err := WriteHostsFile(newPath, "", entries[:1]); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(newPath); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("new file: %v %v", st, err)
	}
}

func FuzzRewriteHosts(f *testing.F) {
	f.Add([]byte("127.0.0.1 localhost\n"), "10.0.0.1", "a", "10.0.0.2", "b", "lab")
	f.Add([]byte("x\n# BEGIN clusterctl-agent\nold\n# END clusterctl-agent\ny"), "fd00::1", "n1", "bad", "n2", "")
	f.Add([]byte("# BEGIN clusterctl-agent"), "1.2.3.4", "z", "1.2.3.5", "z", "a.b")
	f.Add([]byte("# END clusterctl-agent\n# BEGIN clusterctl-agent\r\n"), "1.2.3.4", "A", "1.2.3.5", "-x", "d")
	f.Fuzz(func(t *testing.T, content []byte, addr1, name1, addr2, name2, domain string) {
		if !agentconfig.ValidDomain(domain) {
			domain = ""
		}
		entries := []HostEntry{{addr1, name1}, {addr2, name2}}
		out := RewriteHosts(content, domain, entries)

		// Outside the block nothing changes: the output is the input's text
		// before its block, our block, and the input's text after its block.
		start, end, had := findBlock(content)
		prefix, suffix := content, []byte(nil)
		if had {
			prefix, suffix = content[:start], content[end:]
		}
		if !bytes.HasPrefix(out, prefix) || !bytes.HasSuffix(out, suffix) {
			t.Fatalf("content outside the block changed:\nin  %q\nout %q", content, out)
		}
		if !had && len(content) > 0 && content[len(content)-1] != '\n' {
			prefix = append(append([]byte(nil), prefix...), '\n')
		}
		middle := out[len(prefix) : len(out)-len(suffix)]
		outside := append(append([]byte(nil), prefix...), suffix...)
		kept := unlisted(outside, entries)
		if !bytes.Equal(middle, renderBlock(domain, kept)) {
			t.Fatalf("block is %q, want %q", middle, renderBlock(domain, kept))
		}

		// Parsing what we wrote gives the entries back, but those a line
		// outside the block already lists; every usable entry resolves.
		want := usableEntries(kept)
		got := ParseHostsBlock(out)
		if len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
			t.Fatalf("parsed %v, want %v", got, want)
		}
		for _, e := range usableEntries(entries) {
			if !slices.Contains(got, e) && !outsidePairs(outside)[e] {
				t.Fatalf("entry %v is neither in the block nor outside it:\n%q", e, out)
			}
		}
		// Rewriting again with the same entries changes nothing.
		if again := RewriteHosts(out, domain, entries); !bytes.Equal(again, out) {
			t.Fatalf("second rewrite changed the file:\n%q\n%q", out, again)
		}
		if strings.Count(string(out), HostsBegin+"\n") < 1 {
			t.Fatalf("no begin marker in %q", out)
		}
	})
}

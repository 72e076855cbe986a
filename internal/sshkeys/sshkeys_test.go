package sshkeys

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/internal/testkit"
)

// OpenSSH itself reads the generated private key and derives the same
// public key from it.
func TestGenerateIsReadByOpenSSH(t *testing.T) {
	keygen := testkit.Tool(t, "ssh-keygen")
	p, err := Generate("demo/red")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.Public, "ssh-ed25519 ") || strings.ContainsAny(p.Public, "\n") {
		t.Errorf("public key %q is not one ssh-ed25519 line", p.Public)
	}
	path := filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(path, p.Private, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(keygen, "-y", "-f", path).Output()
	if err != nil {
		t.Fatalf("ssh-keygen -y: %v", err)
	}
	if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, p.Public) {
		t.Errorf("ssh-keygen derives %q, Generate said %q", got, p.Public)
	}
	q, err := FromPrivate(p.Private)
	if err != nil || q.Public != p.Public {
		t.Errorf("FromPrivate: %v, public %q, want %q", err, q.Public, p.Public)
	}
	other, _ := Generate("")
	if other.Public == p.Public {
		t.Error("two keys are equal")
	}
}

func TestFromPrivateRejects(t *testing.T) {
	keygen := testkit.Tool(t, "ssh-keygen")
	dir := t.TempDir()
	rsa := filepath.Join(dir, "rsa")
	if out, err := exec.Command(keygen, "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", rsa).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	data, _ := os.ReadFile(rsa)
	if _, err := FromPrivate(data); err == nil || !strings.Contains(err.Error(), "not ed25519") {
		t.Errorf("rsa key: %v", err)
	}
	if _, err := FromPrivate([]byte("garbage SECRET")); err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("garbage: %v (must fail and not quote the file)", err)
	}
}

// ssh-keygen -F finds each host under its alias in the rendered file.
func TestKnownHostsIsReadByOpenSSH(t *testing.T) {
	keygen := testkit.Tool(t, "ssh-keygen")
	a, _ := Generate("")
	b, _ := Generate("")
	data, err := KnownHosts([]KnownHost{
		{Alias: HostKeyAlias("demo", "red"), Key: a.Public},
		{Alias: HostKeyAlias("demo", "blue"), Key: b.Public + " a comment"},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for alias, key := range map[string]string{"red.demo.clusterctl": a.Public, "blue.demo.clusterctl": b.Public} {
		out, err := exec.Command(keygen, "-F", alias, "-f", path).Output()
		if err != nil || !strings.Contains(string(out), alias+" "+key) {
			t.Errorf("ssh-keygen -F %s: %v\n%s", alias, err, out)
		}
	}
	if out, err := exec.Command(keygen, "-F", "192.168.56.10", "-f", path).Output(); err == nil {
		t.Errorf("an address matched an entry; only aliases may:\n%s", out)
	}
	if _, err := KnownHosts([]KnownHost{{Alias: "x", Key: "ssh-ed25519 notbase64"}}); err == nil {
		t.Error("a malformed key was accepted")
	}
	if _, err := KnownHosts([]KnownHost{{Alias: "a b", Key: a.Public}}); err == nil {
		t.Error("an alias with a space was accepted")
	}
}

func FuzzParsePublic(f *testing.F) {
	p, _ := Generate("")
	f.Add(p.Public)
	f.Add(p.Public + " comment")
	f.Add("ssh-ed25519 AAAA\nssh-rsa x")
	f.Fuzz(func(t *testing.T, line string) {
		got, err := ParsePublic(line)
		if err != nil {
			return
		}
		if strings.ContainsAny(got, "\r\n") {
			t.Fatalf("ParsePublic(%q) = %q: more than one line", line, got)
		}
		again, err := ParsePublic(got)
		if err != nil || again != got {
			t.Fatalf("not stable: %q -> %q -> %q (%v)", line, got, again, err)
		}
	})
}

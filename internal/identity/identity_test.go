package identity_test

import (
	"errors"
	"maps"
	"net/netip"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/internal/identity"
	"github.com/clusterctl/clusterctl/internal/pki"
)

func testCA(t testing.TB, cluster string) *pki.CA {
	t.Helper()
	ca, err := pki.Create(t.TempDir(), cluster)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

var addr = netip.MustParseAddr("192.168.56.10")

func memberTags(t testing.TB, creds identity.Credentials, a netip.Addr) map[string]string {
	t.Helper()
	tags := map[string]string{"cluster": creds.Claim.Cluster, "name": creds.Claim.Name, "role": "node", "nonce": creds.Claim.Nonce,
		"hostname": creds.Claim.Name, "provider": "qemu", "tag:zone": "a"}
	id, err := creds.Tag(a, tags)
	if err != nil {
		t.Fatal(err)
	}
	tags["id"] = id
	return tags
}

func TestVerify(t *testing.T) {
	ca := testCA(t, "red")
	creds, err := identity.Issue(ca, identity.Claim{Cluster: "red", Name: "blue", Role: "node", Nonce: "n-1"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifier("red", ca.CertPEM(), netip.MustParsePrefix("192.168.56.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	tags := memberTags(t, creds, addr)
	if len(tags["id"]) != identity.TagSize {
		t.Fatalf("id tag of %d bytes, TagSize says %d", len(tags["id"]), identity.TagSize)
	}
	if c, err := v.Verify("blue", addr, tags); err != nil || c.Nonce != "n-1" {
		t.Fatalf("a member with its own identity: %v %+v", err, c)
	}

	other := testCA(t, "red") // another CA of the same cluster name
	stranger, _ := identity.Issue(other, identity.Claim{Cluster: "red", Name: "blue", Role: "node", Nonce: "n-1"})
	changed := func(f func(m map[string]string)) map[string]string { m := maps.Clone(tags); f(m); return m }
	cases := map[string]struct {
		name string
		addr netip.Addr
		tags map[string]string
	}{
		"no id":               {"blue", addr, changed(func(m map[string]string) { delete(m, "id") })},
		"garbage id":          {"blue", addr, changed(func(m map[string]string) { m["id"] = "AAAA" })},
		"another name":        {"evil", addr, changed(func(m map[string]string) { m["name"] = "evil" })},
		"name tag differs":    {"evil", addr, tags},
		"localhost squatting": {"localhost", addr, changed(func(m map[string]string) { m["name"] = "localhost" })},
		"stolen nonce":        {"blue", addr, changed(func(m map[string]string) { m["nonce"] = "n-2" })},
		"another address":     {"blue", netip.MustParseAddr("192.168.56.66"), tags},
		"outside the network": {"blue", netip.MustParseAddr("10.0.0.1"), tags},
		"changed hostname":    {"blue", addr, changed(func(m map[string]string) { m["hostname"] = "blue-looks-fine" })},
		"added tag":           {"blue", addr, changed(func(m map[string]string) { m["tag:x"] = "1" })},
		"another cluster":     {"blue", addr, changed(func(m map[string]string) { m["cluster"] = "green" })},
		"observer role":       {"blue", addr, changed(func(m map[string]string) { m["role"] = "observer" })},
		"newline in name":     {"blue\nalive: evil 10.0.0.9:7946", addr, changed(func(m map[string]string) { m["name"] = "blue\nalive: evil 10.0.0.9:7946" })},
		"another CA's grant":  {"blue", addr, memberTags(t, stranger, addr)},
		"no address":          {"blue", netip.Addr{}, tags},
	}
	for what, c := range cases {
		if _, err := v.Verify(c.name, c.addr, c.tags); !errors.Is(err, identity.ErrRefused) {
			t.Errorf("%s: Verify = %v, want a refusal", what, err)
		}
	}
}

func TestIssueRefusesBadClaims(t *testing.T) {
	ca := testCA(t, "red")
	for _, c := range []identity.Claim{
		{Cluster: "red", Name: "Bad_Name", Role: "node", Nonce: "n"},
		{Cluster: "red", Name: "blue", Role: "observer", Nonce: "n"},
		{Cluster: "red", Name: "blue", Role: "node", Nonce: ""},
		{Cluster: "green", Name: "blue", Role: "node", Nonce: "n"},
	} {
		if _, err := identity.Issue(ca, c); err == nil {
			t.Errorf("Issue(%+v) = nil error", c)
		}
	}
}

func TestCredentialsNeverPrintTheKey(t *testing.T) {
	creds, err := identity.Issue(testCA(t, "red"), identity.Claim{Cluster: "red", Name: "blue", Role: "node", Nonce: "n"})
	if err != nil {
		t.Fatal(err)
	}
	enc := identity.EncodeKey(creds.Key)
	for _, s := range []string{creds.String(), strings.ReplaceAll(creds.GoString(), " ", "")} {
		if strings.Contains(s, enc) || strings.Contains(s, string(creds.Key)) {
			t.Fatalf("%q shows the key", s)
		}
	}
	back, err := identity.DecodeKey(enc)
	if err != nil || !back.Equal(creds.Key) {
		t.Fatalf("DecodeKey(EncodeKey) = %v", err)
	}
}

// FuzzVerify: no input makes Verify panic, and nothing but the member's own
// tags at its own address verifies.
func FuzzVerify(f *testing.F) {
	ca := testCA(f, "red")
	creds, err := identity.Issue(ca, identity.Claim{Cluster: "red", Name: "blue", Role: "node", Nonce: "n-1"})
	if err != nil {
		f.Fatal(err)
	}
	v, err := identity.NewVerifier("red", ca.CertPEM(), netip.Prefix{})
	if err != nil {
		f.Fatal(err)
	}
	good := memberTags(f, creds, addr)
	f.Add("blue", []byte{192, 168, 56, 10}, good["id"], "n-1", "blue")
	f.Add("blue", []byte{192, 168, 56, 11}, good["id"][:40], "n-2", "x")
	f.Fuzz(func(t *testing.T, name string, ip []byte, id, nonce, hostname string) {
		a, _ := netip.AddrFromSlice(ip)
		tags := maps.Clone(good)
		tags["name"], tags["id"], tags["nonce"], tags["hostname"] = name, id, nonce, hostname
		_, err := v.Verify(name, a, tags)
		same := name == "blue" && a.Unmap() == addr && id == good["id"] && nonce == "n-1" && hostname == "blue"
		if same != (err == nil) {
			t.Fatalf("Verify(%q, %v, id %q, nonce %q, hostname %q) = %v", name, a, id, nonce, hostname, err)
		}
	})
}

// BenchmarkVerify is what an agent spends on a member it has not verified
// before (a join): the CA's ECDSA grant and the Ed25519 statement; "again"
// is the same member in a later push/pull or alive message.
func BenchmarkVerify(b *testing.B) {
	b.Run("first", func(b *testing.B) { benchVerify(b, true) })
	b.Run("again", func(b *testing.B) { benchVerify(b, false) })
}

func benchVerify(b *testing.B, fresh bool) {
	ca := testCA(b, "red")
	creds, err := identity.Issue(ca, identity.Claim{Cluster: "red", Name: "blue", Role: "node", Nonce: "n-1"})
	if err != nil {
		b.Fatal(err)
	}
	v, err := identity.NewVerifier("red", ca.CertPEM(), netip.MustParsePrefix("192.168.56.0/24"))
	if err != nil {
		b.Fatal(err)
	}
	tags := memberTags(b, creds, addr)
	b.ReportAllocs()
	for b.Loop() {
		vv := v
		if fresh {
			b.StopTimer()
			vv, _ = identity.NewVerifier("red", ca.CertPEM(), netip.Prefix{})
			b.StartTimer()
		}
		if _, err := vv.Verify("blue", addr, tags); err != nil {
			b.Fatal(err)
		}
	}
}

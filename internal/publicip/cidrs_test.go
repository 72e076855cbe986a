package publicip

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseCIDRs(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []string
	}{
		{"none", nil, []string{}},
		{"one address", []string{"203.0.113.7/32"}, []string{"203.0.113.7/32"}},
		{"networks of both families, spaces trimmed", []string{" 198.51.100.0/24", "2001:db8::/32 "}, []string{"198.51.100.0/24", "2001:db8::/32"}},
		{"the whole internet when listed", []string{"0.0.0.0/0", "::/0"}, []string{"0.0.0.0/0", "::/0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCIDRs("ec2.api_from", tc.in)
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, p := range got {
				s = append(s, p.String())
			}
			if s == nil {
				s = []string{}
			}
			if !slices.Equal(s, tc.want) {
				t.Errorf("ParseCIDRs(%q) = %q, want %q", tc.in, s, tc.want)
			}
		})
	}
}

func TestParseCIDRsNeverAddsTheWholeInternet(t *testing.T) {
	for _, in := range [][]string{nil, {}, {"203.0.113.0/24"}, {"2001:db8::/32", "198.51.100.7/32"}} {
		got, err := ParseCIDRs("ec2.api_from", in)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range got {
			if p.Bits() == 0 {
				t.Errorf("ParseCIDRs(%q) produced %s", in, p)
			}
		}
	}
}

func TestParseCIDRsBadEntries(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"203.0.113.7/24"}, `ec2.api_from entry 1 "203.0.113.7/24" has host bits set: write 203.0.113.0/24 for the network or 203.0.113.7/32 for the one address`},
		{[]string{"0.0.0.1/0"}, `entry 1 "0.0.0.1/0" has host bits set`},
		{[]string{"10.0.0.0/33"}, `entry 1 "10.0.0.0/33" is not a CIDR`},
		{[]string{"203.0.113.7"}, `entry 1 "203.0.113.7" is an address, not a network: write 203.0.113.7/32`},
		{[]string{"2001:db8::1"}, `write 2001:db8::1/128`},
		{[]string{"everyone"}, `entry 1 "everyone" is not a CIDR`},
		{[]string{"0/0"}, `entry 1 "0/0" is not a CIDR`},
		{[]string{""}, `entry 1 "" is empty`},
		{[]string{"fe80::/10%eth0"}, `is not a CIDR`},
		{[]string{"::ffff:203.0.113.0/120"}, `is an IPv4-mapped IPv6 network`},
		{[]string{"203.0.113.0/24", "198.51.100.0/24", "203.0.113.0/24"}, `entry 3 "203.0.113.0/24" is the same network as entry 1`},
	} {
		got, err := ParseCIDRs("ec2.api_from", tc.in)
		if err == nil {
			t.Errorf("ParseCIDRs(%q) = %v, want an error", tc.in, got)
			continue
		}
		ie := inputError(t, err)
		if !strings.Contains(ie.Error(), tc.want) {
			t.Errorf("ParseCIDRs(%q) error %q, want it to contain %q", tc.in, ie.Error(), tc.want)
		}
		if !strings.Contains(ie.Fix, "ec2.api_from") {
			t.Errorf("fix %q does not name the key", ie.Fix)
		}
		if got != nil {
			t.Errorf("ParseCIDRs(%q) returned %v with its error", tc.in, got)
		}
	}
}

func TestParseCIDRsAllProblemsAtOnce(t *testing.T) {
	_, err := ParseCIDRs("openstack.api_from", []string{"203.0.113.0/24", "bad", "198.51.100.1/24", "192.0.2.0/24"})
	ie := inputError(t, err)
	for _, want := range []string{`openstack.api_from entry 2 "bad"`, `openstack.api_from entry 3 "198.51.100.1/24"`} {
		if !strings.Contains(ie.Error(), want) {
			t.Errorf("error %q lacks %q", ie.Error(), want)
		}
	}
	if strings.Contains(ie.Error(), "entry 1") || strings.Contains(ie.Error(), "entry 4") {
		t.Errorf("error %q names a good entry", ie.Error())
	}
}

func TestResolve(t *testing.T) {
	srv, n := answering(t, 200, "203.0.113.44\n")
	opts := Options{URLs: []string{srv.URL}}

	got, err := Resolve(context.Background(), "ec2.api_from", []string{"198.51.100.0/24"}, opts)
	if err != nil || len(got) != 1 || got[0] != netip.MustParsePrefix("198.51.100.0/24") {
		t.Fatalf("Resolve with entries = %v, %v", got, err)
	}
	if *n != 0 {
		t.Errorf("Resolve asked the endpoint although entries were listed")
	}

	got, err = Resolve(context.Background(), "ec2.api_from", nil, opts)
	if err != nil || len(got) != 1 || got[0] != netip.MustParsePrefix("203.0.113.44/32") {
		t.Fatalf("Resolve without entries = %v, %v; want the detected 203.0.113.44/32", got, err)
	}

	_, err = Resolve(context.Background(), "ec2.api_from", []string{"203.0.113.44"}, opts)
	inputError(t, err)
}

func FuzzParseCIDRs(f *testing.F) {
	for _, s := range []string{"203.0.113.0/24", "0.0.0.0/0", "::/0", "10.0.0.1/8", "1.2.3.4", "", "::ffff:1.2.3.0/120"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseCIDRs("k", []string{s})
		if err != nil {
			return
		}
		if len(got) != 1 {
			t.Fatalf("one entry %q gave %v", s, got)
		}
		p := got[0]
		if p.Masked() != p || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("accepted %q as %s", s, p)
		}
		if p.Bits() == 0 && strings.TrimSpace(s) != p.String() {
			t.Fatalf("%q became the whole internet %s", s, p)
		}
	})
}

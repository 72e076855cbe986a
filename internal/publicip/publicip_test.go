package publicip

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

// answering starts a loopback server that answers every GET with status and
// body, and counts the requests it got.
func answering(t *testing.T, status int, body string) (*httptest.Server, *int) {
	t.Helper()
	n := new(int)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*n++
		if r.Method != http.MethodGet {
			t.Errorf("method %s, want GET", r.Method)
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, n
}

func inputError(t *testing.T, err error) *usererr.InputError {
	t.Helper()
	var ie *usererr.InputError
	if !errors.As(err, &ie) {
		t.Fatalf("error %v (%T) is not a *usererr.InputError", err, err)
	}
	return ie
}

func TestDetect(t *testing.T) {
	t.Setenv(EnvURL, "")
	v4, _ := answering(t, 200, "203.0.113.7\n")
	v6, _ := answering(t, 200, "  2001:db8::7 \r\n")
	mapped, _ := answering(t, 200, "::ffff:198.51.100.9")
	for _, tc := range []struct {
		name string
		url  string
		want string
	}{
		{"IPv4 with newline", v4.URL, "203.0.113.7/32"},
		{"IPv6 with spaces", v6.URL, "2001:db8::7/128"},
		{"IPv4-mapped becomes IPv4", mapped.URL, "198.51.100.9/32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Detect(context.Background(), "ec2.api_from", Options{URLs: []string{tc.url}})
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tc.want {
				t.Errorf("Detect = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestDetectTriesTheNextEndpoint(t *testing.T) {
	down, downN := answering(t, 503, "busy")
	private, privN := answering(t, 200, "192.168.1.20\n")
	good, goodN := answering(t, 200, "203.0.113.8\n")
	never, neverN := answering(t, 200, "203.0.113.9\n")
	got, err := Detect(context.Background(), "ec2.api_from", Options{URLs: []string{down.URL, private.URL, good.URL, never.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if got != netip.MustParsePrefix("203.0.113.8/32") {
		t.Errorf("Detect = %s, want the third endpoint's 203.0.113.8/32", got)
	}
	if *downN != 1 || *privN != 1 || *goodN != 1 || *neverN != 0 {
		t.Errorf("requests per endpoint = %d %d %d %d, want 1 1 1 0", *downN, *privN, *goodN, *neverN)
	}
}

func TestDetectFailsAsBadInputNamingTheKey(t *testing.T) {
	down, _ := answering(t, 500, "oops")
	html, _ := answering(t, 200, "<html>203.0.113.7</html>")
	two, _ := answering(t, 200, "203.0.113.7 203.0.113.8")
	loop, _ := answering(t, 200, "127.0.0.1")
	long, _ := answering(t, 200, strings.Repeat(" ", 200)+"203.0.113.7")
	_, err := Detect(context.Background(), "openstack.api_from", Options{URLs: []string{down.URL, html.URL, two.URL, loop.URL, long.URL}})
	ie := inputError(t, err)
	if !strings.Contains(ie.Fix, "openstack.api_from") || !strings.Contains(ie.Fix, "/32") {
		t.Errorf("fix %q does not tell to set openstack.api_from to a CIDR", ie.Fix)
	}
	msg := err.Error()
	for _, want := range []string{
		"openstack.api_from is not set",
		down.URL + ": answered 500 Internal Server Error",
		html.URL + `: the answer "<html>203.0.113.7</html>" is not one IP address`,
		two.URL + `: the answer "203.0.113.7 203.0.113.8" is not one IP address`,
		loop.URL + ": the answer 127.0.0.1 is a loopback address",
		long.URL + ": the answer is longer than 128 bytes",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}

func TestDetectAllowPrivate(t *testing.T) {
	private, _ := answering(t, 200, "10.1.2.3")
	got, err := Detect(context.Background(), "ec2.api_from", Options{URLs: []string{private.URL}, AllowPrivate: true})
	if err != nil || got != netip.MustParsePrefix("10.1.2.3/32") {
		t.Fatalf("Detect with AllowPrivate = %s, %v; want 10.1.2.3/32", got, err)
	}
	if _, err := Detect(context.Background(), "ec2.api_from", Options{URLs: []string{private.URL}}); err == nil {
		t.Fatal("Detect accepted a private address without AllowPrivate")
	}
}

func TestDetectTimeoutIsPerEndpoint(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	good, _ := answering(t, 200, "203.0.113.10")
	got, err := Detect(context.Background(), "ec2.api_from", Options{URLs: []string{slow.URL, good.URL}, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if got != netip.MustParsePrefix("203.0.113.10/32") {
		t.Errorf("Detect = %s, want the second endpoint's answer", got)
	}
	_, err = Detect(context.Background(), "ec2.api_from", Options{URLs: []string{slow.URL}, Timeout: 200 * time.Millisecond})
	ie := inputError(t, err)
	if !strings.Contains(ie.Error(), "deadline exceeded") {
		t.Errorf("error %q does not say the endpoint timed out", ie.Error())
	}
}

func TestDetectFollowsNoRedirect(t *testing.T) {
	good, goodN := answering(t, 200, "203.0.113.7")
	redirect := httptest.NewServer(http.RedirectHandler(good.URL, http.StatusFound))
	t.Cleanup(redirect.Close)
	_, err := Detect(context.Background(), "ec2.api_from", Options{URLs: []string{redirect.URL}})
	ie := inputError(t, err)
	if !strings.Contains(ie.Error(), "302 Found") {
		t.Errorf("error %q does not say the endpoint redirected", ie.Error())
	}
	if *goodN != 0 {
		t.Errorf("the redirect was followed")
	}
}

func TestDetectFromEnvironment(t *testing.T) {
	down, _ := answering(t, 404, "")
	good, _ := answering(t, 200, "198.51.100.4\n")
	t.Setenv(EnvURL, down.URL+", "+good.URL)
	got, err := Detect(context.Background(), "ec2.api_from", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got != netip.MustParsePrefix("198.51.100.4/32") {
		t.Errorf("Detect = %s, want 198.51.100.4/32 from %s", got, EnvURL)
	}

	other, _ := answering(t, 200, "198.51.100.5\n")
	got, err = Detect(context.Background(), "ec2.api_from", Options{URLs: []string{other.URL}})
	if err != nil || got != netip.MustParsePrefix("198.51.100.5/32") {
		t.Errorf("Options.URLs did not win over %s: %s, %v", EnvURL, got, err)
	}
}

func TestDetectBadEnvironment(t *testing.T) {
	for _, v := range []string{"ftp://example.test/ip", "checkip", "https://"} {
		t.Setenv(EnvURL, v)
		_, err := Detect(context.Background(), "ec2.api_from", Options{})
		ie := inputError(t, err)
		if !strings.Contains(ie.Error(), EnvURL) || !strings.Contains(ie.Error(), v) || !strings.Contains(ie.Fix, EnvURL) {
			t.Errorf("%s=%q: error %q / fix %q does not name the variable and its value", EnvURL, v, ie.Error(), ie.Fix)
		}
	}
}

func TestDefaultEndpoints(t *testing.T) {
	t.Setenv(EnvURL, "")
	got, err := endpoints(nil)
	if err != nil || len(got) == 0 || got[0] != DefaultURLs[0] {
		t.Fatalf("endpoints() = %v, %v; want DefaultURLs", got, err)
	}
	for _, u := range DefaultURLs {
		if !strings.HasPrefix(u, "https://") {
			t.Errorf("default endpoint %s is not HTTPS", u)
		}
	}
}

func TestDetectCancelledIsNotBadInput(t *testing.T) {
	good, _ := answering(t, 200, "203.0.113.7")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Detect(ctx, "ec2.api_from", Options{URLs: []string{good.URL}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	var ie *usererr.InputError
	if errors.As(err, &ie) {
		t.Errorf("a cancelled detection is reported as bad input: %v", err)
	}
}

func TestParseAnswer(t *testing.T) {
	for _, tc := range []struct {
		in      string
		private bool
		want    string // "" = error
	}{
		{"203.0.113.7", false, "203.0.113.7"},
		{"\t203.0.113.7\r\n", false, "203.0.113.7"},
		{"2001:db8::1\n", false, "2001:db8::1"},
		{"::ffff:203.0.113.7", false, "203.0.113.7"},
		{"", false, ""},
		{" \n", false, ""},
		{"203.0.113.7\n203.0.113.8", false, ""},
		{"203.0.113.7/32", false, ""},
		{"203.0.113.07", false, ""},
		{"fe80::1%eth0", true, ""},
		{"0.0.0.0", true, ""},
		{"::", true, ""},
		{"224.0.0.1", true, ""},
		{"10.0.0.1", false, ""},
		{"10.0.0.1", true, "10.0.0.1"},
		{"172.16.0.1", false, ""},
		{"192.168.0.1", false, ""},
		{"127.0.0.1", false, ""},
		{"127.0.0.1", true, "127.0.0.1"},
		{"169.254.1.1", false, ""},
		{"100.64.0.1", false, ""},
		{"fd00::1", false, ""},
		{"::1", false, ""},
		{"::ffff:10.0.0.1", false, ""},
		{"example.com", false, ""},
	} {
		got, err := ParseAnswer([]byte(tc.in), tc.private)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("ParseAnswer(%q, %v) = %s, want an error", tc.in, tc.private, got)
		case tc.want != "" && err != nil:
			t.Errorf("ParseAnswer(%q, %v): %v", tc.in, tc.private, err)
		case tc.want != "" && got.String() != tc.want:
			t.Errorf("ParseAnswer(%q, %v) = %s, want %s", tc.in, tc.private, got, tc.want)
		}
	}
}

func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{"203.0.113.7\n", "2001:db8::1", "::ffff:1.2.3.4", "10.0.0.1", "fe80::1%lo", " 1.1.1.1 ", "1.1.1.1 2.2.2.2", "\x00"} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, allowPrivate bool) {
		a, err := ParseAnswer(body, allowPrivate)
		if err != nil {
			if a.IsValid() {
				t.Fatalf("error %v with a valid address %s", err, a)
			}
			return
		}
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			t.Fatalf("accepted %q as %#v", body, a)
		}
		if a.IsUnspecified() || a.IsMulticast() {
			t.Fatalf("accepted %q as unspecified or multicast %s", body, a)
		}
		if !allowPrivate && notPublic(a) != "" {
			t.Fatalf("accepted %q as %s without AllowPrivate", body, a)
		}
		// The address is exactly what the body said, spaces aside.
		want, perr := netip.ParseAddr(strings.Trim(string(body), " \t\r\n"))
		if perr != nil || want.Unmap() != a {
			t.Fatalf("accepted %q as %s, which is not what it says", body, a)
		}
		p := netip.PrefixFrom(a, a.BitLen())
		if p.Bits() != 32 && p.Bits() != 128 || p.Masked() != p {
			t.Fatalf("prefix of %s is %s", a, p)
		}
	})
}

// Package publicip finds this machine's public address as the internet sees
// it, and parses the CIDR lists (ec2.api_from, openstack.api_from) that say
// who may reach the nodes' API and SSH ports.
//
// Detection asks plain-text "what is my IP" endpoints over HTTPS, in order,
// each within a short timeout, and accepts only an answer that is exactly one
// public unicast address. The endpoints can be replaced with the
// CLUSTERCTL_PUBLIC_IP_URL environment variable (a comma- or space-separated
// list), for tests and for networks whose egress goes through an unusual
// proxy. When no endpoint gives a usable answer, the error is bad input
// (exit 2) whose fix says to set the configuration key to a CIDR.
package publicip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

// EnvURL names the environment variable that replaces DefaultURLs: one or
// more http:// or https:// URLs separated by commas or spaces.
const EnvURL = "CLUSTERCTL_PUBLIC_IP_URL"

// DefaultURLs are the endpoints asked, in order, when neither Options.URLs
// nor EnvURL names any. Each answers GET with the caller's address as a
// plain-text body.
var DefaultURLs = []string{
	"https://checkip.amazonaws.com/",
	"https://api.ipify.org/",
	"https://icanhazip.com/",
}

// DefaultTimeout bounds one endpoint's answer (connect, TLS, headers, body).
const DefaultTimeout = 3 * time.Second

// maxAnswer is the most bytes of an answer read; an address is at most 45.
const maxAnswer = 128

// Options changes how Detect asks. The zero value asks EnvURL's endpoints,
// else DefaultURLs, each within DefaultTimeout, and accepts public addresses
// only.
type Options struct {
	// URLs replaces EnvURL and DefaultURLs when not empty.
	URLs []string
	// Client makes the requests; nil means a client with the default
	// transport (which honours HTTPS_PROXY/NO_PROXY) that follows no
	// redirects.
	Client *http.Client
	// Timeout bounds each endpoint; 0 means DefaultTimeout.
	Timeout time.Duration
	// AllowPrivate accepts private, loopback, link-local and shared
	// (100.64.0.0/10) addresses. Only for tests.
	AllowPrivate bool
}

// Detect asks the endpoints in order and returns the first valid answer as a
// single-address prefix (/32 or /128). configKey is the configuration key the
// result is a default for (e.g. "ec2.api_from"); it is named in the error's
// fix when nothing could be detected, which is then a *usererr.InputError.
// A cancelled ctx returns ctx's error, not bad input.
func Detect(ctx context.Context, configKey string, opts Options) (netip.Prefix, error) {
	urls, err := endpoints(opts.URLs)
	if err != nil {
		return netip.Prefix{}, usererr.BadInput(
			fmt.Sprintf("set %s to http:// or https:// URLs of endpoints that answer with your address, or unset it and set %s to a CIDR like 203.0.113.7/32", EnvURL, configKey),
			"%s: %w", EnvURL, err)
	}
	client := opts.Client
	if client == nil {
		client = &http.Client{
			Transport: http.DefaultTransport,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	var errs []error
	for _, u := range urls {
		addr, err := ask(ctx, client, timeout, u, opts.AllowPrivate)
		if err == nil {
			return netip.PrefixFrom(addr, addr.BitLen()), nil
		}
		if ctx.Err() != nil {
			return netip.Prefix{}, fmt.Errorf("detecting this machine's public address: %w", ctx.Err())
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
	}
	return netip.Prefix{}, usererr.BadInput(
		fmt.Sprintf("set %s to the CIDR(s) allowed to reach the nodes, e.g. %s: [203.0.113.7/32] with your public address (or set %s to an endpoint that answers with it)", configKey, configKey, EnvURL),
		"%s is not set and this machine's public address could not be detected: %w", configKey, errors.Join(errs...))
}

// endpoints returns explicit if not empty, else the URLs in EnvURL, else
// DefaultURLs; every URL must be absolute http or https.
func endpoints(explicit []string) ([]string, error) {
	urls := explicit
	if len(urls) == 0 {
		urls = strings.FieldsFunc(os.Getenv(EnvURL), func(r rune) bool {
			return r == ',' || r == ' ' || r == '\t' || r == '\n'
		})
	}
	if len(urls) == 0 {
		return DefaultURLs, nil
	}
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a URL: %w", s, err)
		}
		if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("%q is not an http:// or https:// URL", s)
		}
	}
	return urls, nil
}

// ask gets one endpoint's answer within timeout and parses it.
func ask(ctx context.Context, client *http.Client, timeout time.Duration, u string, allowPrivate bool) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return netip.Addr{}, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := client.Do(req)
	if err != nil {
		return netip.Addr{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return netip.Addr{}, fmt.Errorf("answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("reading the answer: %w", err)
	}
	if len(body) > maxAnswer {
		return netip.Addr{}, fmt.Errorf("the answer is longer than %d bytes, so it is not an address", maxAnswer)
	}
	return ParseAnswer(body, allowPrivate)
}

// ParseAnswer reads a "what is my IP" answer: exactly one IPv4 or IPv6
// address, optionally surrounded by white space, with no zone. An
// IPv4-mapped IPv6 address is returned as IPv4. Unless allowPrivate, the
// address must be one the internet can route back to: not unspecified,
// loopback, multicast, link-local, private (RFC 1918, fc00::/7) or shared
// (100.64.0.0/10).
func ParseAnswer(body []byte, allowPrivate bool) (netip.Addr, error) {
	s := strings.Trim(string(body), " \t\r\n")
	if s == "" {
		return netip.Addr{}, errors.New("the answer is empty")
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("the answer %q is not one IP address", clip(s))
	}
	if addr.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("the answer %q has a zone, so it is not an address seen from outside", s)
	}
	addr = addr.Unmap()
	if why := notPublic(addr); why != "" && (!allowPrivate || addr.IsUnspecified() || addr.IsMulticast()) {
		return netip.Addr{}, fmt.Errorf("the answer %s is %s, not an address the internet sees", addr, why)
	}
	return addr, nil
}

// shared is RFC 6598's carrier-grade NAT range.
var shared = netip.MustParsePrefix("100.64.0.0/10")

// notPublic says why addr cannot be a public source address, or "".
func notPublic(addr netip.Addr) string {
	switch {
	case addr.IsUnspecified():
		return "unspecified"
	case addr.IsLoopback():
		return "a loopback address"
	case addr.IsMulticast():
		return "a multicast address"
	case addr.IsLinkLocalUnicast():
		return "a link-local address"
	case addr.IsPrivate():
		return "a private address"
	case shared.Contains(addr):
		return "a carrier-grade NAT address (100.64.0.0/10)"
	}
	return ""
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 48 {
		return s[:48] + "…"
	}
	return s
}

package cloudinit

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Validate reports every problem with in, joined with errors.Join, or nil.
// Error messages never contain AgentConfig's content.
func (in Input) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(checkText("cluster", in.Cluster))
	add(checkText("instance id", in.InstanceID))
	add(checkLabel("node name", in.Name))
	add(checkDomain(in.Domain))
	if in.Name != "" && in.Domain != "" && len(in.Name)+1+len(in.Domain) > 253 {
		errs = append(errs, fmt.Errorf("fqdn %q is longer than 253 characters", in.Name+"."+in.Domain))
	}
	add(checkAddress(in))
	if in.OutboundMAC != "" {
		add(checkMAC(in.OutboundMAC))
		if in.OutboundMAC == in.MAC {
			errs = append(errs, fmt.Errorf("outbound MAC %q is the cluster NIC's MAC", in.OutboundMAC))
		}
	}
	errs = append(errs, checkPeers(in)...)
	add(checkAgentConfig(in.AgentConfig))
	add(in.Agent.validate())
	if in.SSH != nil {
		errs = append(errs, in.SSH.validate()...)
	}
	return errors.Join(errs...)
}

// validate checks the keys' form. The private key is never quoted.
func (s *SSH) validate() []error {
	var errs []error
	if len(s.AuthorizedKeys) == 0 {
		errs = append(errs, errors.New("ssh: no authorized key"))
	}
	for i, k := range s.AuthorizedKeys {
		if err := checkPublicKey(k); err != nil {
			errs = append(errs, fmt.Errorf("ssh: authorized key %d: %w", i, err))
		}
	}
	return errs
}

// checkPublicKey requires one printable line "TYPE BASE64 [COMMENT]".
func checkPublicKey(k string) error {
	f := strings.Fields(k)
	if len(f) < 2 || strings.IndexFunc(k, unicode.IsControl) >= 0 || !utf8.ValidString(k) || !strings.HasPrefix(f[0], "ssh-") && !strings.HasPrefix(f[0], "ecdsa-") && !strings.HasPrefix(f[0], "sk-") {
		return fmt.Errorf("%q is not one public key line like \"ssh-ed25519 AAAA... comment\"", k)
	}
	return nil
}

// checkText requires a non-empty UTF-8 string without control characters.
func checkText(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q is not valid UTF-8", what, s)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fmt.Errorf("%s %q contains control characters", what, s)
	}
	return nil
}

// checkLabel requires an RFC 1123 label: 1 to 63 characters of a-z, 0-9
// and '-', not starting or ending with '-'.
func checkLabel(what, s string) error {
	if !isLabel(s) {
		return fmt.Errorf("%s %q is not a valid host name: use 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'", what, s)
	}
	return nil
}

func isLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// checkDomain requires a DNS name of lowercase RFC 1123 labels, at most 253
// characters, without a trailing dot.
func checkDomain(d string) error {
	bad := d == "" || len(d) > 253
	for _, l := range strings.Split(d, ".") {
		bad = bad || !isLabel(l)
	}
	if bad {
		return fmt.Errorf("domain %q is not a valid DNS name: use dot-separated labels of lowercase letters, digits and '-', without a trailing dot", d)
	}
	return nil
}

// checkAddress checks the node's own address and, when it is set, the MAC
// of the NIC that network-config gives it to.
func checkAddress(in Input) error {
	if !in.Address.IsValid() {
		if in.MAC != "" {
			return checkMAC(in.MAC)
		}
		return nil
	}
	if in.MAC == "" {
		return fmt.Errorf("address %q is set but MAC is empty: network-config matches the cluster NIC by MAC", in.Address)
	}
	return checkMAC(in.MAC)
}

func checkMAC(s string) error {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return fmt.Errorf("MAC %q is not a MAC-48 address like \"52:54:00:aa:00:0a\"", s)
	}
	return nil
}

// checkPeers checks each peer's name and address; peers must differ from
// the node and from each other.
func checkPeers(in Input) []error {
	var errs []error
	seen := map[string]bool{}
	for i, p := range in.Peers {
		if err := checkLabel(fmt.Sprintf("peer %d name", i), p.Name); err != nil {
			errs = append(errs, err)
		}
		if !p.Address.IsValid() {
			errs = append(errs, fmt.Errorf("peer %q has no address", p.Name))
		} else if p.Address.Zone() != "" {
			errs = append(errs, fmt.Errorf("peer %q address %q has an IPv6 zone", p.Name, p.Address))
		}
		if p.Name == in.Name && p.Name != "" {
			errs = append(errs, fmt.Errorf("peer %q is the node itself", p.Name))
		}
		if seen[p.Name] {
			errs = append(errs, fmt.Errorf("peer %q is listed twice", p.Name))
		}
		seen[p.Name] = true
	}
	return errs
}

// checkAgentConfig requires valid JSON in UTF-8. The content is secret and
// is not quoted in the error.
func checkAgentConfig(c []byte) error {
	if len(c) == 0 {
		return errors.New("agent config is empty")
	}
	if !utf8.Valid(c) || !json.Valid(c) {
		return errors.New("agent config is not valid UTF-8 JSON")
	}
	return nil
}

func (a AgentSource) validate() error {
	switch a.Kind {
	case AgentSeed, AgentPreinstalled:
		return nil
	case AgentURL:
	default:
		return fmt.Errorf("agent source kind %q is not one of %q, %q, %q", a.Kind, AgentSeed, AgentURL, AgentPreinstalled)
	}
	var errs []error
	if u, err := url.Parse(a.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, fmt.Errorf("agent URL %q is not an http(s) URL", a.URL))
	}
	if b, err := hex.DecodeString(a.SHA256); err != nil || len(b) != 32 {
		errs = append(errs, fmt.Errorf("agent SHA256 %q is not 64 hex digits", a.SHA256))
	}
	return errors.Join(errs...)
}

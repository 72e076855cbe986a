package agentconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/internal/dnslabel"
	"github.com/clusterctl/clusterctl/internal/identity"
	"github.com/clusterctl/clusterctl/internal/pki"
	"github.com/clusterctl/clusterctl/internal/ports"
)

// Defaults applied by LoadConfig.
const (
	DefaultConfigPath       = "/etc/clusterctl/agent.json"
	DefaultBindAddr         = "0.0.0.0"
	DefaultPort             = ports.Gossip
	DefaultInstanceDataPath = "/run/cloud-init/instance-data.json"
	// DefaultRunDir holds what the agent offers the node's applications:
	// members.json, self.json and the agent.sock socket (agent/applications.go).
	DefaultRunDir = "/run/clusterctl"
	// DefaultSocketGroup is the group that may use the agent's socket,
	// besides root, when the group exists.
	DefaultSocketGroup = "clusterctl"
	// DefaultStateDir holds the agent's snapshot of the members it knew and
	// its keyring (directory 0700, files 0600).
	DefaultStateDir = "/var/lib/clusterctl-agent"
)

// Config is the agent's configuration, read from a JSON file that
// cloud-init writes to /etc/clusterctl/agent.json (mode 0600).
//
// Config's String, GoString and LogValue never show the gossip key.
type Config struct {
	// Cluster is the cluster name; it is the memberlist label, so members
	// of other clusters cannot talk to this one.
	Cluster string `json:"cluster"`
	// Name is the node name (an RFC 1123 label) and memberlist node name.
	Name string `json:"name"`
	// Nonce is the value the CLI rendered for this incarnation of the node;
	// the CLI waits for a member whose meta carries it.
	Nonce    string `json:"nonce"`
	Provider string `json:"provider"`
	// InstanceID is the provider's id of the machine. When empty, LoadConfig
	// reads v1.instance_id from InstanceDataPath.
	InstanceID string `json:"instance_id,omitempty"`
	// InstanceDataPath is cloud-init's instance data file
	// (default /run/cloud-init/instance-data.json).
	InstanceDataPath string            `json:"instance_data_path,omitempty"`
	Tags             map[string]string `json:"tags,omitempty"`
	// AppRole is the node's application role (worker, master, ...), a DNS
	// label, published as the app_role tag; "" for none.
	AppRole string `json:"app_role,omitempty"`
	// Handlers are the commands the agent runs on membership events
	// (agent/handlers.go).
	Handlers []HandlerConfig `json:"handlers,omitempty"`
	// RunDir is where the agent writes members.json and self.json and
	// listens on agent.sock for `clusterctl-agent members` and `seeds`
	// (LoadConfig: default DefaultRunDir). New with an empty RunDir offers
	// none of them (in-process tests).
	RunDir string `json:"run_dir,omitempty"`
	// SocketGroup is the group given the socket (mode 0660) when it
	// exists (LoadConfig: default DefaultSocketGroup).
	SocketGroup string `json:"socket_group,omitempty"`
	// Key is the gossip encryption key (16, 24 or 32 bytes; base64 in JSON)
	// the keyring starts with. After a rotation the keyring in StateDir
	// holds the current keys and Key is no longer used.
	Key []byte `json:"key"`
	// BindAddr is the address memberlist listens on (default 0.0.0.0).
	BindAddr string `json:"bind_addr,omitempty"`
	// Port is the gossip port, TCP and UDP (LoadConfig: default 7946).
	// New accepts 0 and then lets the kernel pick a free port.
	Port int `json:"port,omitempty"`
	// Exactly one of AdvertiseAddr and AdvertiseCIDR is set. With
	// AdvertiseCIDR the agent waits until an interface has an address
	// inside it and advertises that address.
	AdvertiseAddr string `json:"advertise_addr,omitempty"`
	AdvertiseCIDR string `json:"advertise_cidr,omitempty"`
	// Seeds are "host:port" addresses of members to join.
	Seeds []string `json:"seeds,omitempty"`
	// HostsFile, when set (cloud-init sets /etc/hosts), is kept up to date
	// with one line per alive node.
	HostsFile string `json:"hosts_file,omitempty"`
	// Domain is used for the fully qualified names in host lines.
	Domain string `json:"domain,omitempty"`
	// StateDir is where the agent keeps what survives a restart: serf's
	// snapshot of the members it knew (rejoined at start, with no seeds
	// needed) and the keyring (which follows key rotations, so it wins over
	// Key once written). LoadConfig defaults it to DefaultStateDir; New with
	// an empty StateDir keeps nothing on disk (in-process tests).
	StateDir string `json:"state_dir,omitempty"`
	// Timing overrides the gossip timings (zero fields: DefaultTiming).
	Timing Timing `json:"timing,omitzero"`
	// API is the node's side of the CLI's mutually authenticated API
	// (package nodeapi). Without it the agent serves no API.
	API APIConfig `json:"api,omitzero"`
	// Identity proves to the other members who this node is (package
	// internal/identity); the agent refuses every member that cannot prove
	// its own. Required.
	Identity IdentityConfig `json:"identity"`
	// Enrol, when set, is the node's bootstrap credential: its config then
	// carries no gossip key, TLS key or identity key; the node makes its
	// own keys and gets the rest from the CLI over the API (agent/enrol.go). It
	// needs StateDir, where it keeps them.
	Enrol *EnrolConfig `json:"enrol,omitempty"`
	// ClusterCIDR, when set, is the cluster network: members that advertise
	// an address outside it are refused. With advertise_cidr and no
	// cluster_cidr, advertise_cidr is the cluster network.
	ClusterCIDR string `json:"cluster_cidr,omitempty"`
}

// IdentityConfig is the node's gossip identity: its Ed25519 identity key,
// the CA's grant of its name and nonce to that key, and the CA certificate
// that every member's grant must verify against. Key is never shown by
// String.
type IdentityConfig struct {
	Key   string `json:"key"`   // base64 Ed25519 seed (identity.EncodeKey)
	Grant []byte `json:"grant"` // the CA's signature, base64 in JSON
	CA    string `json:"ca"`    // PEM
}

// IdentityCredentials returns the node's gossip identity: c's claim, its
// identity key and the CA's grant.
func (c Config) IdentityCredentials() (identity.Credentials, error) {
	key, err := identity.DecodeKey(c.Identity.Key)
	if err != nil {
		return identity.Credentials{}, err
	}
	return identity.Credentials{
		Claim: identity.Claim{Cluster: c.Cluster, Name: c.Name, Role: identity.RoleNode, Nonce: c.Nonce},
		Key:   key, Grant: c.Identity.Grant,
	}, nil
}

// clusterPrefix is the cluster network members must advertise in (the
// zero Prefix when none is known).
func (c Config) clusterPrefix() netip.Prefix {
	s := c.ClusterCIDR
	if s == "" {
		s = c.AdvertiseCIDR
	}
	p, _ := netip.ParsePrefix(s)
	return p
}

// Verifier checks the other members' identities.
func (c Config) Verifier() (*identity.Verifier, error) {
	return identity.NewVerifier(c.Cluster, []byte(c.Identity.CA), c.clusterPrefix())
}

// EnrolConfig is a new node's bootstrap credential (nodeapi/enrol.go): the
// only secret in its user-data, single use, bound to the node's name and
// nonce by the CLI, and expiring. Token is never shown by String.
type EnrolConfig struct {
	Token   []byte    `json:"token"`   // base64 in JSON
	Expires time.Time `json:"expires"` // no enrolment after it
	// SSHHostKey is the path of the node's SSH host public key, sent with
	// the offer so that the CLI pins it (default
	// /etc/ssh/ssh_host_ed25519_key.pub; a missing file sends none).
	SSHHostKey string `json:"ssh_host_key,omitempty"`
}

// DefaultSSHHostKey is where sshd's ed25519 host public key is on Debian.
const DefaultSSHHostKey = "/etc/ssh/ssh_host_ed25519_key.pub"

// APIConfig is the TLS material and address of the agent's API. The CLI
// renders it from the cluster's CA: the node's own certificate (its name in
// the SAN) and key, and the CA certificate that clients must chain to.
type APIConfig struct {
	// BindAddr is the address the API listens on (LoadConfig: default
	// 0.0.0.0; empty: every address).
	BindAddr string `json:"bind_addr,omitempty"`
	// Port is the API's TCP port (LoadConfig: default ports.API).
	Port int `json:"port,omitempty"`
	// Cert, Key and CA are PEM. Key is never shown by String.
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	CA   string `json:"ca,omitempty"`
}

// Enabled reports whether the API is configured.
func (a APIConfig) Enabled() bool { return a.Cert != "" || a.Key != "" || a.CA != "" }

// Credentials returns the API's TLS material for cluster.
func (a APIConfig) Credentials(cluster string) pki.Credentials {
	return pki.Credentials{Cluster: cluster, CertPEM: []byte(a.Cert), KeyPEM: []byte(a.Key), CAPEM: []byte(a.CA)}
}

// Addr is the API's listen address.
func (a APIConfig) Addr() string { return net.JoinHostPort(a.BindAddr, strconv.Itoa(a.Port)) }

// String describes the config without its key.
func (c Config) String() string {
	r := c
	r.Key = nil
	if r.API.Key != "" {
		r.API.Key = "<redacted>"
	}
	if r.Identity.Key != "" {
		r.Identity.Key = "<redacted>"
	}
	if r.Enrol != nil {
		e := *r.Enrol
		e.Token = []byte("<redacted>")
		r.Enrol = &e
	}
	type plain Config // drops the methods, so no recursion
	return fmt.Sprintf("%+v", plain(r)) + " key:" + keyDescription(c.Key)
}

// GoString is like String, so %#v does not show the key either.
func (c Config) GoString() string { return c.String() }

// LogValue makes slog show the config without its key.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("cluster", c.Cluster),
		slog.String("name", c.Name),
		slog.String("nonce", c.Nonce),
		slog.String("provider", c.Provider),
		slog.String("instance_id", c.InstanceID),
		slog.String("bind", c.BindAddr),
		slog.Int("port", c.Port),
		slog.String("advertise_addr", c.AdvertiseAddr),
		slog.String("advertise_cidr", c.AdvertiseCIDR),
		slog.Any("seeds", c.Seeds),
		slog.String("hosts_file", c.HostsFile),
		slog.String("state_dir", c.StateDir),
		slog.String("key", keyDescription(c.Key)),
	)
}

func keyDescription(k []byte) string {
	if len(k) == 0 {
		return "<none>"
	}
	return fmt.Sprintf("<redacted, %d bytes>", len(k))
}

// ValidName reports whether s is an RFC 1123 label in lower case: 1 to 63
// characters a-z, 0-9 and '-', neither starting nor ending with '-'.
func ValidName(s string) bool { return dnslabel.Valid(s) }

// ValidDomain reports whether s is a DNS name: at most 253 characters of
// host labels, with an optional final dot.
func ValidDomain(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if !dnslabel.ValidHost(l) {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x21 || r == 0x7f {
			return false
		}
	}
	return true
}

// LoadConfig reads the agent config at path, applies defaults (bind_addr,
// port, instance_id from cloud-init's instance data) and validates it. All
// problems are reported at once (errors.Join). No error shows the key.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("agent config: %w", err)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("agent config %q: %w", path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Config{}, fmt.Errorf("agent config %q: unexpected data after the JSON object", path)
	}
	c.applyDefaults()
	var errs []error
	if c.InstanceID == "" {
		id, err := readInstanceID(c.InstanceDataPath)
		if err != nil {
			errs = append(errs, fmt.Errorf("instance_id is empty and cannot be read from cloud-init: %w", err))
		}
		c.InstanceID = id
	}
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("agent config %q: %w", path, err)
	}
	return c, nil
}

func (c *Config) applyDefaults() {
	if c.BindAddr == "" {
		c.BindAddr = DefaultBindAddr
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.InstanceDataPath == "" {
		c.InstanceDataPath = DefaultInstanceDataPath
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.RunDir == "" {
		c.RunDir = DefaultRunDir
	}
	if c.SocketGroup == "" {
		c.SocketGroup = DefaultSocketGroup
	}
	if c.API.Enabled() {
		if c.API.BindAddr == "" {
			c.API.BindAddr = DefaultBindAddr
		}
		if c.API.Port == 0 {
			c.API.Port = ports.API
		}
	}
}

func readInstanceID(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var doc struct {
		V1 struct {
			InstanceID string `json:"instance_id"`
		} `json:"v1"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("%q: %w", path, err)
	}
	if doc.V1.InstanceID == "" {
		return "", fmt.Errorf("%q has no v1.instance_id", path)
	}
	return doc.V1.InstanceID, nil
}

// Validate reports every problem with c at once. It does not apply
// defaults: an empty BindAddr is an error, Port 0 is allowed (a free port).
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch {
	case c.Cluster == "":
		bad("cluster: must be set")
	case len(c.Cluster) > LabelMaxSize:
		bad("cluster: %q is longer than %d bytes", c.Cluster, LabelMaxSize)
	case !printable(c.Cluster):
		bad("cluster: %q must not contain spaces or control characters", c.Cluster)
	}
	if !ValidName(c.Name) {
		bad("name: %q is not an RFC 1123 label (1-63 characters a-z, 0-9 and '-', not starting or ending with '-')", c.Name)
	}
	switch {
	case c.Nonce == "":
		bad("nonce: must be set")
	case len(c.Nonce) > 128 || !printable(c.Nonce):
		bad("nonce: %q must be at most 128 printable characters without spaces", c.Nonce)
	}
	if c.Provider == "" {
		bad("provider: must be set")
	} else if !printable(c.Provider) {
		bad("provider: %q must not contain spaces or control characters", c.Provider)
	}
	for k := range c.Tags {
		if k == "" || !printable(k) {
			bad("tags: key %q must be non-empty without spaces or control characters", k)
		}
	}
	enrolling := c.Enrol != nil
	switch len(c.Key) {
	case 16, 24, 32:
	case 0:
		if !enrolling {
			bad("key: must be set (16, 24 or 32 bytes, base64 in JSON), or enrol")
		}
	default:
		bad("key: must be 16, 24 or 32 bytes, got %d", len(c.Key))
	}
	if enrolling {
		switch {
		case len(c.Enrol.Token) < 16:
			bad("enrol.token: must be at least 16 bytes (base64 in JSON)")
		case c.Enrol.Expires.IsZero():
			bad("enrol.expires: must be set")
		case c.StateDir == "":
			bad("state_dir: must be set to enrol (the node keeps its own keys there)")
		case c.API.CA == "":
			bad("api.ca: must be set to enrol")
		}
	}
	if _, err := netip.ParseAddr(c.BindAddr); err != nil {
		bad("bind_addr: %q is not an IP address", c.BindAddr)
	}
	if c.Port < 0 || c.Port > 65535 {
		bad("port: %d is outside 1-65535", c.Port)
	}
	switch {
	case c.AdvertiseAddr != "" && c.AdvertiseCIDR != "":
		bad("advertise_addr and advertise_cidr: set only one")
	case c.AdvertiseAddr == "" && c.AdvertiseCIDR == "":
		bad("advertise_addr or advertise_cidr: one must be set (memberlist's own guess often picks a NAT address)")
	case c.AdvertiseAddr != "":
		if a, err := netip.ParseAddr(c.AdvertiseAddr); err != nil || a.IsUnspecified() {
			bad("advertise_addr: %q is not a usable IP address", c.AdvertiseAddr)
		}
	default:
		if _, err := netip.ParsePrefix(c.AdvertiseCIDR); err != nil {
			bad("advertise_cidr: %q is not a CIDR such as 192.168.56.0/24", c.AdvertiseCIDR)
		}
	}
	for _, s := range c.Seeds {
		if err := validHostPort(s); err != nil {
			bad("seeds: %q: %v", s, err)
		}
	}
	if c.HostsFile != "" && !filepath.IsAbs(c.HostsFile) {
		bad("hosts_file: %q must be an absolute path", c.HostsFile)
	}
	if c.Domain != "" && !ValidDomain(c.Domain) {
		bad("domain: %q is not a DNS name", c.Domain)
	}
	if c.API.Enabled() && !(enrolling && c.API.Cert == "" && c.API.Key == "") {
		if c.API.Cert == "" || c.API.Key == "" || c.API.CA == "" {
			bad("api: cert, key and ca must all be set")
		} else if _, err := c.API.Credentials(c.Cluster).ServerTLS(); err != nil {
			bad("api: %v", err)
		}
		if _, err := netip.ParseAddr(c.API.BindAddr); c.API.BindAddr != "" && err != nil {
			bad("api.bind_addr: %q is not an IP address", c.API.BindAddr)
		}
		if c.API.Port < 0 || c.API.Port > 65535 {
			bad("api.port: %d is outside 1-65535", c.API.Port)
		}
	}
	if v, err := c.Verifier(); err != nil {
		bad("identity.ca: %v", err)
	} else if enrolling && c.Identity.Key == "" && c.Identity.Grant == nil {
		// made on the node, granted at enrolment
	} else if cr, err := c.IdentityCredentials(); err != nil {
		bad("identity.key: %v", err)
	} else if err := v.CheckGrant(cr); err != nil {
		bad("identity.grant: %v", err)
	}
	if c.ClusterCIDR != "" {
		if p, err := netip.ParsePrefix(c.ClusterCIDR); err != nil {
			bad("cluster_cidr: %q is not a CIDR such as 192.168.56.0/24", c.ClusterCIDR)
		} else if a, err := netip.ParseAddr(c.AdvertiseAddr); err == nil && !p.Contains(a.Unmap()) {
			bad("advertise_addr: %s is outside cluster_cidr %s; the other members would refuse this node", a, p)
		}
	}
	if c.StateDir != "" && !filepath.IsAbs(c.StateDir) {
		bad("state_dir: %q must be an absolute path", c.StateDir)
	}
	if c.RunDir != "" && !filepath.IsAbs(c.RunDir) {
		bad("run_dir: %q must be an absolute path", c.RunDir)
	}
	if c.AppRole != "" && !dnslabel.Valid(c.AppRole) {
		bad("app_role: %q is not a DNS label (1-63 characters a-z, 0-9 and '-')", c.AppRole)
	}
	for i, h := range c.Handlers {
		if err := h.Validate(); err != nil {
			bad("handlers[%d]: %v", i, err)
		}
	}
	if err := c.Timing.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func validHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New(`must be "host:port"`)
	}
	if host == "" {
		return errors.New("host is empty")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q is outside 1-65535", port)
	}
	return nil
}

// NewIdentity issues the identity of the node name, incarnation nonce, of
// the CA's cluster: a new identity key and the CA's grant (what the CLI
// renders into a node's agent config).
func NewIdentity(ca *pki.CA, name, nonce string) (IdentityConfig, error) {
	creds, err := identity.Issue(ca, identity.Claim{Cluster: ca.Cluster(), Name: name, Role: identity.RoleNode, Nonce: nonce})
	if err != nil {
		return IdentityConfig{}, err
	}
	return IdentityConfig{Key: identity.EncodeKey(creds.Key), Grant: creds.Grant, CA: string(ca.CertPEM())}, nil
}

// Package identity proves who a gossip member is. It runs in both the CLI
// and the agent.
//
// The gossip key only proves that a sender may talk to the cluster: every
// node holds it. What a member claims to be (its name, role, nonce,
// cluster and the address it advertises) is proved by two signatures that
// travel in its serf tags, under the key "id":
//
//   - a grant: the cluster CA's signature (ECDSA P-256, the CA of
//     internal/pki, whose key never leaves the CLI's state directory) over
//     the member's cluster, name, role and nonce and an Ed25519 public key,
//     the node's identity key. The CLI makes it when it renders the node.
//   - a statement: the node's signature, with that identity key, over the
//     address it advertises and every other tag it publishes (hostname,
//     provider, instance id, user tags).
//
// Agents check both (Verifier.Verify) before a member counts for anything:
// a member without a grant for its name and nonce, or that advertises
// another address, or changed a tag, is refused. The id tag takes 217
// bytes of memberlist's 512-byte node meta (docs/nodeapi.md has the
// budget).
package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/clusterctl/clusterctl/internal/dnslabel"
	"github.com/clusterctl/clusterctl/internal/pki"
)

// Tag keys that take part in an identity. The agent publishes its other
// tags next to them; all are covered by the statement.
const (
	TagCluster = "cluster"
	TagName    = "name"
	TagNonce   = "nonce"
	TagRole    = "role"
	TagID      = "id" // version || identity public key || grant || statement, base64url
)

// RoleNode is the only role a gossip member can be granted: an agent.
const RoleNode = "node"

const (
	version     = 1
	grantDomain = "clusterctl/identity/v1 grant\x00"
	stmtDomain  = "clusterctl/identity/v1 statement\x00"
	// rawSize is the id tag's size before base64.
	rawSize = 1 + ed25519.PublicKeySize + pki.SignatureSize + ed25519.SignatureSize
)

// TagSize is the length of the id tag's value.
var TagSize = base64.RawURLEncoding.EncodedLen(rawSize)

// ErrRefused is wrapped by every error of Verify.
var ErrRefused = errors.New("member identity refused")

// Claim is what the CA grants: who a member is.
type Claim struct {
	Cluster, Name, Role, Nonce string
}

func (c Claim) check() error {
	switch {
	case !dnslabel.Valid(c.Cluster):
		return fmt.Errorf("cluster %q is not a DNS label", c.Cluster)
	case !dnslabel.Valid(c.Name):
		return fmt.Errorf("name %q is not a DNS label", c.Name)
	case c.Role != RoleNode:
		return fmt.Errorf("role %q is not %q", c.Role, RoleNode)
	case c.Nonce == "" || len(c.Nonce) > 64:
		return fmt.Errorf("nonce of %d bytes (want 1 to 64)", len(c.Nonce))
	}
	return nil
}

// Credentials are what a node holds to prove its identity: the private
// identity key and the CA's grant for it. String never shows the key.
type Credentials struct {
	Claim Claim
	Key   ed25519.PrivateKey
	Grant []byte // the CA's signature over the claim and the public key
}

func (c Credentials) String() string {
	return fmt.Sprintf("identity.Credentials{%s/%s, key: redacted}", c.Claim.Cluster, c.Claim.Name)
}

// GoString is String, so %#v does not show the key either.
func (c Credentials) GoString() string { return c.String() }

// Issue makes a new identity key for claim and has the CA grant it.
func Issue(ca *pki.CA, claim Claim) (Credentials, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Credentials{}, fmt.Errorf("identity of %q: %w", claim.Name, err)
	}
	grant, err := GrantKey(ca, claim, pub)
	if err != nil {
		return Credentials{}, err
	}
	return Credentials{Claim: claim, Key: key, Grant: grant}, nil
}

// GrantKey has the CA grant claim to the identity key pub that a node
// made itself (it enrols; its private key never leaves it).
func GrantKey(ca *pki.CA, claim Claim, pub ed25519.PublicKey) ([]byte, error) {
	if err := claim.check(); err != nil {
		return nil, fmt.Errorf("identity of %q: %w", claim.Name, err)
	}
	if claim.Cluster != ca.Cluster() {
		return nil, fmt.Errorf("identity of %q: the CA is cluster %q's, not %q's", claim.Name, ca.Cluster(), claim.Cluster)
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("identity of %q: an identity key of %d bytes, not %d", claim.Name, len(pub), ed25519.PublicKeySize)
	}
	return ca.Sign(grantMessage(claim, pub))
}

// Tag returns the id tag's value for a member that advertises addr and
// publishes tags (which must carry the claim's cluster, name, role and
// nonce; an id tag in them is ignored).
func (c Credentials) Tag(addr netip.Addr, tags map[string]string) (string, error) {
	if len(c.Key) != ed25519.PrivateKeySize || len(c.Grant) != pki.SignatureSize {
		return "", fmt.Errorf("identity of %q: no identity key or grant", c.Claim.Name)
	}
	if got := claimOf(tags); got != c.Claim {
		return "", fmt.Errorf("identity of %q: the tags claim %s/%s (role %q, nonce %q), the grant %s/%s",
			c.Claim.Name, got.Cluster, got.Name, got.Role, got.Nonce, c.Claim.Cluster, c.Claim.Name)
	}
	raw := make([]byte, 0, rawSize)
	raw = append(raw, version)
	raw = append(raw, c.Key.Public().(ed25519.PublicKey)...)
	raw = append(raw, c.Grant...)
	raw = append(raw, ed25519.Sign(c.Key, statementMessage(addr, tags))...)
	return base64.RawURLEncoding.EncodeToString(raw), nil
}

// Verifier checks members' identities for one cluster.
type Verifier struct {
	cluster string
	ca      *ecdsa.PublicKey
	cidr    netip.Prefix // the zero Prefix: any address

	// verified remembers members that verified, by everything that was
	// checked (address, tags, id), so that the same member in every
	// push/pull costs a lookup, not two signature checks. Bounded: it is
	// emptied when it reaches cacheSize.
	mu       sync.Mutex
	verified map[string]Claim
}

// cacheSize bounds the verified members a Verifier remembers.
const cacheSize = 8192

// NewVerifier returns a Verifier for cluster that trusts the CA
// certificate caPEM and, when cidr is valid, accepts only members that
// advertise an address inside it.
func NewVerifier(cluster string, caPEM []byte, cidr netip.Prefix) (*Verifier, error) {
	pub, err := pki.CAPublicKey(caPEM)
	if err != nil {
		return nil, fmt.Errorf("identity verifier: %w", err)
	}
	return &Verifier{cluster: cluster, ca: pub, cidr: cidr.Masked(), verified: map[string]Claim{}}, nil
}

// Verify checks that the member name, advertising addr with tags, is who
// the CA says: the claim in its tags (this cluster, its own name, role
// node, a nonce) is granted to the identity key in its id tag, and that key
// signed its address and every tag. It returns the verified claim.
func (v *Verifier) Verify(name string, addr netip.Addr, tags map[string]string) (Claim, error) {
	claim := claimOf(tags)
	refuse := func(format string, args ...any) (Claim, error) {
		return Claim{}, fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
	}
	switch {
	case !dnslabel.Valid(name):
		return refuse("name %q is not a DNS label", name)
	case claim.Name != name:
		return refuse("member %s carries the name tag %q", name, claim.Name)
	case claim.Cluster != v.cluster:
		return refuse("member %s claims cluster %q, not %q", name, claim.Cluster, v.cluster)
	case !addr.IsValid():
		return refuse("member %s has no valid address", name)
	case v.cidr.IsValid() && !v.cidr.Contains(addr.Unmap()):
		return refuse("member %s advertises %s, outside the cluster network %s", name, addr, v.cidr)
	}
	if err := claim.check(); err != nil {
		return refuse("member %s: %v", name, err)
	}
	stmtMsg := statementMessage(addr, tags)
	key := string(stmtMsg) + "\x00" + tags[TagID]
	v.mu.Lock()
	c, ok := v.verified[key]
	v.mu.Unlock()
	if ok {
		return c, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(tags[TagID])
	if err != nil || len(raw) != rawSize || raw[0] != version {
		return refuse("member %s has no identity (no valid %q tag)", name, TagID)
	}
	pub := ed25519.PublicKey(raw[1 : 1+ed25519.PublicKeySize])
	grant := raw[1+ed25519.PublicKeySize : 1+ed25519.PublicKeySize+pki.SignatureSize]
	stmt := raw[1+ed25519.PublicKeySize+pki.SignatureSize:]
	if !pki.VerifySignature(v.ca, grantMessage(claim, pub), grant) {
		return refuse("member %s: its identity is not granted by the cluster's CA for this name and nonce", name)
	}
	if !ed25519.Verify(pub, stmtMsg, stmt) {
		return refuse("member %s: its address %s or tags are not the ones its identity key signed", name, addr)
	}
	v.mu.Lock()
	if len(v.verified) >= cacheSize {
		clear(v.verified)
	}
	v.verified[key] = claim
	v.mu.Unlock()
	return claim, nil
}

// CheckGrant checks that creds' grant is the CA's for its claim and key:
// what an agent checks of its own config before it starts.
func (v *Verifier) CheckGrant(creds Credentials) error {
	if err := creds.Claim.check(); err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	if creds.Claim.Cluster != v.cluster {
		return fmt.Errorf("%w: the grant is for cluster %q, not %q", ErrRefused, creds.Claim.Cluster, v.cluster)
	}
	if len(creds.Key) != ed25519.PrivateKeySize || !pki.VerifySignature(v.ca, grantMessage(creds.Claim, creds.Key.Public().(ed25519.PublicKey)), creds.Grant) {
		return fmt.Errorf("%w: the grant is not the CA's for %s with nonce %q and this identity key", ErrRefused, creds.Claim.Name, creds.Claim.Nonce)
	}
	return nil
}

func claimOf(tags map[string]string) Claim {
	return Claim{Cluster: tags[TagCluster], Name: tags[TagName], Role: tags[TagRole], Nonce: tags[TagNonce]}
}

// grantMessage is what the CA signs: the domain, the claim and the public
// key, each field length-prefixed.
func grantMessage(c Claim, pub ed25519.PublicKey) []byte {
	b := []byte(grantDomain)
	for _, f := range []string{c.Cluster, c.Name, c.Role, c.Nonce, string(pub)} {
		b = appendField(b, f)
	}
	return b
}

// statementMessage is what the identity key signs: the domain, the
// advertised address (16 bytes) and every tag but the id, sorted by key,
// each key and value length-prefixed.
func statementMessage(addr netip.Addr, tags map[string]string) []byte {
	a16 := addr.Unmap().As16()
	b := appendField([]byte(stmtDomain), string(a16[:]))
	keys := make([]string, 0, len(tags))
	for k := range tags {
		if k != TagID {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		b = appendField(appendField(b, k), tags[k])
	}
	return b
}

func appendField(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// EncodeKey and DecodeKey are the text form of an identity key in the
// agent's config: the 32-byte seed, base64.
func EncodeKey(k ed25519.PrivateKey) string { return base64.StdEncoding.EncodeToString(k.Seed()) }

// DecodeKey reads EncodeKey's form.
func DecodeKey(s string) (ed25519.PrivateKey, error) {
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, errors.New("identity key: not a base64 Ed25519 seed of 32 bytes")
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

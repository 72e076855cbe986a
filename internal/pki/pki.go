// Package pki is the per-cluster certificate authority behind the agents'
// API (package nodeapi). Create makes a cluster's CA once, in the cluster's
// state directory (ca.crt, and ca.key with mode 0600, which never leaves that
// directory); Load reads it back and refuses, with a fix, when it is missing
// or corrupt, so that a new CA is never made silently for an existing
// cluster. The CA issues each node a long-lived certificate (its name as a
// DNS SAN, its addresses as IP SANs) and the CLI a short-lived client
// certificate, fresh for each run and never written to disk.
//
// Every certificate names its cluster (subject O) and its role (subject OU:
// "node" or "cli"). Credentials builds the TLS 1.3 configurations of both
// sides: a node accepts only a client certificate of the role "cli" from its
// own cluster's CA; the CLI accepts only a server certificate of the role
// "node" for the very node name it dialled.
//
// Keys are ECDSA P-256. The CA has no name constraints: node names are single
// DNS labels, not names under one domain, so there is no domain to constrain
// to; the CA is trusted by nothing but its own cluster (it never enters a
// system trust store) and cannot sign intermediates (path length 0).
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"time"

	"github.com/clusterctl/clusterctl/internal/dnslabel"
)

// Role is what a certificate's holder is, written in its subject's OU.
type Role string

const (
	RoleNode Role = "node" // an agent: serves the API (and may be a client)
	RoleCLI  Role = "cli"  // the CLI: the only client an agent answers
)

// Validity of what the CA signs. A node's certificate lasts a year and is
// renewed through its API by any CLI command that reaches it once two
// thirds of its life have passed (NeedsRenewal). The CLI's certificate is
// made for each run. NotBefore is set back by Backdate
// so that a clock a little behind does not refuse a fresh certificate.
const (
	CAValidity   = 20 * 365 * 24 * time.Hour
	NodeValidity = 365 * 24 * time.Hour
	CLIValidity  = 24 * time.Hour
	Backdate     = time.Hour
)

// CA is a cluster's certificate authority, loaded with its key.
type CA struct {
	// Now is the clock certificates are dated by; nil means time.Now.
	Now func() time.Time

	cluster string
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
}

// Cluster is the name of the cluster the CA belongs to.
func (ca *CA) Cluster() string { return ca.cluster }

// CertPEM is the CA's certificate, PEM-encoded: what nodes and the CLI trust.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.certPEM...) }

// NotAfter is when the CA expires.
func (ca *CA) NotAfter() time.Time { return ca.cert.NotAfter }

func (ca *CA) now() time.Time {
	if ca.Now != nil {
		return ca.Now()
	}
	return time.Now()
}

// newCA makes a CA for cluster in memory.
func newCA(cluster string, now time.Time) (*CA, error) {
	if !dnslabel.Valid(cluster) {
		return nil, fmt.Errorf("CA: cluster name %q is not a DNS label", cluster)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA: generate key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "clusterctl CA " + cluster, Organization: []string{cluster}},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := sign(tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	return &CA{cluster: cluster, cert: cert, certPEM: encodeCert(der), key: key}, nil
}

// IssueNode makes the certificate and key of the node name, with its
// addresses (when known) as IP SANs. The result carries the CA's
// certificate too: all three go into the node's agent config.
func (ca *CA) IssueNode(name string, ips []netip.Addr) (Credentials, error) {
	tmpl, err := ca.nodeTemplate(name, ips)
	if err != nil {
		return Credentials{}, err
	}
	return ca.issue(tmpl)
}

// nodeTemplate is the certificate of a node.
func (ca *CA) nodeTemplate(name string, ips []netip.Addr) (*x509.Certificate, error) {
	if !dnslabel.Valid(name) {
		return nil, fmt.Errorf("node certificate: node name %q is not a DNS label", name)
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		Subject:     subject(ca.cluster, RoleNode, name),
		DNSNames:    []string{name},
		NotBefore:   now.Add(-Backdate),
		NotAfter:    earliest(now.Add(NodeValidity), ca.cert.NotAfter),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, ip := range ips {
		if !ip.IsValid() {
			return nil, fmt.Errorf("node certificate of %s: an invalid IP address", name)
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.Unmap().AsSlice()))
	}
	return tmpl, nil
}

// IssueNodeKey certifies a public key the node made itself (it enrols
// over the API; its private key never leaves it): the certificate of the
// node name, with its addresses (when known) as IP SANs, PEM.
func (ca *CA) IssueNodeKey(name string, ips []netip.Addr, pub crypto.PublicKey) ([]byte, error) {
	tmpl, err := ca.nodeTemplate(name, ips)
	if err != nil {
		return nil, err
	}
	der, err := sign(tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", name, err)
	}
	return encodeCert(der), nil
}

// NeedsRenewal reports whether cert is past two thirds of its life at now.
func NeedsRenewal(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return now.After(cert.NotBefore.Add(life * 2 / 3))
}

// IssueCLI makes a client certificate for this run of the CLI, valid for
// CLIValidity. It is meant to live in memory only.
func (ca *CA) IssueCLI() (Credentials, error) {
	now := ca.now()
	return ca.issue(&x509.Certificate{
		Subject:     subject(ca.cluster, RoleCLI, "clusterctl"),
		NotBefore:   now.Add(-Backdate),
		NotAfter:    earliest(now.Add(CLIValidity), ca.cert.NotAfter),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

func (ca *CA) issue(tmpl *x509.Certificate) (Credentials, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Credentials{}, fmt.Errorf("certificate %s: generate key: %w", tmpl.Subject.CommonName, err)
	}
	der, err := sign(tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return Credentials{}, fmt.Errorf("certificate %s: %w", tmpl.Subject.CommonName, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return Credentials{}, fmt.Errorf("certificate %s: %w", tmpl.Subject.CommonName, err)
	}
	return Credentials{Cluster: ca.cluster, CertPEM: encodeCert(der), KeyPEM: keyPEM, CAPEM: ca.CertPEM()}, nil
}

// sign fills in a random serial number and signs tmpl with the parent's key.
func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, priv *ecdsa.PrivateKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return der, nil
}

func subject(cluster string, role Role, name string) pkix.Name {
	return pkix.Name{CommonName: name, Organization: []string{cluster}, OrganizationalUnit: []string{string(role)}}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// ErrWrongPeer is wrapped by CheckPeer's errors.
var ErrWrongPeer = errors.New("peer certificate refused")

// CheckPeer checks that cert, already verified against the cluster's CA,
// belongs to cluster and holds role.
func CheckPeer(cert *x509.Certificate, cluster string, role Role) error {
	if got := cert.Subject.Organization; len(got) != 1 || got[0] != cluster {
		return fmt.Errorf("%w: %q is for cluster %q, not %q", ErrWrongPeer, cert.Subject.CommonName, got, cluster)
	}
	if got := cert.Subject.OrganizationalUnit; len(got) != 1 || got[0] != string(role) {
		return fmt.Errorf("%w: %q has role %q, not %q", ErrWrongPeer, cert.Subject.CommonName, got, role)
	}
	return nil
}

// SignatureSize is the size of Sign's signatures: r and s of ECDSA P-256,
// 32 bytes each, big-endian.
const SignatureSize = 64

// Sign signs msg (SHA-256, ECDSA P-256) with the CA's key and returns the
// fixed-size form (r || s) that fits in a member's gossip tags. Callers
// put a domain-separating prefix of their own at the start of msg.
func (ca *CA) Sign(msg []byte) ([]byte, error) {
	digest := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, ca.key, digest[:])
	if err != nil {
		return nil, fmt.Errorf("CA: sign: %w", err)
	}
	out := make([]byte, SignatureSize)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, nil
}

// VerifySignature checks a signature made by Sign against the CA
// certificate's public key.
func VerifySignature(pub *ecdsa.PublicKey, msg, sig []byte) bool {
	if len(sig) != SignatureSize {
		return false
	}
	digest := sha256.Sum256(msg)
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(pub, digest[:], r, s)
}

// CAPublicKey reads the public key of a CA certificate (PEM), as a node
// gets it in its agent config.
func CAPublicKey(caPEM []byte) (*ecdsa.PublicKey, error) {
	cert, err := decodeCert(caPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("CA certificate: not a CA")
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("CA certificate: not an ECDSA P-256 key")
	}
	return pub, nil
}

package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/clusterctl/clusterctl/internal/identity"
	"github.com/clusterctl/clusterctl/internal/pki"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// Enrolment, the CLI's side (nodeapi/enrol.go has the protocol). A new
// node's user-data carries a bootstrap token and no long-lived secret;
// while up waits for the node to join it enrols it over its API: it checks
// the node's offer (a MAC keyed by the token and bound to the connection),
// certifies the node's own TLS key for a year, grants its identity key its
// name and nonce, and hands it the gossip keyring. The token is then
// forgotten, so neither the node nor the CLI accepts it again.

// bootstrapToken makes a node's bootstrap token.
func bootstrapToken() ([]byte, error) {
	t := make([]byte, 32)
	if _, err := rand.Read(t); err != nil {
		return nil, fmt.Errorf("bootstrap token: %w", err)
	}
	return t, nil
}

// errEnrolment is wrapped by enrolment errors that no retry mends: the
// node, or something at its address, answered with a wrong proof, or the
// token expired. They end the node's join at once, loudly.
var errEnrolment = errors.New("enrolment")

// enrolRetry is the pause between enrolment attempts of a booting node.
const enrolRetry = time.Second

// enrol enrols the node name through c until it is enrolled, ctx ends, or
// a fatal problem (errEnrolment) shows; then it calls fail with it.
func (m *Manager) enrol(ctx context.Context, c *nodeapi.Client, name string, fail func(error)) {
	ca, err := m.loadCA()
	if err != nil {
		fail(err)
		return
	}
	for {
		st, err := m.Store.Load()
		if err != nil {
			fail(err)
			return
		}
		n := st.Node(name)
		if n == nil || !n.EnrolledAt.IsZero() || n.EnrolToken == nil {
			return // gone, enrolled, or made before enrolment existed
		}
		if m.now().After(n.EnrolExpires) {
			fail(fmt.Errorf("%w: the bootstrap token of %s expired at %s before the node enrolled; remove it with `clusterctl down %s` and make it again", errEnrolment, name, n.EnrolExpires.UTC().Format(time.RFC3339), name))
			return
		}
		offer, err := c.Enrol(ctx, name, m.grantFor(ca, *n))
		switch {
		case err == nil:
			m.setNode(name, func(n *Node) {
				n.EnrolToken, n.EnrolledAt = nil, m.now().UTC()
				if offer.SSHHostKey != "" {
					n.HostKey = offer.SSHHostKey
				}
			})
			m.Log.Debug("enrolled", "node", name)
			return
		case errors.Is(err, nodeapi.ErrEnrolled):
			if m.enrolledByUs(ctx, c, *n) {
				m.setNode(name, func(n *Node) { n.EnrolToken, n.EnrolledAt = nil, m.now().UTC() })
				return
			}
			fail(fmt.Errorf("%w: %s says it is already enrolled, but not with the keys this CLI granted: someone else may have used its bootstrap token (it was readable in the node's user-data before the node enrolled); remove the node with `clusterctl down %s`, check who can read its user-data, and make it again", errEnrolment, name, name))
			return
		case errors.Is(err, nodeapi.ErrTokenExpired), errors.Is(err, errEnrolment) && errors.Is(err, nodeapi.ErrNotGranted):
			fail(fmt.Errorf("%w: %s: %w", errEnrolment, name, err))
			return
		}
		m.Log.Debug("enrol: not yet", "node", name, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(enrolRetry):
		}
	}
}

// grantFor checks a node's offer and makes its grant; it records the
// offer's keys before the grant is sent (so a CLI that dies after sending
// it recognises its own enrolment, enrolledByUs).
func (m *Manager) grantFor(ca *pki.CA, n Node) func(nodeapi.EnrolOffer, []byte) (nodeapi.EnrolGrant, error) {
	return func(o nodeapi.EnrolOffer, exporter []byte) (nodeapi.EnrolGrant, error) {
		if o.Cluster != m.Cluster || o.Name != n.Name || o.Nonce != n.Nonce {
			return nodeapi.EnrolGrant{}, fmt.Errorf("%w: the node at %s's address answered as %s/%s (nonce %q), not %s/%s", errEnrolment, n.Name, o.Cluster, o.Name, o.Nonce, m.Cluster, n.Name)
		}
		if !hmac.Equal(o.MAC, nodeapi.EnrolMAC(n.EnrolToken, o, exporter)) {
			return nodeapi.EnrolGrant{}, fmt.Errorf("%w: %s's offer does not prove its bootstrap token on this connection: a stale node, or someone in between; nothing was given", errEnrolment, n.Name)
		}
		pub, err := x509.ParsePKIXPublicKey(o.TLSKey)
		if err != nil {
			return nodeapi.EnrolGrant{}, fmt.Errorf("%w: %s's TLS key: %w", errEnrolment, n.Name, err)
		}
		var ips []netip.Addr
		if a, err := netip.ParseAddr(n.Address); err == nil {
			ips = append(ips, a)
		}
		cert, err := ca.IssueNodeKey(n.Name, ips, pub)
		if err != nil {
			return nodeapi.EnrolGrant{}, err
		}
		grant, err := identity.GrantKey(ca, identity.Claim{Cluster: m.Cluster, Name: n.Name, Role: identity.RoleNode, Nonce: n.Nonce}, o.IdentityKey)
		if err != nil {
			return nodeapi.EnrolGrant{}, fmt.Errorf("%w: %w", errEnrolment, err)
		}
		keys, err := m.Store.ReadKeys()
		if err != nil {
			return nodeapi.EnrolGrant{}, err
		}
		notAfter, err := certNotAfter(cert)
		if err != nil {
			return nodeapi.EnrolGrant{}, err
		}
		if err := m.Store.Update(func(st *State) error {
			if sn := st.Node(n.Name); sn != nil {
				sn.EnrolKeys, sn.CertNotAfter = keyFingerprint(o.TLSKey), notAfter
			}
			return nil
		}); err != nil {
			return nodeapi.EnrolGrant{}, err
		}
		return nodeapi.EnrolGrant{Cert: string(cert), Grant: grant, Keys: keys}, nil
	}
}

// keyFingerprint is the hex SHA-256 of a public key's PKIX DER: how the
// state remembers which TLS key it certified at enrolment.
func keyFingerprint(der []byte) string {
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:])
}

func certNotAfter(certPEM []byte) (time.Time, error) {
	c, err := pki.ParseCertificate(certPEM)
	if err != nil {
		return time.Time{}, err
	}
	return c.NotAfter, nil
}

// enrolledByUs reports whether a node that says it is enrolled took this
// CLI's grant (a CLI that died between sending it and recording it): its
// API, through the CA-checked connection, serves a certificate for the
// TLS key recorded with the grant.
func (m *Manager) enrolledByUs(ctx context.Context, c *nodeapi.Client, n Node) bool {
	if n.EnrolKeys == "" {
		return false
	}
	conn, _, err := c.DialNode(ctx, n.Name)
	if err != nil {
		return false
	}
	defer conn.Close()
	peer := conn.ConnectionState().PeerCertificates
	if len(peer) == 0 {
		return false
	}
	der, err := x509.MarshalPKIXPublicKey(peer[0].PublicKey)
	return err == nil && keyFingerprint(der) == n.EnrolKeys
}

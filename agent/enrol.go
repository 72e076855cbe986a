package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/internal/atomicfile"
	"github.com/clusterctl/clusterctl/internal/identity"
	"github.com/clusterctl/clusterctl/internal/pki"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// nodeCredentials is what the node keeps in credentials.json (0600): the
// keys it made itself and, once enrolled, what the CLI gave it.
type nodeCredentials struct {
	TLSKey      string `json:"tls_key"`      // PEM PKCS #8
	IdentityKey string `json:"identity_key"` // identity.EncodeKey
	Cert        string `json:"cert,omitempty"`
	Grant       []byte `json:"grant,omitempty"`
}

// enrolment is the agent's side of enrolment, and the source of the API's
// certificate (self-signed until enrolled, the CA's after).
type enrolment struct {
	cfg    agentconfig.Config // the node's config as loaded (with Enrol)
	path   string             // credentials.json
	logger func(msg string, args ...any)

	mu       sync.Mutex
	creds    nodeCredentials
	cert     *tls.Certificate
	enrolled chan struct{} // closed once enrolled
}

// loadEnrolment claims the state directory, and reads the node's keys
// from it or makes them (a restart before enrolment offers the same keys).
func loadEnrolment(cfg agentconfig.Config, a *Agent) (*enrolment, error) {
	if err := claimStateDir(cfg, a.logger); err != nil {
		return nil, err
	}
	e := &enrolment{cfg: cfg, path: filepath.Join(cfg.StateDir, credentialsFile), enrolled: make(chan struct{}), logger: a.logger.Warn}
	b, err := os.ReadFile(e.path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &e.creds); err != nil {
			return nil, fmt.Errorf("%s: %w", e.path, err)
		}
	case errors.Is(err, os.ErrNotExist):
		if e.creds.TLSKey, err = newTLSKey(); err != nil {
			return nil, err
		}
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("identity key: %w", err)
		}
		e.creds.IdentityKey = identity.EncodeKey(key)
		if err := e.save(); err != nil {
			return nil, err
		}
		a.logger.Info("made this node's own TLS and identity keys; waiting for the CLI to enrol it", "state_dir", cfg.StateDir)
	default:
		return nil, err
	}
	if e.creds.Cert != "" {
		if err := e.check(e.creds.Cert, e.creds.Grant); err != nil {
			return nil, fmt.Errorf("%s: the enrolled credentials do not check: %w", e.path, err)
		}
		close(e.enrolled)
	}
	return e, nil
}

func newTLSKey() (string, error) {
	k, err := pki.NewNodeKey()
	return string(k), err
}

func (e *enrolment) save() error {
	b, err := json.Marshal(e.creds)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(e.path, b, 0o600)
}

// isEnrolled reports whether the node holds the CLI's grant.
func (e *enrolment) isEnrolled() bool {
	select {
	case <-e.enrolled:
		return true
	default:
		return false
	}
}

// check verifies that certPEM and grant are the CA's for this node's own
// keys, name and nonce.
func (e *enrolment) check(certPEM string, grant []byte) error {
	if _, err := pki.NodeCredentials(e.cfg.Cluster, e.cfg.Name, []byte(certPEM), []byte(e.creds.TLSKey), []byte(e.cfg.API.CA)); err != nil {
		return err
	}
	v, err := e.cfg.Verifier()
	if err != nil {
		return err
	}
	key, err := identity.DecodeKey(e.creds.IdentityKey)
	if err != nil {
		return err
	}
	return v.CheckGrant(identity.Credentials{
		Claim: identity.Claim{Cluster: e.cfg.Cluster, Name: e.cfg.Name, Role: identity.RoleNode, Nonce: e.cfg.Nonce},
		Key:   key, Grant: grant,
	})
}

// apply puts the enrolled material into cfg: what the agent runs with.
func (e *enrolment) apply(cfg *agentconfig.Config) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cfg.API.Cert, cfg.API.Key = e.creds.Cert, e.creds.TLSKey
	cfg.Identity.Key, cfg.Identity.Grant = e.creds.IdentityKey, e.creds.Grant
}

func (e *enrolment) expired() bool { return time.Now().After(e.cfg.Enrol.Expires) }

// offer is the node's offer for a connection with exporter.
func (e *enrolment) offer(exporter []byte) (nodeapi.EnrolOffer, error) {
	if e.isEnrolled() {
		e.logger("an enrolment was asked of a node that is enrolled: refused (a replayed or second bootstrap)")
		return nodeapi.EnrolOffer{}, nodeapi.ErrEnrolled
	}
	if e.expired() {
		e.logger("the bootstrap token has expired: this node cannot enrol; remove it (clusterctl down NAME) and make it again", "expired", e.cfg.Enrol.Expires)
		return nodeapi.EnrolOffer{}, fmt.Errorf("%w at %s", nodeapi.ErrTokenExpired, e.cfg.Enrol.Expires.UTC().Format(time.RFC3339))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	tlsPub, err := pki.PublicKeyDER([]byte(e.creds.TLSKey))
	if err != nil {
		return nodeapi.EnrolOffer{}, err
	}
	idKey, err := identity.DecodeKey(e.creds.IdentityKey)
	if err != nil {
		return nodeapi.EnrolOffer{}, err
	}
	o := nodeapi.EnrolOffer{Cluster: e.cfg.Cluster, Name: e.cfg.Name, Nonce: e.cfg.Nonce, TLSKey: tlsPub,
		IdentityKey: idKey.Public().(ed25519.PublicKey), SSHHostKey: e.sshHostKey()}
	o.MAC = nodeapi.EnrolMAC(e.cfg.Enrol.Token, o, exporter)
	return o, nil
}

// sshHostKey is the node's SSH host public key ("" when there is none).
func (e *enrolment) sshHostKey() string {
	path := e.cfg.Enrol.SSHHostKey
	if path == "" {
		path = agentconfig.DefaultSSHHostKey
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 2 || f[0] != "ssh-ed25519" {
		return ""
	}
	return f[0] + " " + f[1]
}

// enrol checks and keeps the CLI's grant, then lets Run start gossip.
func (e *enrolment) enrol(g nodeapi.EnrolGrant) error {
	if e.isEnrolled() {
		return nodeapi.ErrEnrolled
	}
	if e.expired() {
		return nodeapi.ErrTokenExpired
	}
	if err := e.check(g.Cert, g.Grant); err != nil {
		return fmt.Errorf("enrolment refused: %w", err)
	}
	if len(g.Keys) == 0 {
		return errors.New("enrolment refused: no gossip key")
	}
	for i, k := range g.Keys {
		if len(k) != 16 && len(k) != 24 && len(k) != 32 {
			return fmt.Errorf("enrolment refused: gossip key %d is %d bytes, not 16, 24 or 32", i+1, len(k))
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := writeKeyring(filepath.Join(e.cfg.StateDir, keyringFile), g.Keys); err != nil {
		return err
	}
	e.creds.Cert, e.creds.Grant = g.Cert, g.Grant
	if err := e.save(); err != nil {
		return err
	}
	e.cert = nil
	close(e.enrolled)
	return nil
}

// renew keeps a renewed certificate for the node's own key.
func (e *enrolment) renew(certPEM []byte) error {
	if !e.isEnrolled() {
		return nodeapi.ErrNotEnrolled
	}
	if _, err := pki.NodeCredentials(e.cfg.Cluster, e.cfg.Name, certPEM, []byte(e.creds.TLSKey), []byte(e.cfg.API.CA)); err != nil {
		return fmt.Errorf("renewal refused: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.creds.Cert = string(certPEM)
	e.cert = nil
	return e.save()
}

// certificate is what the API serves now.
func (e *enrolment) certificate() (*tls.Certificate, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cert != nil {
		return e.cert, nil
	}
	var err error
	if e.creds.Cert != "" {
		e.cert, err = pki.Credentials{CertPEM: []byte(e.creds.Cert), KeyPEM: []byte(e.creds.TLSKey)}.Certificate()
	} else {
		e.cert, err = pki.SelfSigned(e.cfg.Name, []byte(e.creds.TLSKey))
	}
	return e.cert, err
}

// awaitEnrolment waits until the CLI enrolled the node (or ctx ends),
// logging, once a minute after the token expired, that it never will.
func (a *Agent) awaitEnrolment(ctx context.Context) error {
	e := a.enrolment
	if e == nil || e.isEnrolled() {
		return nil
	}
	a.logger.Info("waiting for the CLI to enrol this node over its API", "api", a.cfg.API.Addr(), "token_expires", a.cfg.Enrol.Expires)
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		if e.expired() {
			a.logger.Error("the bootstrap token expired before the CLI enrolled this node: it cannot join; remove it (clusterctl down NAME) and make it again", "expired", a.cfg.Enrol.Expires)
		}
		select {
		case <-e.enrolled:
			a.logger.Info("enrolled: certificate, identity and gossip keyring received from the CLI")
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// The agent's nodeapi.Enroller.

var _ nodeapi.Enroller = (*Agent)(nil)

// NodeName is the node's name.
func (a *Agent) NodeName() string { return a.cfg.Name }

// Certificate is the API's certificate now.
func (a *Agent) Certificate() (*tls.Certificate, error) {
	if a.enrolment != nil {
		return a.enrolment.certificate()
	}
	return a.cfg.API.Credentials(a.cfg.Cluster).Certificate()
}

// Enrolled reports whether the node has its CLI-given credentials.
func (a *Agent) Enrolled() bool { return a.enrolment == nil || a.enrolment.isEnrolled() }

// Offer is the node's enrolment offer (see nodeapi.Enroller).
func (a *Agent) Offer(exporter []byte) (nodeapi.EnrolOffer, error) {
	if a.enrolment == nil {
		return nodeapi.EnrolOffer{}, nodeapi.ErrEnrolled
	}
	return a.enrolment.offer(exporter)
}

// Enrol keeps the CLI's grant (see nodeapi.Enroller).
func (a *Agent) Enrol(ctx context.Context, g nodeapi.EnrolGrant) error {
	if a.enrolment == nil {
		return nodeapi.ErrEnrolled
	}
	return a.enrolment.enrol(g)
}

// RenewCertificate keeps a renewed API certificate (see nodeapi.Enroller).
func (a *Agent) RenewCertificate(certPEM []byte) error {
	if a.enrolment == nil {
		return errors.New("this node's certificate comes from its config; it is not renewed over the API")
	}
	return a.enrolment.renew(certPEM)
}

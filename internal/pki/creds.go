package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"
)

// Credentials is one party's TLS material, PEM-encoded: its certificate and
// private key, and the cluster's CA certificate. A node's agent config
// carries the three (the key is exposed in user-data like the gossip key).
// String and GoString never print the key.
type Credentials struct {
	Cluster string
	CertPEM []byte
	KeyPEM  []byte
	CAPEM   []byte
}

func (c Credentials) String() string {
	return fmt.Sprintf("pki.Credentials{Cluster: %q, key: redacted}", c.Cluster)
}

func (c Credentials) GoString() string { return c.String() }

// parsed is Credentials checked and ready for crypto/tls.
type parsed struct {
	pair tls.Certificate
	leaf *x509.Certificate
	pool *x509.CertPool
}

// parse checks that the certificate and key belong together, that the
// certificate was issued by the CA, belongs to c.Cluster and holds role.
func (c Credentials) parse(role Role) (parsed, error) {
	if c.Cluster == "" {
		return parsed{}, errors.New("TLS credentials: no cluster name")
	}
	caCert, err := decodeCert(c.CAPEM)
	if err != nil {
		return parsed{}, fmt.Errorf("TLS credentials of cluster %q: CA certificate: %w", c.Cluster, err)
	}
	pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		// tls.X509KeyPair's errors name neither key bytes nor PEM content.
		return parsed{}, fmt.Errorf("TLS credentials of cluster %q: certificate and key: %w", c.Cluster, err)
	}
	leaf := pair.Leaf
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	usage := x509.ExtKeyUsageClientAuth
	if role == RoleNode {
		usage = x509.ExtKeyUsageServerAuth
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}, CurrentTime: leaf.NotBefore.Add(time.Second)}); err != nil {
		return parsed{}, fmt.Errorf("TLS credentials of cluster %q: the certificate was not issued by the CA: %w", c.Cluster, err)
	}
	if err := CheckPeer(leaf, c.Cluster, role); err != nil {
		return parsed{}, fmt.Errorf("TLS credentials: %w", err)
	}
	return parsed{pair: pair, leaf: leaf, pool: pool}, nil
}

// Name is the common name of the certificate: the node's name for a node.
func (c Credentials) Name() (string, error) {
	pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		return "", fmt.Errorf("TLS credentials: %w", err)
	}
	return pair.Leaf.Subject.CommonName, nil
}

// ServerTLS is a node's server configuration: TLS 1.3 only, a client
// certificate from the cluster's CA required and verified, and the client
// must be the CLI of this cluster.
func (c Credentials) ServerTLS() (*tls.Config, error) {
	p, err := c.parse(RoleNode)
	if err != nil {
		return nil, err
	}
	return NodeServerTLS(c.Cluster, c.CAPEM, func() (*tls.Certificate, error) { return &p.pair, nil })
}

// peerIs is a tls.Config.VerifyConnection that requires the peer's
// certificate (already verified against the CA) to be of cluster and
// hold role.
func peerIs(cluster string, role Role) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: no %s certificate", ErrWrongPeer, role)
		}
		return CheckPeer(cs.PeerCertificates[0], cluster, role)
	}
}

// ClientTLS is the CLI's client configuration for dialling the node
// serverName: TLS 1.3 only, its certificate must come from the cluster's CA,
// name serverName and hold the node role of this cluster.
func (c Credentials) ClientTLS(serverName string) (*tls.Config, error) {
	if serverName == "" {
		return nil, errors.New("TLS client: no server name to verify")
	}
	p, err := c.parse(RoleCLI)
	if err != nil {
		return nil, err
	}
	cluster := c.Cluster
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{p.pair},
		RootCAs:          p.pool,
		ServerName:       serverName,
		NextProtos:       []string{"http/1.1"},
		VerifyConnection: peerIs(cluster, RoleNode),
	}, nil
}

// NodeServerTLS is a node's server configuration while its certificate can
// change (it enrols with a self-signed one, then serves the CA's, renewed
// later): TLS 1.3 only, certificate from cert at each handshake, and the
// client must be the CLI of cluster, with a certificate from the CA caPEM.
func NodeServerTLS(cluster string, caPEM []byte, cert func() (*tls.Certificate, error)) (*tls.Config, error) {
	caCert, err := decodeCert(caPEM)
	if err != nil {
		return nil, fmt.Errorf("TLS server of cluster %q: CA certificate: %w", cluster, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		GetCertificate:   func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert() },
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        pool,
		NextProtos:       []string{"http/1.1"},
		VerifyConnection: peerIs(cluster, RoleCLI),
	}, nil
}

// EnrolClientTLS is the CLI's configuration for enrolling a node: its
// client certificate (the node checks it against the CA), but no check of
// the node's certificate, which is self-signed until it is enrolled; the
// node proves itself inside the connection instead, with a MAC keyed by
// its bootstrap token and bound to this connection (nodeapi.EnrolMAC).
func (c Credentials) EnrolClientTLS() (*tls.Config, error) {
	p, err := c.parse(RoleCLI)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		MaxVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{p.pair},
		InsecureSkipVerify: true, // authenticated by the enrolment MAC, bound to the connection
		NextProtos:         []string{"http/1.1"},
	}, nil
}

// NodeCredentials checks a node's enrolled material: its certificate (PEM)
// was issued by the CA caPEM for name in cluster and matches its own key.
func NodeCredentials(cluster, name string, certPEM, keyPEM, caPEM []byte) (Credentials, error) {
	c := Credentials{Cluster: cluster, CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: caPEM}
	p, err := c.parse(RoleNode)
	if err != nil {
		return Credentials{}, err
	}
	if p.leaf.Subject.CommonName != name {
		return Credentials{}, fmt.Errorf("%w: the certificate is %q's, not %q's", ErrWrongPeer, p.leaf.Subject.CommonName, name)
	}
	return c, nil
}

// Certificate returns c's certificate and key for crypto/tls.
func (c Credentials) Certificate() (*tls.Certificate, error) {
	pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("TLS credentials: %w", err)
	}
	return &pair, nil
}

// NewNodeKey makes a node's TLS key (ECDSA P-256) and returns it PEM
// (PKCS #8): the node makes its own and never sends it.
func NewNodeKey() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	return encodeKey(key)
}

// SelfSigned returns a certificate of name for the key keyPEM, signed by
// itself: what a node serves while it enrols.
func SelfSigned(name string, keyPEM []byte) (*tls.Certificate, error) {
	key, err := decodeKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, OrganizationalUnit: []string{"enrolling"}},
		DNSNames:    []string{name},
		NotBefore:   now.Add(-Backdate),
		NotAfter:    now.Add(CLIValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := sign(tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// PublicKeyDER is the PKIX encoding of the public key of keyPEM.
func PublicKeyDER(keyPEM []byte) ([]byte, error) {
	key, err := decodeKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	return x509.MarshalPKIXPublicKey(&key.PublicKey)
}

package pki

import (
	"crypto/tls"
	"crypto/x509"
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
	cluster := c.Cluster
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{p.pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.pool,
		NextProtos:   []string{"http/1.1"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: no client certificate", ErrWrongPeer)
			}
			return CheckPeer(cs.PeerCertificates[0], cluster, RoleCLI)
		},
	}, nil
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
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{p.pair},
		RootCAs:      p.pool,
		ServerName:   serverName,
		NextProtos:   []string{"http/1.1"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: no server certificate", ErrWrongPeer)
			}
			return CheckPeer(cs.PeerCertificates[0], cluster, RoleNode)
		},
	}, nil
}

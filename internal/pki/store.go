package pki

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

// The CA's files in the cluster's state directory.
const (
	CACertFile = "ca.crt" // PEM certificate, mode 0644
	CAKeyFile  = "ca.key" // PEM PKCS #8 private key, mode 0600
)

// ErrExists is wrapped by Create's error when the directory already holds a
// CA file.
var ErrExists = errors.New("the cluster already has a CA")

// Create makes a new CA for cluster and writes it into dir (which must
// exist). It refuses when ca.crt or ca.key is already there: an existing
// cluster's CA is read with Load, never replaced. Neither file is left
// behind when Create fails.
func Create(dir, cluster string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("create CA of cluster %q: %s exists: %w", cluster, p, ErrExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("create CA of cluster %q: %w", cluster, err)
		}
	}
	ca, err := newCA(cluster, time.Now())
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(ca.key)
	if err != nil {
		return nil, fmt.Errorf("create CA of cluster %q: %w", cluster, err)
	}
	if err := writeNew(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("create CA of cluster %q: %w", cluster, err)
	}
	if err := writeNew(certPath, ca.certPEM, 0o644); err != nil {
		os.Remove(keyPath)
		return nil, fmt.Errorf("create CA of cluster %q: %w", cluster, err)
	}
	return ca, nil
}

// Load reads the CA of cluster from dir. A missing, unreadable or corrupt
// file, a key readable by others than its owner, a certificate of another
// cluster or a key that does not match the certificate is an
// *usererr.InputError that names the file and says what to do.
func Load(dir, cluster string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	restore := fmt.Sprintf("restore %s and %s from a backup of %s: the cluster's nodes trust only the CA they were given, so clusterctl never makes a new one for an existing cluster (if the cluster has no nodes, remove both files and run `clusterctl up` again)",
		CACertFile, CAKeyFile, dir)

	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, usererr.BadInput(restore, "CA certificate of cluster %q: %w", cluster, err)
	}
	cert, err := decodeCert(certPEM)
	if err != nil {
		return nil, usererr.BadInput(restore, "CA certificate %s of cluster %q is corrupt: %w", certPath, cluster, err)
	}
	if !cert.IsCA || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != cluster {
		return nil, usererr.BadInput(restore, "%s is not the CA certificate of cluster %q (it is %q)", certPath, cluster, cert.Subject.String())
	}
	if now := time.Now(); now.After(cert.NotAfter) {
		return nil, usererr.BadInput("the cluster's nodes trust only this CA; make the cluster anew (`clusterctl down --all`, then `clusterctl up`)",
			"CA certificate %s of cluster %q expired on %s", certPath, cluster, cert.NotAfter.Format(time.DateOnly))
	}

	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, usererr.BadInput(restore, "CA key of cluster %q: %w", cluster, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, usererr.BadInput(fmt.Sprintf("chmod 600 %s", keyPath), "CA key %s of cluster %q is readable by others (mode %04o)", keyPath, cluster, fi.Mode().Perm())
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, usererr.BadInput(restore, "CA key of cluster %q: %w", cluster, err)
	}
	key, err := decodeKey(keyPEM)
	if err != nil {
		return nil, usererr.BadInput(restore, "CA key %s of cluster %q is corrupt: %w", keyPath, cluster, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, usererr.BadInput(restore, "CA key %s does not belong to the certificate %s of cluster %q", keyPath, certPath, cluster)
	}
	return &CA{cluster: cluster, cert: cert, certPEM: certPEM, key: key}, nil
}

// writeNew writes data to path, which must not exist, so that path appears
// whole or not at all: the data goes to a synced temporary file that is then
// hard-linked to path (which fails if path exists) and removed.
func writeNew(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("write %s: %w", path, ErrExists)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseCertificate parses exactly one PEM certificate.
func ParseCertificate(b []byte) (*x509.Certificate, error) { return decodeCert(b) }

// decodeCert parses exactly one PEM certificate.
func decodeCert(b []byte) (*x509.Certificate, error) {
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, errors.New("more than one PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	return cert, nil
}

// decodeKey parses exactly one PEM PKCS #8 ECDSA private key.
func decodeKey(b []byte) (*ecdsa.PrivateKey, error) {
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM PRIVATE KEY block")
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, errors.New("more than one PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T key, not ECDSA", k)
	}
	return key, nil
}

package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/clusterctl/clusterctl/internal/pki"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// The CLI observes and steers the cluster only through the agents' API
// (package nodeapi): it dials out to the nodes, over mutual TLS with the
// cluster's CA, and is never a gossip member itself.

// loadCA reads the cluster's CA from the state directory. A missing or
// corrupt CA of an existing cluster is pki's exit-2 error naming the file;
// a new CA is made only by up's write-ahead record, with the gossip key.
func (m *Manager) loadCA() (*pki.CA, error) {
	return pki.Load(m.Store.Dir, m.Cluster)
}

// throwawayCA makes a CA that is used for one rendering and never kept
// (render of a cluster that has none yet, planning before the record).
func (m *Manager) throwawayCA() (*pki.CA, error) {
	dir, err := os.MkdirTemp("", "clusterctl-ca-")
	if err != nil {
		return nil, fmt.Errorf("throw-away CA: %w", err)
	}
	defer os.RemoveAll(dir)
	return pki.Create(dir, m.Cluster)
}

// hasCAFile reports whether either CA file is in the state directory.
func (m *Manager) hasCAFile() bool {
	for _, f := range []string{pki.CACertFile, pki.CAKeyFile} {
		if _, err := os.Lstat(filepath.Join(m.Store.Dir, f)); err == nil {
			return true
		}
	}
	return false
}

// apiAddrs are the addresses the CLI may dial node n's API at: its public
// address when the provider reports one (the way in from a laptop behind
// NAT), then its cluster address (the way in from inside the cluster's
// network, a VPN or a bastion). The client tries several at once and keeps
// the first that answers, so an address this machine cannot route to costs
// nothing but a connect attempt.
func (m *Manager) apiAddrs(n Node) []string {
	var out []string
	for _, host := range []string{n.PublicAddress, n.Address} {
		if host != "" {
			out = append(out, net.JoinHostPort(host, strconv.Itoa(m.Cfg.API.Port)))
		}
	}
	return out
}

// endpoints returns a function that lists, at each call, the API endpoints
// of the recorded nodes with a known address for which keep is true (nil:
// all), so a node becomes an endpoint as soon as its address is recorded.
func (m *Manager) endpoints(keep func(Node) bool) func() []nodeapi.Endpoint {
	return func() []nodeapi.Endpoint {
		st, err := m.Store.Load()
		if err != nil {
			m.Log.Warn("read state for the node API's endpoints", "err", err)
			return nil
		}
		var eps []nodeapi.Endpoint
		for _, n := range st.Nodes {
			if keep != nil && !keep(n) {
				continue
			}
			for _, a := range m.apiAddrs(n) {
				eps = append(eps, nodeapi.Endpoint{Name: n.Name, Addr: a})
			}
		}
		return eps
	}
}

// credentials returns this run's CLI credentials: a short-lived client
// certificate from the cluster's CA, kept in memory only.
func (m *Manager) credentials() (pki.Credentials, error) {
	ca, err := m.loadCA()
	if err != nil {
		return pki.Credentials{}, err
	}
	creds, err := ca.IssueCLI()
	if err != nil {
		return pki.Credentials{}, fmt.Errorf("CLI certificate: %w", err)
	}
	return creds, nil
}

// client returns a node API client over the recorded nodes that keep
// accepts (nil: all).
func (m *Manager) client(creds pki.Credentials, keep func(Node) bool) (*nodeapi.Client, error) {
	c, err := nodeapi.NewClient(creds, m.endpoints(keep))
	if err != nil {
		return nil, err
	}
	r := &renewer{m: m, c: c, done: map[string]bool{}}
	c.ServerCert = r.check
	return c, nil
}

// renewer renews, through the client it belongs to, the certificate of a
// node it reaches once two thirds of its life have passed: any command that
// reaches a node renews it (at most once per node per command).
type renewer struct {
	m  *Manager
	c  *nodeapi.Client
	mu sync.Mutex
	// done holds the nodes renewed, or being renewed, by this client; its
	// own dial for the renewal sees the old certificate too.
	done map[string]bool
}

func (r *renewer) check(ctx context.Context, name string, cert *x509.Certificate) {
	r.mu.Lock()
	if r.done[name] {
		r.mu.Unlock()
		return
	}
	r.done[name] = true
	r.mu.Unlock()
	// The state follows the certificate the node serves (verified against
	// the CA by the handshake): a renewal whose answer was lost still shows.
	// It is written only when it changes: this runs in every dial, and the
	// dials firstOf drops still run after the command has its answer.
	if st, err := r.m.Store.Load(); err == nil {
		if n := st.Node(name); n != nil && !n.CertNotAfter.Equal(cert.NotAfter) {
			r.m.setNode(name, func(n *Node) { n.CertNotAfter = cert.NotAfter })
		}
	}
	if !pki.NeedsRenewal(cert, r.m.now()) {
		return
	}
	// Not bound to this dial: the attempt may be dropped for a faster node.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), renewTimeout)
	defer cancel()
	if err := r.m.renew(rctx, r.c, name, cert); err != nil {
		r.m.Report.Note(name, "its API certificate could not be renewed: "+err.Error())
	}
}

// renewTimeout bounds one certificate renewal.
const renewTimeout = 10 * time.Second

// renew issues the node name a new certificate for the key its current one
// certifies, sends it, and records its expiry.
func (m *Manager) renew(ctx context.Context, c *nodeapi.Client, name string, old *x509.Certificate) error {
	ca, err := m.loadCA()
	if err != nil {
		return err
	}
	var ips []netip.Addr
	for _, ip := range old.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			ips = append(ips, a.Unmap())
		}
	}
	certPEM, err := ca.IssueNodeKey(name, ips, old.PublicKey)
	if err != nil {
		return err
	}
	if err := c.RenewCertificate(ctx, name, certPEM); err != nil {
		return err
	}
	notAfter, err := certNotAfter(certPEM)
	if err != nil {
		return err
	}
	m.setNode(name, func(n *Node) { n.CertNotAfter = notAfter })
	m.Log.Info("renewed the node's API certificate", "node", name, "expires", notAfter)
	return nil
}

// unreachable reports whether err says that no node answered.
func unreachable(err error) bool { return errors.Is(err, nodeapi.ErrUnreachable) }

// removeCA removes a CA that record made and could not keep.
func (m *Manager) removeCA() {
	os.Remove(filepath.Join(m.Store.Dir, pki.CAKeyFile))
	os.Remove(filepath.Join(m.Store.Dir, pki.CACertFile))
}

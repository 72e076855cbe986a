package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

func mustCreate(t *testing.T, cluster string) (*CA, string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := Create(dir, cluster)
	if err != nil {
		t.Fatal(err)
	}
	return ca, dir
}

func TestCreateWritesFilesAndLoadReadsThem(t *testing.T) {
	ca, dir := mustCreate(t, "lab")
	for file, want := range map[string]os.FileMode{CACertFile: 0o644, CAKeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", file, fi.Mode().Perm(), want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("state dir holds %d entries, want ca.crt and ca.key only", len(entries))
	}
	got, err := Load(dir, "lab")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.CertPEM(), ca.CertPEM()) || got.Cluster() != "lab" {
		t.Fatal("Load did not return the CA Create made")
	}
	// The loaded CA issues certificates the created one's holders trust.
	node, err := got.IssueNode("n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := node.ServerTLS(); err != nil {
		t.Fatal(err)
	}
	if ca.cert.NotAfter.Sub(ca.cert.NotBefore) < 19*365*24*time.Hour || !ca.cert.IsCA || !ca.cert.MaxPathLenZero {
		t.Errorf("CA certificate: %v..%v IsCA=%v MaxPathLenZero=%v", ca.cert.NotBefore, ca.cert.NotAfter, ca.cert.IsCA, ca.cert.MaxPathLenZero)
	}
}

func TestCreateRefusesAnExistingCA(t *testing.T) {
	_, dir := mustCreate(t, "lab")
	before, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if _, err := Create(dir, "lab"); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	// Only one of the two files is enough to refuse.
	os.Remove(filepath.Join(dir, CACertFile))
	if _, err := Create(dir, "lab"); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), CAKeyFile) {
		t.Fatalf("Create with ca.key left: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if !bytes.Equal(before, after) {
		t.Fatal("Create replaced the existing key")
	}
	if _, err := os.Stat(filepath.Join(dir, CACertFile)); err == nil {
		t.Fatal("a refused Create wrote ca.crt")
	}
}

func TestCreateRefusesBadClusterName(t *testing.T) {
	dir := t.TempDir()
	if _, err := Create(dir, "Bad_Name"); err == nil {
		t.Fatal("Create accepted a cluster name that is no DNS label")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("failed Create left %d files", len(entries))
	}
}

func TestLoadErrorsNameTheFileAndAFix(t *testing.T) {
	_, otherDir := mustCreate(t, "lab")
	otherKey, _ := os.ReadFile(filepath.Join(otherDir, CAKeyFile))
	tests := []struct {
		name    string
		cluster string
		break_  func(dir string)
		file    string
		msg     string
		fix     string
	}{
		{"cert missing", "lab", func(d string) { os.Remove(filepath.Join(d, CACertFile)) }, CACertFile, "no such file", "restore"},
		{"key missing", "lab", func(d string) { os.Remove(filepath.Join(d, CAKeyFile)) }, CAKeyFile, "no such file", "restore"},
		{"cert corrupt", "lab", func(d string) { os.WriteFile(filepath.Join(d, CACertFile), []byte("garbage"), 0o644) }, CACertFile, "corrupt", "restore"},
		{"cert truncated", "lab", func(d string) {
			b, _ := os.ReadFile(filepath.Join(d, CACertFile))
			os.WriteFile(filepath.Join(d, CACertFile), b[:len(b)/2], 0o644)
		}, CACertFile, "corrupt", "restore"},
		{"key corrupt", "lab", func(d string) {
			os.WriteFile(filepath.Join(d, CAKeyFile), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
		}, CAKeyFile, "corrupt", "restore"},
		{"key of another CA", "lab", func(d string) { os.WriteFile(filepath.Join(d, CAKeyFile), otherKey, 0o600) }, CAKeyFile, "does not belong", "restore"},
		{"key readable by others", "lab", func(d string) { os.Chmod(filepath.Join(d, CAKeyFile), 0o644) }, CAKeyFile, "readable by others", "chmod 600"},
		{"another cluster", "prod", func(string) {}, CACertFile, "not the CA certificate of cluster \"prod\"", "restore"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, dir := mustCreate(t, "lab")
			tt.break_(dir)
			_, err := Load(dir, tt.cluster)
			var ie *usererr.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("Load: %v (%T), want *usererr.InputError", err, err)
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, tt.file)) && !strings.Contains(err.Error(), tt.file) {
				t.Errorf("error %q does not name %s", err, tt.file)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
			if !strings.Contains(ie.Fix, tt.fix) {
				t.Errorf("fix %q does not say %q", ie.Fix, tt.fix)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(ie.Fix, "PRIVATE KEY") {
				t.Error("the error shows key material")
			}
		})
	}
}

func TestIssueNode(t *testing.T) {
	ca, _ := mustCreate(t, "lab")
	ips := []netip.Addr{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("2001:db8::5")}
	c, err := ca.IssueNode("web-1", ips)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.CAPEM, ca.CertPEM()) || c.Cluster != "lab" {
		t.Fatal("node credentials do not carry the CA and the cluster")
	}
	cert, err := decodeCert(c.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != "web-1" {
		t.Errorf("DNS SANs %v", cert.DNSNames)
	}
	if len(cert.IPAddresses) != 2 || !cert.IPAddresses[0].Equal(net.ParseIP("10.0.0.5")) || !cert.IPAddresses[1].Equal(net.ParseIP("2001:db8::5")) {
		t.Errorf("IP SANs %v", cert.IPAddresses)
	}
	if life := time.Until(cert.NotAfter); life > 366*24*time.Hour || life < 364*24*time.Hour {
		t.Errorf("node certificate expires %v, want in one year", cert.NotAfter)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "web-1", KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Errorf("usage %v: %v", u, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "web-2"}); err == nil {
		t.Error("the certificate of web-1 verifies for web-2")
	}
	if err := CheckPeer(cert, "lab", RoleNode); err != nil {
		t.Error(err)
	}
	if err := CheckPeer(cert, "lab", RoleCLI); !errors.Is(err, ErrWrongPeer) {
		t.Errorf("a node certificate passes as the CLI: %v", err)
	}
	if err := CheckPeer(cert, "prod", RoleNode); !errors.Is(err, ErrWrongPeer) {
		t.Errorf("a certificate of cluster lab passes for prod: %v", err)
	}
	if _, err := ca.IssueNode("Web_1", nil); err == nil {
		t.Error("IssueNode accepted a name that is no DNS label")
	}
}

func TestIssueCLIIsClientOnlyAndShortLived(t *testing.T) {
	ca, _ := mustCreate(t, "lab")
	c, err := ca.IssueCLI()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := decodeCert(c.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("the CLI's certificate verifies as a server")
	}
	if err := CheckPeer(cert, "lab", RoleCLI); err != nil {
		t.Error(err)
	}
	if d := time.Until(cert.NotAfter); d > CLIValidity || d < CLIValidity-time.Minute {
		t.Errorf("CLI certificate valid for %v more, want %v", d, CLIValidity)
	}
	if _, err := c.ServerTLS(); err == nil {
		t.Error("the CLI's credentials make a server configuration")
	}
}

func TestCredentialsNeverPrintTheKey(t *testing.T) {
	ca, _ := mustCreate(t, "lab")
	c, _ := ca.IssueNode("n1", nil)
	for _, s := range []string{c.String(), c.GoString()} {
		if strings.Contains(s, "PRIVATE") || strings.Contains(s, string(c.KeyPEM[30:60])) {
			t.Fatalf("%q shows the key", s)
		}
	}
}

func TestCredentialsOfAnotherCAAreRefused(t *testing.T) {
	// Two clusters of the same name (one made anew after the other was
	// lost): a certificate of one is no use with the other's CA.
	a, _ := mustCreate(t, "lab")
	b, _ := mustCreate(t, "lab")
	node, _ := b.IssueNode("n1", nil)
	node.CAPEM = a.CertPEM()
	if _, err := node.ServerTLS(); err == nil || !strings.Contains(err.Error(), "not issued by the CA") {
		t.Fatalf("ServerTLS with a certificate of another CA: %v", err)
	}
}

// handshake runs a real TLS handshake over loopback between the two
// configurations and returns the client's and the server's errors.
func handshake(t *testing.T, server, client *tls.Config) (cerr, serr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		s := tls.Server(c, server)
		err = s.Handshake()
		if err == nil {
			_, err = s.Write([]byte("x"))
		}
		done <- err
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err == nil {
		buf := make([]byte, 1)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(buf)
		c.Close()
	}
	return err, <-done
}

func TestHandshake(t *testing.T) {
	ca, _ := mustCreate(t, "lab")
	node, _ := ca.IssueNode("n1", []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	cli, _ := ca.IssueCLI()
	scfg, err := node.ServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := cli.ClientTLS("n1")
	if err != nil {
		t.Fatal(err)
	}
	if cerr, serr := handshake(t, scfg, ccfg); cerr != nil || serr != nil {
		t.Fatalf("client %v, server %v", cerr, serr)
	}
	// The CLI dialling n1's address while expecting n2 refuses n1.
	wrong, _ := cli.ClientTLS("n2")
	if cerr, _ := handshake(t, scfg, wrong); cerr == nil || !strings.Contains(cerr.Error(), "n2") {
		t.Fatalf("a client expecting n2 accepted n1: %v", cerr)
	}
	if _, err := cli.ClientTLS(""); err == nil {
		t.Fatal("ClientTLS without a server name")
	}
}

func FuzzLoad(f *testing.F) {
	ca, err := newCA("lab", time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ca.certPEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	keyPEM, _ := encodeKey(ca.key)
	f.Fuzz(func(t *testing.T, certPEM []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, CACertFile), certPEM, 0o644)
		os.WriteFile(filepath.Join(dir, CAKeyFile), keyPEM, 0o600)
		got, err := Load(dir, "lab")
		if err == nil && !got.cert.Equal(ca.cert) {
			t.Fatalf("Load accepted a certificate that is not the key's")
		}
		var ie *usererr.InputError
		if err != nil && !errors.As(err, &ie) {
			t.Fatalf("Load: %v is not an *InputError", err)
		}
	})
}

package nodeapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Enrolment: a new node holds no long-lived secret. Its user-data carries
// its name, nonce, the CA certificate and a bootstrap token (single use,
// bound to the node, expiring). At first boot it makes its own TLS key,
// identity key and SSH host key, and serves this API with a self-signed
// certificate. The CLI dials it (out, as always: NAT is no obstacle),
// presenting its CLI certificate (the node checks it against the CA), and
// asks for the node's offer: its public keys and a MAC over them, keyed
// by the token and bound to this TLS connection (its exported keying
// material), so the offer can be neither forged without the token nor
// relayed from another connection. The CLI checks the MAC with the token
// it rendered and answers, on the same connection, with the node's
// certificate, its identity grant and the gossip keyring. The node checks
// that both are the CA's for its own keys, keeps them (0600), and only then
// starts gossip. The token is spent: the node refuses a second enrolment,
// and the CLI forgets the token.

// Enrolment paths.
const (
	PathEnrol = "/v1/enrol" // GET: EnrolOffer; POST EnrolGrant: {} (409 once enrolled, 410 once the token expired)
	PathCert  = "/v1/cert"  // POST CertRenewal: {} — a renewed certificate for the node's own key
)

// EnrolOffer is what a node proves itself with.
type EnrolOffer struct {
	Cluster     string `json:"cluster"`
	Name        string `json:"name"`
	Nonce       string `json:"nonce"`
	TLSKey      []byte `json:"tls_key"`      // PKIX DER of its TLS public key
	IdentityKey []byte `json:"identity_key"` // its Ed25519 identity public key
	SSHHostKey  string `json:"ssh_host_key"` // its SSH host public key, "ssh-ed25519 AAAA..." ("" without one)
	MAC         []byte `json:"mac"`          // EnrolMAC
}

// EnrolGrant is what the CLI gives an enrolled node.
type EnrolGrant struct {
	Cert  string   `json:"cert"`  // PEM: the node's certificate for TLSKey
	Grant []byte   `json:"grant"` // the CA's identity grant for IdentityKey (internal/identity)
	Keys  [][]byte `json:"keys"`  // the gossip keyring, primary first
}

// CertRenewal carries a renewed certificate for the node's own TLS key.
type CertRenewal struct {
	Cert string `json:"cert"`
}

// ExporterLabel is the TLS exporter label that binds an offer's MAC to
// its connection.
const ExporterLabel = "EXPORTER-clusterctl-enrol"

// Exporter is the keying material of a TLS connection that an offer's MAC
// covers.
func Exporter(cs tls.ConnectionState) ([]byte, error) {
	return cs.ExportKeyingMaterial(ExporterLabel, nil, 32)
}

// EnrolMAC is HMAC-SHA256, keyed by the bootstrap token, over the offer's
// fields (each length-prefixed) and the connection's exporter.
func EnrolMAC(token []byte, o EnrolOffer, exporter []byte) []byte {
	h := hmac.New(sha256.New, token)
	h.Write([]byte("clusterctl/enrol/v1\x00"))
	for _, f := range [][]byte{[]byte(o.Cluster), []byte(o.Name), []byte(o.Nonce), o.TLSKey, o.IdentityKey, []byte(o.SSHHostKey), exporter} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		h.Write(n[:])
		h.Write(f)
	}
	return h.Sum(nil)
}

// Errors of enrolment, as the node reports them (409, 410) and the CLI
// matches them.
var (
	ErrEnrolled     = errors.New("the node is already enrolled")
	ErrTokenExpired = errors.New("the node's bootstrap token has expired")
	ErrNotEnrolled  = errors.New("the node is not enrolled yet")
	// ErrNotGranted wraps the CLI's own refusal of an offer (Enrol's issue).
	ErrNotGranted = errors.New("the offer was not granted")
)

// Enroller is implemented by a Membership that can enrol (the agent): the
// server then offers PathEnrol and PathCert, serves Certificate (its
// self-signed one until it is enrolled), and answers nothing else until
// it is enrolled (503).
type Enroller interface {
	NodeName() string
	Certificate() (*tls.Certificate, error)
	Enrolled() bool
	// Offer returns the node's offer for a connection with exporter, or
	// ErrEnrolled / ErrTokenExpired.
	Offer(exporter []byte) (EnrolOffer, error)
	// Enrol checks and keeps g; then the node starts gossip.
	Enrol(ctx context.Context, g EnrolGrant) error
	// RenewCertificate checks and keeps a renewed certificate (PEM).
	RenewCertificate(certPEM []byte) error
}

func (s *server) enrolOffer(w http.ResponseWriter, r *http.Request) {
	exp, err := Exporter(*r.TLS)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "no keying material"})
		return
	}
	o, err := s.enroller.Offer(exp)
	if err != nil {
		writeJSON(w, enrolStatus(err), errorBody{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (s *server) enrol(w http.ResponseWriter, r *http.Request) {
	var g EnrolGrant
	if !readJSON(w, r, &g) {
		return
	}
	if err := s.enroller.Enrol(r.Context(), g); err != nil {
		writeJSON(w, enrolStatus(err), errorBody{Error: err.Error()})
		return
	}
	s.log.Info("node API: enrolled by the CLI", "peer", r.RemoteAddr)
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *server) renew(w http.ResponseWriter, r *http.Request) {
	var c CertRenewal
	if !readJSON(w, r, &c) {
		return
	}
	if err := s.enroller.RenewCertificate([]byte(c.Cert)); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error()})
		return
	}
	s.log.Info("node API: certificate renewed by the CLI", "peer", r.RemoteAddr)
	writeJSON(w, http.StatusOK, struct{}{})
}

func enrolStatus(err error) int {
	switch {
	case errors.Is(err, ErrEnrolled):
		return http.StatusConflict
	case errors.Is(err, ErrTokenExpired):
		return http.StatusGone
	}
	return http.StatusBadRequest
}

// enrolledOnly answers 503 to every request but enrolment until the node
// is enrolled.
func (s *server) enrolledOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.enroller != nil && !s.enroller.Enrolled() && r.URL.Path != PathEnrol {
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: ErrNotEnrolled.Error()})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// enrolTimeout bounds one enrolment exchange.
const enrolTimeout = 30 * time.Second

// Enrol enrols the node name through the first of its endpoints that
// answers: it asks for its offer on one connection, and when issue (which
// checks the offer's MAC against the connection's exporter, and makes the
// grant) accepts it, sends the grant on the same connection. It returns
// the offer issue accepted. An error from issue is returned wrapped in
// ErrNotGranted, with the offer; the node's 409 and 410 wrap ErrEnrolled
// and ErrTokenExpired. An endpoint where no node's enrolment answers (it
// is unreachable, or something else is there) is skipped for the next.
func (c *Client) Enrol(ctx context.Context, name string, issue func(o EnrolOffer, exporter []byte) (EnrolGrant, error)) (EnrolOffer, error) {
	cfg, err := c.creds.EnrolClientTLS()
	if err != nil {
		return EnrolOffer{}, err
	}
	var errs []error
	for _, ep := range c.endpoints() {
		if ep.Name != name {
			continue
		}
		o, err := c.enrolAt(ctx, ep, cfg, issue)
		switch {
		case err == nil, errors.Is(err, ErrEnrolled), errors.Is(err, ErrTokenExpired), errors.Is(err, ErrNotGranted):
			return o, err
		}
		// Not the node's enrolment here (nothing listens, or something
		// else answers at this address): the node's next address.
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return EnrolOffer{}, fmt.Errorf("enrol %s: no API address is known for it", name)
	}
	return EnrolOffer{}, fmt.Errorf("enrol %s: %w", name, errors.Join(errs...))
}

func (c *Client) enrolAt(ctx context.Context, ep Endpoint, cfg *tls.Config, issue func(EnrolOffer, []byte) (EnrolGrant, error)) (EnrolOffer, error) {
	dctx, cancel := context.WithTimeout(ctx, c.connectTimeout())
	d := tls.Dialer{Config: cfg}
	nc, err := d.DialContext(dctx, "tcp", ep.Addr)
	cancel()
	if err != nil {
		return EnrolOffer{}, fmt.Errorf("%w: %s: %w", ErrUnreachable, ep, err)
	}
	conn := nc.(*tls.Conn)
	defer conn.Close()
	deadline := time.Now().Add(enrolTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	var o EnrolOffer
	if err := exchange(ctx, conn, ep, http.MethodGet, PathEnrol, nil, &o); err != nil {
		return EnrolOffer{}, err
	}
	exp, err := Exporter(conn.ConnectionState())
	if err != nil {
		return o, err
	}
	g, err := issue(o, exp)
	if err != nil {
		return o, fmt.Errorf("%w: %w", ErrNotGranted, err)
	}
	return o, exchange(ctx, conn, ep, http.MethodPost, PathEnrol, g, &struct{}{})
}

// RenewCertificate sends the node name a renewed certificate for its own
// key (through the regular, CA-checked connection).
func (c *Client) RenewCertificate(ctx context.Context, name string, certPEM []byte) error {
	conn, ep, err := c.dialNode(ctx, name)
	if err != nil {
		return err
	}
	defer conn.Close()
	return c.roundTrip(ctx, conn, ep, c.requestTimeout(), http.MethodPost, PathCert, CertRenewal{Cert: string(certPEM)}, &struct{}{})
}

// exchange makes one request on a kept-alive connection and reads a 200
// answer into out (see sendOn).
func exchange(ctx context.Context, conn *tls.Conn, ep Endpoint, method, path string, in, out any) error {
	resp, err := sendOn(ctx, conn, ep, method, path, in, true)
	if err != nil {
		return err
	}
	return decodeBody(resp, ep, method, path, out)
}

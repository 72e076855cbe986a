package nodeapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/internal/pki"
)

// Client defaults.
const (
	DefaultConnectTimeout = 2 * time.Second
	DefaultRequestTimeout = 5 * time.Second
	DefaultStagger        = 25 * time.Millisecond
	// burst is how many tries start at once, before the stagger.
	burst = 3
	// MaxMessage bounds what the client reads of one answer, and of one
	// line of the event stream (a snapshot is one line): 4 MiB holds
	// thousands of members (a member with serf's largest tags, escaped,
	// takes about 3.5 KiB). The client's memory stays bounded whatever a
	// node sends.
	MaxMessage = 4 << 20
)

// ErrTooLarge is wrapped by the error of an answer or an event-stream line
// over MaxMessage bytes; the connection is closed (Follow moves on, as
// when a stream breaks).
var ErrTooLarge = fmt.Errorf("a node sent an answer or event line over %d bytes", MaxMessage)

// Endpoint is one node's API as the CLI dials it.
type Endpoint struct {
	Name string // the node's name: its certificate must carry it
	Addr string // host:port of its API
}

func (e Endpoint) String() string { return e.Name + " (" + e.Addr + ")" }

// Endpoints is a fixed endpoint list for NewClient.
func Endpoints(eps ...Endpoint) func() []Endpoint {
	return func() []Endpoint { return eps }
}

// ErrUnreachable is wrapped by the error of an operation for which no node
// could be reached (or no node address is known yet).
var ErrUnreachable = errors.New("no node of the cluster could be reached")

// APIError is a node's answer other than success.
type APIError struct {
	Node    string
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("node %s answered %d: %s", e.Node, e.Status, e.Message)
}

// Client is the CLI's side of the API. Operations that any node can answer
// (Members, Follow, WaitNonce, the key operations) go to the first node
// among the current endpoints (in random order) that answers: three tries
// start at once, then one more every Stagger or as soon as one fails, all
// within one ConnectTimeout. Set the exported fields before the first call.
type Client struct {
	ConnectTimeout time.Duration // TCP connect and TLS handshake; default DefaultConnectTimeout
	RequestTimeout time.Duration // one request once connected; default DefaultRequestTimeout
	StreamIdle     time.Duration // an event stream silent this long is dead; default 3 × HeartbeatInterval
	Stagger        time.Duration // between starting tries of two nodes; default DefaultStagger
	RetryDelay     time.Duration // Follow: pause after a round that reached no node; default 250 ms
	// ServerCert, when set, is called with each node's verified
	// certificate after a handshake (the CLI renews one that is past two
	// thirds of its life). It runs on the dialling goroutine.
	ServerCert func(ctx context.Context, node string, cert *x509.Certificate)

	creds     pki.Credentials
	endpoints func() []Endpoint
}

// NewClient makes a client with the CLI's credentials (pki.CA.IssueCLI)
// that talks to the nodes endpoints returns; it is called at each
// connection attempt, so nodes added later are used too.
func NewClient(creds pki.Credentials, endpoints func() []Endpoint) (*Client, error) {
	if _, err := creds.ClientTLS("check"); err != nil {
		return nil, fmt.Errorf("node API client: %w", err)
	}
	if endpoints == nil {
		endpoints = Endpoints()
	}
	return &Client{creds: creds, endpoints: endpoints}, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (c *Client) connectTimeout() time.Duration {
	return orDefault(c.ConnectTimeout, DefaultConnectTimeout)
}
func (c *Client) requestTimeout() time.Duration {
	return orDefault(c.RequestTimeout, DefaultRequestTimeout)
}
func (c *Client) streamIdle() time.Duration { return orDefault(c.StreamIdle, 3*HeartbeatInterval) }
func (c *Client) stagger() time.Duration    { return orDefault(c.Stagger, DefaultStagger) }
func (c *Client) retryDelay() time.Duration {
	return orDefault(c.RetryDelay, 250*time.Millisecond)
}

// dial connects to ep and completes the TLS handshake by deadline.
func (c *Client) dial(ctx context.Context, ep Endpoint, deadline time.Time) (*tls.Conn, error) {
	cfg, err := c.creds.ClientTLS(ep.Name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{KeepAlive: 15 * time.Second}, Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", ep.Addr)
	if err != nil {
		return nil, err
	}
	tc := conn.(*tls.Conn)
	if c.ServerCert != nil {
		if peer := tc.ConnectionState().PeerCertificates; len(peer) > 0 {
			c.ServerCert(ctx, ep.Name, peer[0])
		}
	}
	return tc, nil
}

// Dial connects to the one node ep (its certificate must name ep.Name)
// within ConnectTimeout. The caller closes the connection.
func (c *Client) Dial(ctx context.Context, ep Endpoint) (*tls.Conn, error) {
	conn, err := c.dial(ctx, ep, time.Now().Add(c.connectTimeout()))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, ep, err)
	}
	return conn, nil
}

// shuffled is a random order of eps, so that many CLIs spread over the
// nodes; avoid, if set, goes last.
func shuffled(eps []Endpoint, avoid string) []Endpoint {
	out := append([]Endpoint(nil), eps...)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	for i, ep := range out {
		if ep.Name == avoid && avoid != "" {
			out = append(append(out[:i:i], out[i+1:]...), ep)
			break
		}
	}
	return out
}

// firstOf runs try against eps until one succeeds: it starts a few tries
// at once, then one more every Stagger or as soon as one fails, and starts none after
// the connect deadline (one ConnectTimeout from now), which try must also
// keep for its connect. It returns the first success; later successes are
// handed to discard.
func firstOf[T any](ctx context.Context, c *Client, eps []Endpoint, try func(ctx context.Context, ep Endpoint, connectBy time.Time) (T, error), discard func(T)) (T, Endpoint, error) {
	var zero T
	if len(eps) == 0 {
		return zero, Endpoint{}, fmt.Errorf("%w: no node address is known", ErrUnreachable)
	}
	ctx, cancel := context.WithCancel(ctx)
	connectBy := time.Now().Add(c.connectTimeout())
	type result struct {
		v   T
		ep  Endpoint
		err error
	}
	results := make(chan result, len(eps))
	next, running := 0, 0
	start := func() {
		ep := eps[next]
		next++
		running++
		go func() {
			v, err := try(ctx, ep, connectBy)
			results <- result{v, ep, err}
		}()
	}
	// finish cancels the losers and collects them in the background.
	finish := func() {
		cancel()
		go func(n int) {
			for range n {
				if r := <-results; r.err == nil && discard != nil {
					discard(r.v)
				}
			}
		}(running)
	}
	var errs []string
	tick := time.NewTicker(c.stagger())
	defer tick.Stop()
	for next < min(burst, len(eps)) {
		start()
	}
	for running > 0 {
		select {
		case r := <-results:
			running--
			if r.err == nil {
				finish()
				return r.v, r.ep, nil
			}
			errs = append(errs, fmt.Sprintf("%s: %v", r.ep, r.err))
			if next < len(eps) && time.Now().Before(connectBy) {
				start()
			}
		case <-tick.C:
			if next < len(eps) && time.Now().Before(connectBy) {
				start()
			}
		case <-ctx.Done():
			finish()
			return zero, Endpoint{}, ctx.Err()
		}
	}
	cancel()
	return zero, Endpoint{}, unreachable(errs, len(eps)-next)
}

func unreachable(errs []string, notTried int) error {
	const show = 3
	msg := strings.Join(errs[:min(len(errs), show)], "; ")
	if more := len(errs) - show; more > 0 {
		msg += fmt.Sprintf("; and %d more", more)
	}
	if notTried > 0 {
		msg += fmt.Sprintf("; %d not tried within the connect timeout", notTried)
	}
	return fmt.Errorf("%w: %s", ErrUnreachable, msg)
}

// roundTrip sends one request on conn and decodes a 200 answer into out,
// within timeout.
func (c *Client) roundTrip(ctx context.Context, conn *tls.Conn, ep Endpoint, timeout time.Duration, method, path string, in, out any) error {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	resp, err := c.send(ctx, conn, ep, method, path, in)
	if err != nil {
		return err
	}
	return decodeBody(resp, ep, method, path, out)
}

// readLine reads one line of at most MaxMessage bytes from r; a longer one
// is ErrTooLarge, read no further (the caller drops the connection), so
// memory stays bounded.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > MaxMessage {
			return nil, ErrTooLarge
		}
		if need := len(line) + len(chunk); need > cap(line) {
			// Double (append grows big slices by a quarter: five times
			// the line's size allocated in all).
			grown := make([]byte, len(line), min(max(2*cap(line), need), MaxMessage))
			copy(grown, line)
			line = grown
		}
		line = append(line, chunk...)
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
}

// send writes one request, asking the server to close the connection
// after it, and reads the answer's head (see sendOn).
func (c *Client) send(ctx context.Context, conn *tls.Conn, ep Endpoint, method, path string, in any) (*http.Response, error) {
	return sendOn(ctx, conn, ep, method, path, in, false)
}

// sendOn writes one request on conn (keepAlive: the connection serves a
// next request, as enrolment's two do) and reads the answer's head; a
// status other than 200 is an *APIError: 409 wraps ErrWrongNonce (a leave)
// or ErrEnrolled (an enrolment), 410 ErrTokenExpired.
func sendOn(ctx context.Context, conn *tls.Conn, ep Endpoint, method, path string, in any, keepAlive bool) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+ep.Name+path, body)
	if err != nil {
		return nil, err
	}
	req.Close = !keepAlive
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := req.Write(conn); err != nil {
		return nil, fmt.Errorf("%s %s on %s: %w", method, path, ep, err)
	}
	// A fresh reader for each answer: the server sends nothing after an
	// answer until the next request, so nothing is read ahead and lost.
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return nil, fmt.Errorf("%s %s on %s: %w", method, path, ep, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var eb errorBody
		json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&eb)
		apiErr := &APIError{Node: ep.Name, Status: resp.StatusCode, Message: eb.Error}
		switch {
		case resp.StatusCode == http.StatusConflict && path == PathEnrol:
			return nil, fmt.Errorf("%w: %w", ErrEnrolled, apiErr)
		case resp.StatusCode == http.StatusConflict:
			return nil, fmt.Errorf("%w: %w", ErrWrongNonce, apiErr)
		case resp.StatusCode == http.StatusGone:
			return nil, fmt.Errorf("%w: %w", ErrTokenExpired, apiErr)
		}
		return nil, apiErr
	}
	return resp, nil
}

// decodeBody reads a 200 answer's body, at most MaxMessage bytes, into out.
func decodeBody(resp *http.Response, ep Endpoint, method, path string, out any) error {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxMessage+1))
	if err == nil && len(b) > MaxMessage {
		err = ErrTooLarge
	}
	if err == nil {
		err = json.Unmarshal(b, out)
	}
	if err != nil {
		return fmt.Errorf("%s %s on %s: %w", method, path, ep, err)
	}
	return nil
}

// call dials ep and makes one request on a fresh connection.
func (c *Client) call(ctx context.Context, ep Endpoint, connectBy time.Time, method, path string, in, out any) error {
	conn, err := c.dial(ctx, ep, connectBy)
	if err != nil {
		return err
	}
	defer conn.Close()
	return c.roundTrip(ctx, conn, ep, c.requestTimeout(), method, path, in, out)
}

// Members is the view of the first node that answers. It takes at most one
// ConnectTimeout plus one RequestTimeout; when no node answers, the error
// wraps ErrUnreachable and says why for the first few.
func (c *Client) Members(ctx context.Context) (Snapshot, error) {
	snap, _, err := firstOf(ctx, c, shuffled(c.endpoints(), ""), func(ctx context.Context, ep Endpoint, connectBy time.Time) (Snapshot, error) {
		var s Snapshot
		err := c.call(ctx, ep, connectBy, http.MethodGet, PathMembers, nil, &s)
		return s, err
	}, nil)
	return snap, err
}

// MembersOf is the view of the node name itself (through the first of its
// endpoints that answers).
func (c *Client) MembersOf(ctx context.Context, name string) (Snapshot, error) {
	conn, ep, err := c.dialNode(ctx, name)
	if err != nil {
		return Snapshot{}, err
	}
	defer conn.Close()
	var s Snapshot
	err = c.roundTrip(ctx, conn, ep, c.requestTimeout(), http.MethodGet, PathMembers, nil, &s)
	return s, err
}

// keyTimeout bounds a keyring operation on one node.
const keyTimeout = 30 * time.Second

// DialNode connects to the node name (see dialNode); the caller closes
// the connection.
func (c *Client) DialNode(ctx context.Context, name string) (*tls.Conn, Endpoint, error) {
	return c.dialNode(ctx, name)
}

// dialNode connects to the node name through the first of its endpoints
// that answers, in the order given (its public address first, the way in
// from behind NAT).
func (c *Client) dialNode(ctx context.Context, name string) (*tls.Conn, Endpoint, error) {
	var errs []error
	for _, ep := range c.endpoints() {
		if ep.Name != name {
			continue
		}
		conn, err := c.Dial(ctx, ep)
		if err == nil {
			return conn, ep, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, Endpoint{}, fmt.Errorf("%s: no API address is known for it", name)
	}
	return nil, Endpoint{}, fmt.Errorf("%s: %w", name, errors.Join(errs...))
}

// keyOp runs one keyring operation on the node name, on its own keyring
// only: keys change one node at a time, through this API, never over
// gossip.
func (c *Client) keyOp(ctx context.Context, name, path string, key []byte) (KeyReport, error) {
	conn, ep, err := c.dialNode(ctx, name)
	if err != nil {
		return KeyReport{}, err
	}
	defer conn.Close()
	var resp KeyResponse
	if err := c.roundTrip(ctx, conn, ep, keyTimeout, http.MethodPost, path, KeyRequest{Key: key}, &resp); err != nil {
		return KeyReport{}, err
	}
	if resp.Error != "" {
		return resp.Report, fmt.Errorf("%s on node %s: %s", path, ep.Name, resp.Error)
	}
	return resp.Report, nil
}

// KeyList lists the gossip keys the node name holds.
func (c *Client) KeyList(ctx context.Context, name string) (KeyReport, error) {
	return c.keyOp(ctx, name, PathKeyList, nil)
}

// KeyInstall adds key to the node name's keyring.
func (c *Client) KeyInstall(ctx context.Context, name string, key []byte) (KeyReport, error) {
	return c.keyOp(ctx, name, PathKeyInstall, key)
}

// KeyUse makes the node name encrypt with key (installed before).
func (c *Client) KeyUse(ctx context.Context, name string, key []byte) (KeyReport, error) {
	return c.keyOp(ctx, name, PathKeyUse, key)
}

// KeyRemove removes key from the node name's keyring.
func (c *Client) KeyRemove(ctx context.Context, name string, key []byte) (KeyReport, error) {
	return c.keyOp(ctx, name, PathKeyRemove, key)
}

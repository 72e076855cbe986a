package nodeapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/clusterctl/clusterctl/internal/pki"
	"github.com/clusterctl/clusterctl/internal/ratelog"
)

// Server timings.
const (
	// HeartbeatInterval is how often an idle event stream carries a
	// heartbeat line.
	HeartbeatInterval = time.Second
	// HandshakeTimeout bounds a client's TLS handshake, from the accept:
	// a peer that opens a connection and sends nothing is closed then.
	HandshakeTimeout = 5 * time.Second
	// MaxConnsPerSource bounds the connections one remote IP address holds
	// at once, handshakes included; a connection past it is closed at once
	// (and logged as a refusal).
	MaxConnsPerSource = 16
	// writeTimeout bounds one write to a client; a client that takes
	// longer is dropped.
	writeTimeout = 10 * time.Second
	// leaveTimeout bounds an agent's leave requested over the API.
	leaveTimeout = 30 * time.Second
	// maxBody bounds a request body.
	maxBody = 4 << 10
	// maxHeader bounds a request's header.
	maxHeader = 8 << 10
	// refusalPeers bounds the refusal log's table of peer addresses; the
	// refusals of addresses past it are counted in one line a minute.
	refusalPeers = 4096
	// Accept errors that may pass (EMFILE under a connection flood) are
	// retried after a pause that doubles from acceptRetryMin to
	// acceptRetryMax, as net/http does.
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

// Serve answers the API on ln until ctx ends, then closes ln and returns
// nil (or the listener's error, if it fails first). creds are the node's
// own: its certificate, key and the cluster's CA (see pki.CA.IssueNode).
// Only the CLI of the node's cluster is answered: a peer without a
// certificate from the cluster's CA, with an expired one, or with one of
// another role or cluster fails the TLS handshake and is logged on log (at
// most once a minute per peer address; addresses past a bounded table are
// counted in one line a minute). So is a peer past MaxConnsPerSource
// connections, or one that does not finish its handshake within
// HandshakeTimeout. An accept error that may pass (out of file descriptors)
// is logged and retried with a growing pause. A nil log discards.
func Serve(ctx context.Context, ln net.Listener, creds pki.Credentials, m Membership, log *slog.Logger) error {
	s, err := newServer(creds, m, log)
	if err != nil {
		ln.Close()
		return err
	}
	return s.serve(ctx, ln)
}

type server struct {
	name             string // this node's name, from its certificate
	tls              *tls.Config
	m                Membership
	enroller         Enroller // nil: the node's certificate is fixed
	log              *slog.Logger
	refused          *ratelog.Table
	refusalEvery     time.Duration // refused's interval, and the summary's
	handshakeTimeout time.Duration
	sources          *sourceLimit
	now              func() time.Time
}

func newServer(creds pki.Credentials, m Membership, log *slog.Logger) (*server, error) {
	var (
		cfg  *tls.Config
		name string
		err  error
	)
	enroller, _ := m.(Enroller)
	if enroller != nil { // its certificate changes: self-signed, enrolled, renewed
		cfg, err = pki.NodeServerTLS(creds.Cluster, creds.CAPEM, enroller.Certificate)
		name = enroller.NodeName()
	} else {
		if cfg, err = creds.ServerTLS(); err == nil {
			name, err = creds.Name()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("node API: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &server{name: name, tls: cfg, m: m, enroller: enroller, log: log,
		refused: ratelog.New(time.Minute, refusalPeers), refusalEvery: time.Minute,
		handshakeTimeout: HandshakeTimeout, sources: newSourceLimit(MaxConnsPerSource), now: time.Now}, nil
}

func (s *server) serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathMembers, s.members)
	mux.HandleFunc("GET "+PathEvents, s.events)
	mux.HandleFunc("POST "+PathLeave, s.leave)
	mux.HandleFunc("POST "+PathKeyList, s.keys(func(ctx context.Context, _ []byte) (KeyReport, error) { return s.m.KeyList(ctx) }, false))
	mux.HandleFunc("POST "+PathKeyInstall, s.keys(s.m.KeyInstall, true))
	mux.HandleFunc("POST "+PathKeyUse, s.keys(s.m.KeyUse, true))
	mux.HandleFunc("POST "+PathKeyRemove, s.keys(s.m.KeyRemove, true))
	var handler http.Handler = mux
	if s.enroller != nil {
		mux.HandleFunc("GET "+PathEnrol, s.enrolOffer)
		mux.HandleFunc("POST "+PathEnrol, s.enrol)
		mux.HandleFunc("POST "+PathCert, s.renew)
		handler = s.enrolledOnly(mux)
	}

	hl := &handshakeListener{Listener: ln, s: s, conns: make(chan net.Conn), done: make(chan struct{})}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		MaxHeaderBytes:    maxHeader,
		IdleTimeout:       time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(hl) }()
	go s.summarizeRefusals(ctx)
	select {
	case err := <-errc:
		hl.Close()
		return fmt.Errorf("node API: %w", err)
	case <-ctx.Done():
	}
	// Handlers end with ctx (it is their base context); give them a moment.
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}

// handshakeListener accepts TCP connections, runs each TLS handshake in its
// own goroutine, logs refused peers, and hands http.Server only
// connections that passed.
type handshakeListener struct {
	net.Listener
	s     *server
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
	err   error
	start sync.Once
}

func (l *handshakeListener) Accept() (net.Conn, error) {
	l.start.Do(func() { go l.acceptLoop() })
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// acceptLoop accepts until the listener is closed. An accept error that
// may pass (out of file descriptors under a connection flood) is retried
// after a pause that doubles from acceptRetryMin up to acceptRetryMax, as
// net/http does; it is logged when it starts, once a minute while it lasts,
// and when accepting works again. Any other error stops the API, logged.
func (l *handshakeListener) acceptLoop() {
	var (
		pause         time.Duration
		failed        int
		since, logged time.Time
	)
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.stop(err)
				return
			}
			if !temporary(err) {
				l.s.log.Error("node API: stopped accepting connections", "err", err)
				l.stop(err)
				return
			}
			now := time.Now()
			if failed == 0 {
				since = now
			}
			failed++
			pause = min(max(2*pause, acceptRetryMin), acceptRetryMax)
			if failed == 1 || now.Sub(logged) >= time.Minute {
				logged = now
				l.s.log.Warn("node API: accept failed; retrying", "err", err, "failed_accepts", failed, "retry_in", pause)
			}
			select {
			case <-time.After(pause):
			case <-l.done:
				return
			}
			continue
		}
		if failed > 0 {
			l.s.log.Info("node API: accepting again", "failed_accepts", failed, "after", time.Since(since).Round(time.Millisecond))
			failed, pause = 0, 0
		}
		l.admit(c)
	}
}

// temporary reports whether an accept error may pass by itself.
func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// admit starts c's handshake unless its source holds MaxConnsPerSource
// connections already.
func (l *handshakeListener) admit(c net.Conn) {
	host := hostOf(c.RemoteAddr())
	release, ok := l.s.sources.take(host)
	if !ok {
		c.Close()
		l.s.refuse(host, errTooManyConns)
		return
	}
	go l.handshake(&sourceConn{Conn: c, release: release})
}

var errTooManyConns = fmt.Errorf("more than %d connections at once from this address", MaxConnsPerSource)

func (l *handshakeListener) handshake(c net.Conn) {
	tc := tls.Server(c, l.s.tls)
	ctx, cancel := context.WithTimeout(context.Background(), l.s.handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		l.s.refuse(hostOf(c.RemoteAddr()), err)
		c.Close()
		return
	}
	select {
	case l.conns <- tc:
	case <-l.done:
		tc.Close()
	}
}

func (l *handshakeListener) stop(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.done)
	})
}

func (l *handshakeListener) Close() error {
	l.stop(net.ErrClosed)
	return l.Listener.Close()
}

// refuse logs a peer that was refused, at most once a minute per address;
// addresses past the table's size are counted for summarizeRefusals.
func (s *server) refuse(host string, err error) {
	v := s.refused.Note(host, s.now())
	if v.Log {
		s.log.Warn("node API: refused a peer", "peer", host, "reason", err.Error(), "refused_since_last_log", v.Suppressed)
	}
	if v.Overflow > 0 {
		s.logOverflow(v.Overflow)
	}
}

// summarizeRefusals logs, once a minute until ctx ends, the refusals of
// addresses that did not fit the refusal log's table.
func (s *server) summarizeRefusals(ctx context.Context) {
	t := time.NewTicker(s.refusalEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n := s.refused.Flush(s.now()); n > 0 {
				s.logOverflow(n)
			}
		}
	}
}

func (s *server) logOverflow(n int) {
	s.log.Warn("node API: refused peers past the log's table of addresses (not logged one by one)", "refused", n, "table_size", refusalPeers)
}

func hostOf(addr net.Addr) string {
	host := addr.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return host
}

// sourceLimit counts the open connections of each remote address.
type sourceLimit struct {
	max  int
	mu   sync.Mutex
	open map[string]int // only addresses with open connections
}

func newSourceLimit(max int) *sourceLimit {
	return &sourceLimit{max: max, open: map[string]int{}}
}

// take counts one more connection of host, unless it holds max already;
// release (once) counts it closed.
func (l *sourceLimit) take(host string) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[host] >= l.max {
		return nil, false
	}
	l.open[host]++
	return sync.OnceFunc(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.open[host]--; l.open[host] <= 0 {
			delete(l.open, host)
		}
	}), true
}

// count is how many connections host holds.
func (l *sourceLimit) count(host string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[host]
}

// sourceConn is an admitted connection; closing it frees its source's slot.
type sourceConn struct {
	net.Conn
	release func()
}

func (c *sourceConn) Close() error {
	c.release()
	return c.Conn.Close()
}

func (s *server) members(w http.ResponseWriter, r *http.Request) {
	snap := Snapshot{Node: s.name, Members: s.m.Members(), Time: s.now()}
	if hr, ok := s.m.(HandlerReporter); ok {
		snap.HandlerFailures = hr.HandlerFailures()
	}
	writeJSON(w, http.StatusOK, snap)
}

func (s *server) events(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	snap, ch := s.m.Subscribe(ctx)
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	send := func(line StreamLine) bool {
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := enc.Encode(line); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(StreamLine{Snapshot: &Snapshot{Node: s.name, Members: snap, Time: s.now()}}) {
		return
	}
	beat := time.NewTicker(HeartbeatInterval)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-ch:
			if !ok {
				return // the agent is shutting down: the client moves on
			}
			if !send(StreamLine{Event: &ev}) {
				return
			}
			beat.Reset(HeartbeatInterval)
		case <-beat.C:
			now := s.now()
			if !send(StreamLine{Heartbeat: &now}) {
				return
			}
		}
	}
}

func (s *server) leave(w http.ResponseWriter, r *http.Request) {
	var req LeaveRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Nonce == "" {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "leave: no nonce"})
		return
	}
	// The leave goes on if the client goes away: half a leave helps nobody.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), leaveTimeout)
	defer cancel()
	switch err := s.m.Leave(ctx, req.Nonce); {
	case errors.Is(err, ErrWrongNonce):
		writeJSON(w, http.StatusConflict, errorBody{Error: err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "leave: " + err.Error()})
	default:
		s.log.Info("node API: left the cluster as the CLI asked")
		writeJSON(w, http.StatusOK, struct{}{})
	}
}

func (s *server) keys(op func(context.Context, []byte) (KeyReport, error), needsKey bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req KeyRequest
		if !readJSON(w, r, &req) {
			return
		}
		if needsKey != (req.Key != nil) {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("%s: a key is required exactly for install, use and remove", r.URL.Path)})
			return
		}
		if needsKey && len(req.Key) != 16 && len(req.Key) != 24 && len(req.Key) != 32 {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("%s: the key is %d bytes, not 16, 24 or 32", r.URL.Path, len(req.Key))})
			return
		}
		rep, err := op(r.Context(), req.Key)
		resp := KeyResponse{Report: rep}
		if err != nil {
			resp.Error = err.Error()
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("%s: bad request body: %v", r.URL.Path, err)})
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

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
	"time"

	"github.com/clusterctl/clusterctl/internal/pki"
)

// Server timings.
const (
	// HeartbeatInterval is how often an idle event stream carries a
	// heartbeat line.
	HeartbeatInterval = time.Second
	// HandshakeTimeout bounds a client's TLS handshake.
	HandshakeTimeout = 10 * time.Second
	// writeTimeout bounds one write to a client; a client that takes
	// longer is dropped.
	writeTimeout = 10 * time.Second
	// leaveTimeout bounds an agent's leave requested over the API.
	leaveTimeout = 30 * time.Second
	// maxBody bounds a request body.
	maxBody = 4 << 10
)

// Serve answers the API on ln until ctx ends, then closes ln and returns
// nil (or the listener's error, if it fails first). creds are the node's
// own: its certificate, key and the cluster's CA (see pki.CA.IssueNode).
// Only the CLI of the node's cluster is answered: a peer without a
// certificate from the cluster's CA, with an expired one, or with one of
// another role or cluster fails the TLS handshake and is logged on log (at
// most once a minute per peer address). A nil log discards.
func Serve(ctx context.Context, ln net.Listener, creds pki.Credentials, m Membership, log *slog.Logger) error {
	s, err := newServer(creds, m, log)
	if err != nil {
		ln.Close()
		return err
	}
	return s.serve(ctx, ln)
}

type server struct {
	name    string // this node's name, from its certificate
	tls     *tls.Config
	m       Membership
	log     *slog.Logger
	refused *refusals
	now     func() time.Time
}

func newServer(creds pki.Credentials, m Membership, log *slog.Logger) (*server, error) {
	cfg, err := creds.ServerTLS()
	if err != nil {
		return nil, fmt.Errorf("node API: %w", err)
	}
	name, err := creds.Name()
	if err != nil {
		return nil, fmt.Errorf("node API: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &server{name: name, tls: cfg, m: m, log: log, refused: newRefusals(time.Minute), now: time.Now}, nil
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

	hl := &handshakeListener{Listener: ln, s: s, conns: make(chan net.Conn), done: make(chan struct{})}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(hl) }()
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

func (l *handshakeListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.stop(err)
			return
		}
		go l.handshake(c)
	}
}

func (l *handshakeListener) handshake(c net.Conn) {
	tc := tls.Server(c, l.s.tls)
	ctx, cancel := context.WithTimeout(context.Background(), HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		l.s.refuse(c.RemoteAddr(), err)
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

// refuse logs a peer whose handshake failed, at most once a minute per
// address.
func (s *server) refuse(addr net.Addr, err error) {
	host := addr.String()
	if h, _, e := net.SplitHostPort(host); e == nil {
		host = h
	}
	if n, ok := s.refused.allow(host, s.now()); ok {
		s.log.Warn("node API: refused a peer", "peer", host, "reason", err.Error(), "refused_since_last_log", n)
	}
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

package nodeapi

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// UpdateKind says which field of an Update is set.
type UpdateKind int

const (
	// UpdateSnapshot: a stream (re)started; Snapshot is the whole view of
	// From and replaces whatever the caller knew, so nothing that happened
	// while no stream was up is missed.
	UpdateSnapshot UpdateKind = iota + 1
	// UpdateEvent: one membership change, as From learnt it.
	UpdateEvent
	// UpdateUnreachable: a round of tries reached no node; Err says why.
	// Follow keeps trying.
	UpdateUnreachable
)

// Update is one item Follow delivers.
type Update struct {
	Kind     UpdateKind
	From     Endpoint // the node the stream comes from (snapshot, event)
	Snapshot Snapshot
	Event    Event
	Err      error
}

// stream is one open event stream.
type stream struct {
	conn *tls.Conn
	r    *bufio.Reader
	idle time.Duration
	snap Snapshot
}

// openStream connects to ep, asks for the event stream and reads its first
// line, the snapshot.
func (c *Client) openStream(ctx context.Context, ep Endpoint, connectBy time.Time) (*stream, error) {
	conn, err := c.dial(ctx, ep, connectBy)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(c.requestTimeout()))
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	resp, err := c.send(ctx, conn, ep, http.MethodGet, PathEvents, nil)
	if err != nil {
		stop()
		conn.Close()
		return nil, err
	}
	st := &stream{conn: conn, r: bufio.NewReader(resp.Body), idle: c.streamIdle()}
	line, err := st.next()
	stop()
	if err == nil && line.Snapshot == nil {
		err = errors.New("the event stream did not start with a snapshot")
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s on %s: %w", PathEvents, ep, err)
	}
	st.snap = *line.Snapshot
	return st, nil
}

// next reads one line; a stream silent for longer than idle is dead.
func (s *stream) next() (StreamLine, error) {
	s.conn.SetDeadline(time.Now().Add(s.idle))
	b, err := readLine(s.r)
	if err != nil {
		return StreamLine{}, err
	}
	var line StreamLine
	if err := json.Unmarshal(b, &line); err != nil {
		return StreamLine{}, fmt.Errorf("event stream: %w", err)
	}
	return line, nil
}

// Follow streams the cluster's membership from any one reachable node into
// the returned channel until ctx ends (then it is closed). It connects to
// the first node that answers (see Client), delivers its snapshot and then
// each event the moment the node pushes it. When the stream breaks (the
// node went away, or it was silent for StreamIdle), Follow connects again,
// to another node if one answers, and delivers a fresh snapshot. A round
// that reaches no node delivers UpdateUnreachable and is retried after
// RetryDelay, with the endpoints read anew.
func (c *Client) Follow(ctx context.Context) <-chan Update {
	return c.follow(ctx, c.endpoints)
}

func (c *Client) follow(ctx context.Context, endpoints func() []Endpoint) <-chan Update {
	out := make(chan Update, 64)
	go func() {
		defer close(out)
		send := func(u Update) bool {
			select {
			case out <- u:
				return true
			case <-ctx.Done():
				return false
			}
		}
		last := ""
		for ctx.Err() == nil {
			st, ep, err := firstOf(ctx, c, shuffled(endpoints(), last), c.openStream, func(s *stream) { s.conn.Close() })
			if err != nil {
				if ctx.Err() != nil || !send(Update{Kind: UpdateUnreachable, Err: err}) {
					return
				}
				select {
				case <-time.After(c.retryDelay()):
				case <-ctx.Done():
					return
				}
				continue
			}
			last = ep.Name
			c.pump(ctx, st, ep, send)
		}
	}()
	return out
}

// pump delivers st's snapshot and events until it breaks or ctx ends.
func (c *Client) pump(ctx context.Context, st *stream, ep Endpoint, send func(Update) bool) {
	defer st.conn.Close()
	stop := context.AfterFunc(ctx, func() { st.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if !send(Update{Kind: UpdateSnapshot, From: ep, Snapshot: st.snap}) {
		return
	}
	for {
		line, err := st.next()
		if err != nil {
			return
		}
		if line.Event != nil && !send(Update{Kind: UpdateEvent, From: ep, Event: *line.Event}) {
			return
		}
	}
}

// WaitMember waits until the member name with the tag nonce (an identity the
// agents verified: the CA granted that name and nonce together) is alive as
// seen by a member of the cluster (any node Follow reaches; for the first node of a
// new cluster that is the node itself), and returns it. It ends with ctx;
// the error then says whether any node could be reached.
func (c *Client) WaitMember(ctx context.Context, name, nonce string) (Member, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var lastErr error
	for u := range c.Follow(ctx) {
		switch u.Kind {
		case UpdateSnapshot:
			lastErr = nil
			for _, m := range u.Snapshot.Members {
				if m.Status == StatusAlive && m.Name == name && m.Tags[TagNonce] == nonce {
					return m, nil
				}
			}
		case UpdateEvent:
			if m := u.Event.Member; m.Status == StatusAlive && m.Name == name && m.Tags[TagNonce] == nonce {
				return m, nil
			}
		case UpdateUnreachable:
			lastErr = u.Err
		}
	}
	if lastErr != nil {
		return Member{}, fmt.Errorf("wait for nonce: %w (%w)", ctx.Err(), lastErr)
	}
	return Member{}, fmt.Errorf("wait for nonce: %w", ctx.Err())
}

// ErrLeaveUnconfirmed is wrapped by RequestLeave's error when the node
// acknowledged its leave but no other node could be reached to see it.
var ErrLeaveUnconfirmed = errors.New("the node acknowledged its leave, but no other node confirmed it")

// RequestLeave asks the node name (among the endpoints) to leave the
// cluster if nonce is its own (else the error wraps ErrWrongNonce), then
// waits until another member sees it left (or no longer lists it). When
// name is the only endpoint, the node's own acknowledgement is enough.
func (c *Client) RequestLeave(ctx context.Context, name, nonce string) error {
	conn, target, err := c.dialNode(ctx, name)
	if err != nil {
		return fmt.Errorf("leave %w", err)
	}
	err = c.roundTrip(ctx, conn, target, leaveTimeout+c.requestTimeout(), http.MethodPost, PathLeave, LeaveRequest{Nonce: nonce}, &struct{}{})
	conn.Close()
	if err != nil {
		return fmt.Errorf("leave %s: %w", name, err)
	}
	others := func() []Endpoint {
		var out []Endpoint
		for _, ep := range c.endpoints() {
			if ep.Name != name {
				out = append(out, ep)
			}
		}
		return out
	}
	if len(others()) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var lastErr error
	for u := range c.follow(ctx, others) {
		switch u.Kind {
		case UpdateSnapshot:
			lastErr = nil
			seen := false
			for _, m := range u.Snapshot.Members {
				if m.Name == name && m.Tags[TagNonce] == nonce {
					seen = true
					if m.Status == StatusLeft {
						return nil
					}
				}
			}
			if !seen {
				return nil
			}
		case UpdateEvent:
			if m := u.Event.Member; m.Name == name && m.Tags[TagNonce] == nonce && (m.Status == StatusLeft || u.Event.Type == EventReap) {
				return nil
			}
		case UpdateUnreachable:
			lastErr = u.Err
		}
	}
	if lastErr != nil {
		return fmt.Errorf("leave %s: %w: %w", name, ErrLeaveUnconfirmed, lastErr)
	}
	return fmt.Errorf("leave %s: acknowledged, not yet seen by another member: %w", name, ctx.Err())
}

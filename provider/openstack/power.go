package openstack

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

var _ provider.PowerManager = (*Provider)(nil)

// Nova's task states of a power action (nova/compute/task_states.py).
const (
	taskPoweringOff = "powering-off"
	taskPoweringOn  = "powering-on"
)

// Stop powers the server off (os-stop: Nova shuts the guest down
// gracefully, then powers it off) and waits, polling every poll_interval
// and bounded by ctx, until Nova shows it SHUTOFF with no task. Nova
// answers 409 to os-stop of a server that is not ACTIVE (or ERROR) or has
// a task under way, so Stop reads the server first: a SHUTOFF one is left
// as it is; one powering off, building or rebooting is waited for. The
// server keeps its ports and floating IP.
func (p *Provider) Stop(ctx context.Context, id string) error {
	c, err := p.connect(ctx)
	if err != nil {
		return err
	}
	for {
		s, err := p.powerRead(ctx, c, "stop", id)
		if err != nil {
			return err
		}
		switch {
		case s.TaskState == "" && mapState(s.Status, "") == provider.StateStopped:
			return nil // SHUTOFF (or suspended, paused, shelved: not running either)
		case s.TaskState == "" && (s.Status == "ACTIVE" || s.Status == "ERROR"):
			err := servers.Stop(ctx, c.compute, id).ExtractErr()
			if err != nil && !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
				return apiError("stop server "+id, err)
			}
			// Accepted (powering-off now), or the state moved since it
			// was read (409): look again.
		}
		if err := p.powerWait(ctx, "stop", s); err != nil {
			return err
		}
	}
}

// Start powers a SHUTOFF server on (os-start) and returns once Nova
// accepted it (202; the server is then SHUTOFF with task_state
// powering-on, then ACTIVE). Nova answers 409 to os-start of a server that
// is not SHUTOFF or has a task under way, so Start reads the server first:
// an ACTIVE one, or one already powering on or building, is left as it is;
// one still powering off is waited for, bounded by ctx. A suspended,
// paused or shelved server is not started (os-start cannot): the error
// names the command that can.
func (p *Provider) Start(ctx context.Context, id string) error {
	c, err := p.connect(ctx)
	if err != nil {
		return err
	}
	for {
		s, err := p.powerRead(ctx, c, "start", id)
		if err != nil {
			return err
		}
		switch {
		case s.TaskState == taskPoweringOn || s.TaskState == "" && mapState(s.Status, "") != provider.StateStopped && s.Status != "ERROR":
			return nil // running, or on its way up
		case s.Status == "ERROR":
			name := s.Metadata[MetaNode]
			if name == "" {
				name = s.Name
			}
			return faultError(s, name)
		case s.TaskState == "" && s.Status == "SHUTOFF":
			err := servers.Start(ctx, c.compute, id).ExtractErr()
			if err == nil {
				return nil
			}
			if !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
				return apiError("start server "+id, err)
			}
			// The state moved since it was read: look again.
		case s.TaskState == "":
			return usererr.WithHint(fmt.Errorf("openstack: start server %s: it is %s, which os-start cannot start", id, s.Status),
				"resume, unpause or unshelve it with the openstack client (`openstack server resume|unpause|unshelve "+id+"`)")
		}
		if err := p.powerWait(ctx, "start", s); err != nil {
			return err
		}
	}
}

// powerRead gets the server for Stop or Start. A server Nova does not
// know, or one being deleted, is an error wrapping provider.ErrNotFound.
func (p *Provider) powerRead(ctx context.Context, c *conn, verb, id string) (*servers.Server, error) {
	s, err := servers.Get(ctx, c.compute, id).Extract()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return nil, fmt.Errorf("openstack: %s server %s: %w", verb, id, provider.ErrNotFound)
	}
	if err != nil {
		return nil, apiError(fmt.Sprintf("%s server %s: get it", verb, id), err)
	}
	if s.TaskState == "deleting" || s.Status == "DELETED" || s.Status == "SOFT_DELETED" {
		return nil, fmt.Errorf("openstack: %s server %s: it is being deleted (%s): %w", verb, id, s.Status, provider.ErrNotFound)
	}
	return s, nil
}

// powerWait sleeps one poll interval, or returns an error naming the
// state the server was last in when ctx ends first.
func (p *Provider) powerWait(ctx context.Context, verb string, s *servers.Server) error {
	t := time.NewTimer(p.cfg.PollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		last := s.Status
		if s.TaskState != "" {
			last += " (" + s.TaskState + ")"
		}
		return fmt.Errorf("openstack: %s server %s: still %s: %w", verb, s.ID, last, ctx.Err())
	case <-t.C:
		return nil
	}
}

package agentconfig

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/clusterctl/clusterctl/internal/dnslabel"
)

// Handler events: what a handler's `on` names, and CLUSTERCTL_EVENT.
const (
	EventMemberJoin   = "member-join"
	EventMemberLeave  = "member-leave"
	EventMemberFailed = "member-failed"
	EventMemberUpdate = "member-update"
)

// HandlerEvents are the events a handler may name, in this order.
var HandlerEvents = []string{EventMemberJoin, EventMemberLeave, EventMemberFailed, EventMemberUpdate}

// DefaultHandlerTimeout bounds one run of a handler when its config does not.
const DefaultHandlerTimeout = 30 * time.Second

// HandlerConfig is one event handler: the command Run (an absolute path
// to a file on the node, never built from gossip data, run without a
// shell or arguments) runs on each of the events On, for the members
// with application role Role ("" for every member).
type HandlerConfig struct {
	On   []string `json:"on"`
	Role string   `json:"role,omitempty"`
	Run  string   `json:"run"`
	// Timeout bounds one run (default DefaultHandlerTimeout); a run that
	// takes longer is killed, with its process group, and counts as failed.
	Timeout Duration `json:"timeout,omitempty"`
}

// Validate reports what is wrong with h.
func (h HandlerConfig) Validate() error {
	var errs []error
	if len(h.On) == 0 {
		errs = append(errs, fmt.Errorf("on: name at least one of %s", strings.Join(HandlerEvents, ", ")))
	}
	for _, e := range h.On {
		if !slices.Contains(HandlerEvents, e) {
			errs = append(errs, fmt.Errorf("on: %q is not one of %s", e, strings.Join(HandlerEvents, ", ")))
		}
	}
	if h.Role != "" && !dnslabel.Valid(h.Role) {
		errs = append(errs, fmt.Errorf("role: %q is not a DNS label", h.Role))
	}
	if h.Run == "" || !filepath.IsAbs(h.Run) || filepath.Clean(h.Run) != h.Run {
		errs = append(errs, fmt.Errorf("run: %q must be a clean absolute path to a file on the node", h.Run))
	}
	if h.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: %s is negative", time.Duration(h.Timeout)))
	}
	return errors.Join(errs...)
}

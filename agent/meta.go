package agent

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// Roles a member can publish in its meta.
const (
	RoleNode     = "node"     // a clusterctl-agent on a provisioned machine
	RoleObserver = "observer" // the CLI's short-lived watcher; never listed
)

// Meta is what every member publishes as its memberlist node meta, encoded
// as compact JSON with short keys so that it fits memberlist's 512 bytes.
type Meta struct {
	Cluster    string            `json:"c"`
	Name       string            `json:"n"`
	Nonce      string            `json:"o,omitempty"`
	Provider   string            `json:"p,omitempty"`
	InstanceID string            `json:"i,omitempty"`
	Hostname   string            `json:"h,omitempty"`
	Role       string            `json:"r"`
	Tags       map[string]string `json:"t,omitempty"`
	// Leaving is set by an agent that is about to leave gracefully. It is
	// how other members tell "left" from "dead": memberlist v0.7.0 does not
	// say which one it was in its leave event (Node.State stays zero).
	Leaving bool `json:"l,omitempty"`
}

// EncodeMeta encodes m. It fails when the result is larger than
// memberlist.MetaMaxSize (512 bytes), which memberlist would not accept.
func EncodeMeta(m Meta) ([]byte, error) {
	if m.Role != RoleNode && m.Role != RoleObserver {
		return nil, fmt.Errorf("node meta: role %q is neither %q nor %q", m.Role, RoleNode, RoleObserver)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("node meta: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("node meta of %q is %d bytes, more than memberlist's limit of %d; use fewer or shorter tags",
			m.Name, len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// DecodeMeta decodes meta written by EncodeMeta. Unknown keys are ignored
// so that newer agents can add some.
func DecodeMeta(b []byte) (Meta, error) {
	if len(b) == 0 {
		return Meta{}, errors.New("node meta is empty")
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("node meta: %w", err)
	}
	return m, nil
}

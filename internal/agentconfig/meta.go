package agentconfig

import (
	"fmt"
	"strings"

	"github.com/clusterctl/clusterctl/internal/identity"
)

// memberlist's limits, as constants here so that the CLI, which checks
// cluster.yaml against them, does not link memberlist (package agent's
// tests check that they equal memberlist's).
const (
	// LabelMaxSize is the longest memberlist label: the cluster name.
	LabelMaxSize = 255
	// MetaMaxSize is the largest node meta: a member's encoded tags.
	MetaMaxSize = 512
)

// RoleNode is the role every member publishes: a clusterctl-agent on a
// provisioned machine, the only role the cluster's CA grants.
const RoleNode = identity.RoleNode

// Serf tag keys. User tags are published as UserTagPrefix + key.
const (
	TagCluster    = identity.TagCluster
	TagName       = identity.TagName
	TagNonce      = identity.TagNonce
	TagProvider   = "provider"
	TagInstanceID = "instance_id"
	TagHostname   = "hostname"
	TagRole       = identity.TagRole
	// TagAppRole is the application's role of the node (worker, master,
	// ...: node.role in cluster.yaml, up --role); absent when none was
	// given. It is not TagRole, which is always RoleNode, the membership
	// role the cluster's CA grants.
	TagAppRole    = "app_role"
	TagID         = identity.TagID // the member's proof of identity (internal/identity)
	UserTagPrefix = "tag:"
)

// Meta is what every member publishes as its serf tags: who it is, which
// incarnation (nonce), where it runs, and the user's tags. Its state
// (alive, failed, left, ...) is not in it: that comes from serf and
// memberlist.
type Meta struct {
	Cluster    string
	Name       string
	Nonce      string
	Provider   string
	InstanceID string
	Hostname   string
	Role       string
	// AppRole is the application's role (TagAppRole), "" when none.
	AppRole string
	Tags    map[string]string
}

// SerfTags returns m as serf tags. It fails when the role is unknown or
// the encoded tags would not fit memberlist's 512-byte node meta.
func (m Meta) SerfTags() (map[string]string, error) {
	if m.Role != RoleNode {
		return nil, fmt.Errorf("node tags: role %q is not %q", m.Role, RoleNode)
	}
	t := map[string]string{TagCluster: m.Cluster, TagName: m.Name, TagRole: m.Role}
	for k, v := range map[string]string{TagNonce: m.Nonce, TagProvider: m.Provider, TagInstanceID: m.InstanceID, TagHostname: m.Hostname, TagAppRole: m.AppRole} {
		if v != "" {
			t[k] = v
		}
	}
	for k, v := range m.Tags {
		t[UserTagPrefix+k] = v
	}
	if n := encodedTagsSize(t); n > MetaMaxSize {
		return nil, fmt.Errorf("node tags of %q take up to %d bytes, more than memberlist's limit of %d; use fewer or shorter tags",
			m.Name, n, MetaMaxSize)
	}
	return t, nil
}

// MetaFromTags reads serf tags written by SerfTags. Unknown keys are
// ignored so that newer agents can add some.
func MetaFromTags(t map[string]string) Meta {
	m := Meta{
		Cluster: t[TagCluster], Name: t[TagName], Nonce: t[TagNonce], Provider: t[TagProvider],
		InstanceID: t[TagInstanceID], Hostname: t[TagHostname], Role: t[TagRole], AppRole: t[TagAppRole],
	}
	for k, v := range t {
		if uk, ok := strings.CutPrefix(k, UserTagPrefix); ok {
			if m.Tags == nil {
				m.Tags = map[string]string{}
			}
			m.Tags[uk] = v
		}
	}
	return m
}

// CheckBudget fails when m's tags, with the identity tag the agent adds
// once it knows its address (identity.TagSize bytes), would not fit
// memberlist's node meta (MetaMaxSize, 512 bytes). agent.New
// checks the real values; the CLI checks cluster.yaml with the values it
// knows before anything is made.
func (m Meta) CheckBudget() error {
	tags, err := m.SerfTags()
	if err != nil {
		return err
	}
	tags[TagID] = strings.Repeat("-", identity.TagSize)
	if n := encodedTagsSize(tags); n > MetaMaxSize {
		return fmt.Errorf("node tags of %q take up to %d bytes with the %d-byte identity, more than memberlist's limit of %d; use fewer or shorter tags",
			m.Name, n, identity.TagSize, MetaMaxSize)
	}
	return nil
}

// encodedTagsSize is an upper bound of the size of serf's encoding of t
// (a magic byte and a msgpack map of strings), so that New refuses tags
// that serf would refuse only when the agent starts.
func encodedTagsSize(t map[string]string) int {
	str := func(s string) int {
		switch l := len(s); {
		case l < 32:
			return 1 + l
		case l < 1<<16:
			return 3 + l
		default:
			return 5 + l
		}
	}
	n := 1 + 5
	for k, v := range t {
		n += str(k) + str(v)
	}
	return n
}

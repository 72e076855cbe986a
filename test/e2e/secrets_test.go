//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/clusterctl/clusterctl/cloudinit"
	"github.com/clusterctl/clusterctl/internal/guesttest"
)

// noSecrets says what long-lived secret user-data holds, if any: a private
// key block, or an agent config with a gossip key, a TLS key, an identity
// key or grant (a node gets those only when it enrols). It returns "" when
// there is none, as the read of user-data through the cloud's API (EC2's
// DescribeInstanceAttribute, Nova's user_data) must find.
func noSecrets(ud []byte) string {
	if bytes.Contains(ud, []byte("PRIVATE KEY")) {
		return "a PRIVATE KEY block"
	}
	doc, err := guesttest.Parse(ud)
	if err != nil {
		return fmt.Sprintf("unreadable user-data (%v)", err)
	}
	if text, ok := doc.File(cloudinit.AgentConfigPath); ok {
		var c struct {
			Key []byte `json:"key"`
			API struct {
				Cert string `json:"cert"`
				Key  string `json:"key"`
			} `json:"api"`
			Identity struct {
				Key   string `json:"key"`
				Grant []byte `json:"grant"`
			} `json:"identity"`
			Enrol *struct {
				Token []byte `json:"token"`
			} `json:"enrol"`
		}
		if err := json.Unmarshal([]byte(text), &c); err != nil {
			return fmt.Sprintf("unreadable agent config (%v)", err)
		}
		switch {
		case len(c.Key) > 0:
			return "the gossip key"
		case c.API.Key != "" || c.API.Cert != "":
			return "a TLS key or certificate"
		case c.Identity.Key != "" || len(c.Identity.Grant) > 0:
			return "an identity key or grant"
		case c.Enrol == nil || len(c.Enrol.Token) == 0:
			return "no bootstrap token (and so no way to enrol)"
		}
		return ""
	}
	return "no agent config"
}

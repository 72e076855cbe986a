//go:build e2e

package e2e

import (
	"encoding/json"
	"testing"
)

// upReport is what the e2e tests read of `up -o json`.
type upReport struct {
	Nodes []struct {
		Name, Address, Phase string
		InstanceID           string `json:"instance_id"`
	} `json:"nodes"`
}

// readUp reads the output of `up -o json`, failing t when it is not that.
func readUp(t *testing.T, out string) upReport {
	t.Helper()
	var up upReport
	if err := json.Unmarshal([]byte(out), &up); err != nil {
		t.Fatalf("up -o json output: %v\n%s", err, out)
	}
	return up
}

// gossipByName is each node's gossip state in the output of
// `status -o json`, failing t when it is not that.
func gossipByName(t *testing.T, out string) map[string]string {
	t.Helper()
	var st struct {
		Nodes []struct{ Name, Gossip string } `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -o json output: %v\n%s", err, out)
	}
	m := map[string]string{}
	for _, n := range st.Nodes {
		m[n.Name] = n.Gossip
	}
	return m
}

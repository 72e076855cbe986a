package nodeapi_test

import (
	"github.com/hashicorp/serf/serf"

	"github.com/clusterctl/clusterctl/agent"
	"github.com/clusterctl/clusterctl/internal/agentconfig"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// The detection benchmark's members run the agent's production timing.
func init() {
	nodeapi.ProductTiming = func(sc *serf.Config) { agent.ApplyTiming(agentconfig.DefaultTiming(), sc) }
}

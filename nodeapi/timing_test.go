package nodeapi_test

import (
	"github.com/clusterctl/clusterctl/agent"
	"github.com/clusterctl/clusterctl/nodeapi"
)

// The detection benchmark's members run the agent's production timing.
func init() { nodeapi.ProductTiming = agent.DefaultTiming().Apply }

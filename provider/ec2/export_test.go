package ec2

import (
	"time"
)

// SetConsistency shortens how long p asks again after EC2 says a resource
// it just made does not exist (AWS's guidance is minutes).
func SetConsistency(p *Provider, first, window time.Duration) {
	p.consistency = backoff{First: first, Max: first, Window: window}
}

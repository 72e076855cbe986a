// Package cluster owns what is the same for every provider: the cluster
// config file, the per-cluster state and secrets on disk, and the
// orchestration of up, down, status and render. It knows providers only
// through the provider.Provider interface and its optional capabilities.
//
// The flow of up is write-ahead: a node is recorded in state before any
// provider is asked to make it, its instance id as soon as the provider
// returns one, and it stays in state when anything later fails, so that
// status and down can always see what exists.
//
// Not a stable Go API: see docs/architecture.md, "Public or internal".
package cluster

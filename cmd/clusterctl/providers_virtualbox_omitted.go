//go:build clusterctl_omit_virtualbox

package main

func init() { registerOmitted("virtualbox") }

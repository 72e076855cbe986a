//go:build clusterctl_omit_qemu

package main

func init() { registerOmitted("qemu") }

//go:build clusterctl_omit_ec2

package main

func init() { registerOmitted("ec2") }

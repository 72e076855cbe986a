//go:build clusterctl_omit_openstack

package main

func init() { registerOmitted("openstack") }

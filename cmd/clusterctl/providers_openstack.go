//go:build !clusterctl_omit_openstack

package main

import _ "github.com/clusterctl/clusterctl/provider/openstack"

//go:build !clusterctl_omit_ec2

package main

import _ "github.com/clusterctl/clusterctl/provider/ec2"

//go:build !clusterctl_omit_virtualbox

package main

import _ "github.com/clusterctl/clusterctl/provider/virtualbox"

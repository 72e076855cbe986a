//go:build !clusterctl_omit_qemu

package main

// Each provider this binary offers registers itself from one file like this;
// -tags clusterctl_omit_qemu leaves it out (see providers_omit.go).
import _ "github.com/clusterctl/clusterctl/provider/qemu"

// Command VBoxManage is the fake VBoxManage of package vboxtest, for the
// virtualbox provider's tests (which build it) and for trying clusterctl
// against it by hand: VBOX_USER_HOME=/tmp/vboxtest CLUSTERCTL_VBOXMANAGE=./VBoxManage.
package main

import (
	"os"

	"github.com/clusterctl/clusterctl/provider/virtualbox/internal/vboxtest"
)

func main() {
	os.Exit(vboxtest.Main(os.Args[1:], os.Stdout, os.Stderr))
}

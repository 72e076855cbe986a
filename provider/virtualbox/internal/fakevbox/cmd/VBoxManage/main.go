// Command VBoxManage is the fake VBoxManage of package fakevbox, for the
// virtualbox provider's tests (which build it) and for trying clusterctl
// against it by hand: VBOX_USER_HOME=/tmp/fakevbox CLUSTERCTL_VBOXMANAGE=./VBoxManage.
package main

import (
	"os"

	"github.com/clusterctl/clusterctl/provider/virtualbox/internal/fakevbox"
)

func main() {
	os.Exit(fakevbox.Main(os.Args[1:], os.Stdout, os.Stderr))
}

package main

// Each provider this binary offers registers itself from one file like this.
import _ "github.com/clusterctl/clusterctl/provider/qemu"

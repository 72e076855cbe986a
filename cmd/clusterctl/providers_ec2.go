package main

import _ "github.com/clusterctl/clusterctl/provider/ec2"

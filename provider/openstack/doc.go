// Package openstack is the provider that runs each node as an OpenStack
// server, through gophercloud v2. It registers itself as "openstack".
//
// Credentials come from clouds.yaml (the cloud named by openstack.cloud or
// OS_CLOUD; searched in OS_CLIENT_CONFIG_FILE, ./clouds.yaml,
// ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml, with
// secure.yaml next to it merged in), or, when no cloud is named, from the
// OS_* variables of an openrc file. Password, application credential and
// token auth against Keystone v3 are supported; TLS options (cacert,
// cert/key, verify: false / OS_INSECURE) are honoured. Credentials are never
// written to clusterctl's state or shown in messages. Nothing is read or
// contacted when the provider is made: Preflight authenticates and resolves
// the names in the config before anything is created.
//
// Create makes one server per node: flavor and image by name or id, one NIC
// on the cluster network, the cluster's security group (made once, missing
// rules added on a later up: TCP and UDP on the gossip port from members of
// the group itself only; TCP on the agents' API port, and on 22 when the
// cluster's ssh: switch is on, from openstack.api_from, which defaults to
// this machine's public address detected by Preflight), the user-data
// base64-encoded exactly once, metadata clusterctl.cluster,
// clusterctl.node and managed-by=clusterctl (List finds the cluster's
// servers by it), an optional key pair and config drive. It then polls the
// server until Nova reports ACTIVE, failing at once on ERROR with the
// server's fault message, and optionally attaches a floating IP from a pool.
// The node's address (what its agent advertises) is its fixed address on
// the cluster network's IPv4 subnet (provider.NodeNetwork); its floating
// IP, when it has one, is its PublicAddress, where the CLI dials it.
//
// The agent reaches the nodes by URL: when agent.source is not set, the
// binary is uploaded to a private Swift container of the cluster and the
// nodes download it from a temporary URL (provider.AgentPublisher).
// AgentURL plans that URL without making anything: it reads the object
// store's /info to choose the key's scope (container on OpenStack Swift,
// account on Ceph RGW and unknown stores) and the digest (SHA-256 when
// allowed, else SHA-1), and records the plan and key in the state
// directory; UploadAgent then makes the container, key and object.
// CheckSeed (provider.SeedChecker) holds each user-data to Nova's limit.
//
// Configuration is the "openstack:" section of the cluster config:
//
//	openstack:
//	  cloud: mycloud          # entry in clouds.yaml; default $OS_CLOUD; none: OS_* variables
//	  clouds_file: ""         # explicit clouds.yaml (relative to the config file)
//	  region: ""              # overrides region_name / OS_REGION_NAME
//	  interface: ""           # public (default), internal or admin endpoints
//	  cacert: ""              # CA bundle (overrides clouds.yaml cacert / OS_CACERT)
//	  insecure: false         # skip TLS verification (tests only)
//	  flavor: m1.small        # name or id (required)
//	  image: debian-12        # name or id (required)
//	  network: private        # name or id of a tenant network with one IPv4 subnet (required)
//	  key_name: ""            # existing Nova key pair
//	  floating_ip_pool: ""    # external network to take a floating IP from
//	  config_drive: false     # also pass the user-data on a config drive
//	  security_group: ""      # default clusterctl-CLUSTER
//	  api_from: []            # CIDRs allowed to the API port (and SSH); default: this machine's public address
//	  agent_container: ""     # Swift container for the agent; default clusterctl-CLUSTER
//	  agent_url_ttl: 24h      # lifetime of the agent's temporary URL
//	  parallel: 4             # servers created at once
//	  poll_interval: 3s       # how often Create and Delete ask Nova
//
// `down` deletes the server and the floating IPs clusterctl attached to it;
// `down --all` also deletes the security group and the Swift container.
package openstack

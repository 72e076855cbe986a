#!/bin/sh
# deps.sh — install what clusterctl's build, tests and demo need on a fresh
# Debian/Ubuntu machine, from the distribution's own packages. Idempotent.
#   qemu-system-x86, qemu-utils  the QEMU provider and the e2e VMs
#   mmdebstrap, e2fsprogs        building the Debian 12 test image
#   cloud-init                   `cloud-init schema` validates rendered user-data in tests
#   iproute2, procps             network namespaces, bridges, taps; pgrep in the e2e test
#   nftables                     NAT and drop rules of the network-namespace test labs (test/natlab)
#   openssh-client, openssh-server  `clusterctl ssh`/`cp` run ssh and scp; tests run a real sshd on loopback
#   systemd                      systemd-analyze scores the agent's unit (cloudinit's TestAgentUnitSecurityScore)
#   ShellCheck (shellcheck)      `make lint` checks the shell scripts (scripts/, templates/install-agent.sh, test/e2e/*.sh)
#   moto[server] (pip)           EC2 and S3 API emulator for the EC2 provider's tests
# Go itself must already be installed (see go.mod for the version).
set -eu
[ "$(id -u)" = 0 ] || { echo "deps.sh: run as root (sudo $0)" >&2; exit 1; }
pkgs="qemu-system-x86 qemu-utils mmdebstrap e2fsprogs cloud-init iproute2 procps nftables openssh-client openssh-server systemd shellcheck"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "deps.sh: installing$missing" >&2
	apt-get update -qq
	# shellcheck disable=SC2086 # $missing is package names, one word each
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
fi
# moto's EC2/S3 server, the EC2 provider's test peer (from the Python package index).
if ! python3 -c 'import moto.server' 2>/dev/null; then
	echo "deps.sh: installing moto[server]" >&2
	python3 -m pip install -q "moto[server]" >&2
fi
command -v go >/dev/null || { echo "deps.sh: Go is not installed; install Go $(sed -n 's/^go //p' "$(dirname "$0")/../go.mod") or newer" >&2; exit 1; }
echo "deps.sh: all dependencies present" >&2

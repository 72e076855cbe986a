#!/bin/sh
# netns.sh up|down NS [BRIDGE CIDR_HOST] — a private test network for VMs.
#
#   netns.sh up cctl-e2e clusterbr0 192.168.56.1/24
#       creates network namespace NS (if missing) with lo up and, inside it,
#       bridge BRIDGE carrying the host address CIDR_HOST, link up.
#   netns.sh down cctl-e2e
#       deletes the namespace, and with it every tap and bridge inside it.
#
# Both are idempotent. Nothing outside the namespace is touched: run QEMU (and
# the provider) under `ip netns exec NS ...` so its taps land on the bridge
# in here. Needs root and iproute2.
set -eu

die() {
	echo "netns.sh: error: $*" >&2
	exit 1
}
usage() {
	echo "usage: $0 up NS BRIDGE CIDR_HOST | $0 down NS" >&2
	exit 2
}

[ $# -ge 2 ] || usage
cmd=$1 ns=$2
command -v ip >/dev/null || die "ip not found; install it: apt-get install -y iproute2"
[ "$(id -u)" = 0 ] || die "must run as root"

exists() { ip netns list | awk '{print $1}' | grep -qx "$ns"; }

case $cmd in
up)
	[ $# = 4 ] || usage
	br=$3 addr=$4
	case $addr in */*) ;; *) die "CIDR_HOST must be ADDRESS/PREFIXLEN, like 192.168.56.1/24 (got $addr)" ;; esac
	[ ${#br} -le 15 ] || die "bridge name $br is longer than 15 characters"
	exists || ip netns add "$ns" || die "cannot create network namespace $ns"
	ip -n "$ns" link set lo up
	if ! ip -n "$ns" link show "$br" >/dev/null 2>&1; then
		ip -n "$ns" link add "$br" type bridge || die "cannot create bridge $br in $ns"
	fi
	if ! ip -n "$ns" -o addr show dev "$br" | grep -q " $addr "; then
		ip -n "$ns" addr add "$addr" dev "$br" || die "cannot add $addr to $br in $ns"
	fi
	ip -n "$ns" link set "$br" up || die "cannot bring $br up in $ns"
	echo "netns.sh: namespace $ns: bridge $br $addr up" >&2
	;;
down)
	if exists; then
		ip netns delete "$ns" || die "cannot delete network namespace $ns"
		echo "netns.sh: namespace $ns deleted" >&2
	fi
	;;
*)
	usage
	;;
esac

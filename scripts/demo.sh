#!/bin/sh
# demo.sh up|down — a real two-node QEMU cluster on this machine.
#
#   up    builds (or reuses) the Debian 12 image, makes a private network
#         namespace "clusterctl-demo" with bridge clusterbr0 (192.168.56.1/24)
#         inside it, runs `clusterctl up red blue` there and shows `status`.
#         The VMs keep running; inspect them with
#           sudo ip netns exec clusterctl-demo bin/clusterctl --config $DEMO/cluster.yaml status
#   down  `clusterctl down --all`, then removes the namespace.
#
# Needs root (namespaces, taps) and `make deps` + `make build` (make demo does both).
# Guests run under TCG (software emulation): expect 2-4 minutes until both join.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
NS=clusterctl-demo
DEMO=${DEMO:-${XDG_CACHE_HOME:-$HOME/.cache}/clusterctl/demo}
export CLUSTERCTL_HOME="$DEMO/home"
cli() { ip netns exec "$NS" "$top/bin/clusterctl" --config "$DEMO/cluster.yaml" "$@"; }

[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (sudo make demo)" >&2; exit 1; }
[ -x "$top/bin/clusterctl" ] || { echo "demo.sh: run make build first" >&2; exit 1; }

case ${1:-} in
up)
	image=$(sh "$top/test/e2e/build-image.sh")
	sh "$top/test/e2e/netns.sh" up "$NS" clusterbr0 192.168.56.1/24
	mkdir -p "$DEMO"
	cat > "$DEMO/cluster.yaml" <<EOC
cluster: demo
provider: qemu
agent:
  binary: $top/bin/clusterctl-agent
qemu:
  image: $image/disk.raw
  image_format: raw
  kernel: $image/vmlinuz
  initrd: $image/initrd.img
  accel: tcg
  bridge: clusterbr0
  cidr: 192.168.56.0/24
EOC
	cli up red blue
	cli status
	echo
	echo "The cluster runs in network namespace $NS. Status: sudo CLUSTERCTL_HOME=$CLUSTERCTL_HOME ip netns exec $NS $top/bin/clusterctl --config $DEMO/cluster.yaml status"
	echo "Remove it: sudo make demo-down"
	;;
down)
	if [ -f "$DEMO/cluster.yaml" ] && ip netns list | grep -qw "$NS"; then
		cli down --all || true
	fi
	sh "$top/test/e2e/netns.sh" down "$NS"
	rm -rf "$DEMO"
	;;
*)
	echo "usage: $0 up|down" >&2
	exit 2
	;;
esac

#!/bin/sh
# build-image.sh [OUTDIR] — build (or reuse) the Debian 12 test image that the
# QEMU provider's end-to-end tests boot.
#
# Output, in OUTDIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/clusterctl/images/debian12):
#   vmlinuz      the guest kernel (linux-image-cloud-amd64)
#   initrd.img   its initramfs
#   disk.raw     a sparse ext4 file system (no partition table) for /dev/vda
#   stamp        the hash of this script the image was built from
#
# Boot it with: -kernel vmlinuz -initrd initrd.img -append "root=/dev/vda rw console=ttyS0"
#   -drive file=disk.raw,format=raw,if=virtio  (or a qcow2 overlay on top of it)
#
# The image is keyed by a hash of this script: when OUTDIR holds an image
# built by the same script, it is reused and nothing is downloaded. Set
# FORCE=1 to rebuild anyway.
#
# Packages come from the HOST's apt sources (this script names no mirror). The
# sources file is found at /etc/apt/sources.list.d/debian.sources or
# /etc/apt/sources.list; set APT_SOURCES=/path/to/file to use another one. It
# must offer Debian 12 (bookworm).
#
# Needs root, mmdebstrap and mkfs.ext4 (e2fsprogs >= 1.43 for -d).
set -eu

die() {
	echo "build-image.sh: error: $*" >&2
	exit 1
}

OUTDIR=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/clusterctl/images/debian12}
SUITE=bookworm
DISK_SIZE=${DISK_SIZE:-2G}
INCLUDE="systemd,systemd-sysv,udev,linux-image-cloud-amd64,cloud-init,initramfs-tools,iproute2,ca-certificates,curl,e2fsprogs,netbase,iputils-ping,procps,dbus,openssh-server,sudo"
# dbus: systemd-logind needs it, and logind turns the ACPI power button
# (QMP system_powerdown, what the provider's Delete sends) into a clean poweroff.
# openssh-server, sudo: `clusterctl ssh`/`cp` log in as cloud-init's default user
# (debian), as on Debian's cloud images; cloud-init replaces the host keys made
# here with the one clusterctl made for each node (ssh_deletekeys, ssh_keys).

script=$(readlink -f "$0")
hash=$(sha256sum "$script" | cut -c1-16) || die "cannot hash $script"

if [ "${FORCE:-0}" != 1 ] && [ -f "$OUTDIR/stamp" ] &&
	[ "$(cat "$OUTDIR/stamp")" = "$hash" ] &&
	[ -s "$OUTDIR/vmlinuz" ] && [ -s "$OUTDIR/initrd.img" ] && [ -s "$OUTDIR/disk.raw" ]; then
	echo "build-image.sh: reusing image $hash" >&2
	echo "$OUTDIR"
	exit 0
fi

[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap --mode=root and chroot hooks); try: sudo $0 $*"
command -v mmdebstrap >/dev/null || die "mmdebstrap not found; install it: apt-get install -y mmdebstrap"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 not found; install it: apt-get install -y e2fsprogs"

sources=${APT_SOURCES:-}
if [ -z "$sources" ]; then
	for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
		if [ -s "$f" ] && grep -q '^[^#]' "$f"; then
			sources=$f
			break
		fi
	done
fi
[ -n "$sources" ] || die "no apt sources file found on the host; set APT_SOURCES=/path/to/a/sources/file that offers Debian $SUITE"
[ -r "$sources" ] || die "cannot read apt sources file $sources"
grep -q "$SUITE" "$sources" || die "apt sources file $sources does not mention $SUITE; set APT_SOURCES to a file that offers Debian 12 ($SUITE)"

mkdir -p "$OUTDIR" || die "cannot create $OUTDIR"
work=$(mktemp -d "$OUTDIR/.build.XXXXXX") || die "cannot make a work directory in $OUTDIR"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
echo "build-image.sh: building Debian 12 image $hash in $OUTDIR (apt sources: $sources)" >&2

# The customize hook runs on the host after all packages are installed; "$1"
# is the root file system. It makes the image a cloud-init test guest:
#  - systemd-networkd renders the network (no ifupdown, so cloud-init picks networkd);
#    network-online.target waits (at most 60 s) for one configured link, so
#    services started by cloud-final find the node's address already there
#  - cloud-init looks only at the NoCloud seed (then None), never at the network
#  - the locale is C.UTF-8 (built in: cloud-init need not generate one)
#  - a login prompt on the serial console ttyS0
#  - an empty machine-id, so every VM generates its own at first boot
#  - /dev/vda is the root file system
# shellcheck disable=SC2016 # each hook's "$1" (the root) is expanded by mmdebstrap's shell
if ! mmdebstrap --mode=root --variant=apt --include="$INCLUDE" \
	--customize-hook='if [ -e "$1/sbin/ifup" ]; then chroot "$1" apt-get -y purge ifupdown; fi' \
	--customize-hook='chroot "$1" systemctl enable systemd-networkd.service serial-getty@ttyS0.service' \
	--customize-hook='mkdir -p "$1/etc/systemd/system/systemd-networkd-wait-online.service.d"' \
	--customize-hook='printf "%s\n" "[Service]" "ExecStart=" "ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=60" > "$1/etc/systemd/system/systemd-networkd-wait-online.service.d/any.conf"' \
	--customize-hook='mkdir -p "$1/etc/cloud/cloud.cfg.d"' \
	--customize-hook='printf "%s\n" "datasource_list: [ NoCloud, None ]" > "$1/etc/cloud/cloud.cfg.d/90_datasource.cfg"' \
	--customize-hook='printf "%s\n" "system_info:" "  network:" "    renderers: [networkd]" > "$1/etc/cloud/cloud.cfg.d/91_networkd.cfg"' \
	--customize-hook='printf "%s\n" "locale: C.UTF-8" > "$1/etc/cloud/cloud.cfg.d/92_locale.cfg"' \
	--customize-hook='printf "%s\n" "/dev/vda / ext4 defaults,errors=remount-ro 0 1" > "$1/etc/fstab"' \
	--customize-hook=': > "$1/etc/machine-id"; rm -f "$1/var/lib/dbus/machine-id"' \
	--customize-hook='echo localhost > "$1/etc/hostname"; : > "$1/etc/resolv.conf"' \
	--customize-hook='chroot "$1" apt-get clean; rm -rf "$1"/var/lib/apt/lists/*' \
	"$SUITE" "$work/rootfs" "$sources" >&2; then
	die "mmdebstrap failed (see its output above); check that the host can reach the archives in $sources"
fi

[ -x "$work/rootfs/usr/bin/cloud-init" ] || die "cloud-init is missing from the root file system"
[ ! -e "$work/rootfs/sbin/ifup" ] || die "ifupdown is still installed; cloud-init would not use systemd-networkd"

# Exactly one kernel is installed; take it and its initramfs.
set -- "$work"/rootfs/boot/vmlinuz-*
{ [ $# = 1 ] && [ -f "$1" ]; } || die "expected one kernel in the root file system's /boot, found: $*"
kernel=$1
version=${kernel##*/vmlinuz-}
initrd="$work/rootfs/boot/initrd.img-$version"
[ -f "$initrd" ] || die "no initramfs $initrd for kernel $version"
{ cp "$kernel" "$work/vmlinuz" && cp "$initrd" "$work/initrd.img"; } || die "cannot copy the kernel and initramfs"

truncate -s "$DISK_SIZE" "$work/disk.raw" || die "cannot create $work/disk.raw"
mkfs.ext4 -q -F -L clusterctl-root -d "$work/rootfs" "$work/disk.raw" >&2 ||
	die "mkfs.ext4 -d failed (needs e2fsprogs >= 1.43 and $DISK_SIZE must hold the root file system)"

# Replace the old image only once the new one is complete; the stamp goes last.
rm -f "$OUTDIR/stamp"
for f in vmlinuz initrd.img disk.raw; do
	mv -f "$work/$f" "$OUTDIR/$f" || die "cannot move $f into $OUTDIR"
done
echo "$hash" > "$OUTDIR/stamp"
echo "build-image.sh: built image $hash (kernel $version) in $(($(date +%s) - start))s" >&2
echo "$OUTDIR"

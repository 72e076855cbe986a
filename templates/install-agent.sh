# Installs the clusterctl agent. Run by cloud-init's runcmd as
#   sh -ec SCRIPT clusterctl-agent-install KIND [URL SHA256]
# KIND is seed, url or preinstalled (the binary is already in the image).
# Then it sets up what the agent's unit (clusterctl-agent.service) expects:
#  - the system user clusterctl-agent (no login shell, no home) in the
#    system group clusterctl;
#  - /etc/hosts as a symbolic link to /var/lib/clusterctl-agent-hosts/hosts,
#    a copy of the file cloud-init wrote, in a directory the agent owns: the
#    agent rewrites its block there (a temporary file and a rename) and is
#    never allowed to write in /etc.
# Every failure prints a line starting with "clusterctl-agent-install:" to
# stderr (the console log) and exits non-zero.
set -eu
say() { echo "clusterctl-agent-install: $*" >&2; }
dst=/usr/local/bin/clusterctl-agent
user=clusterctl-agent
group=clusterctl
hostsdir=/var/lib/clusterctl-agent-hosts
hosts=$hostsdir/hosts
case "${1:-}" in
seed)
  mnt=/run/clusterctl-seed
  mkdir -p "$mnt"
  if ! mount -o ro LABEL=cidata "$mnt" 2>/dev/null; then
    mount -o ro /dev/disk/by-label/cidata "$mnt" || { say "cannot mount the seed ISO (label cidata)"; exit 1; }
  fi
  if ! install -m 0755 "$mnt/agent" "$dst"; then
    umount "$mnt" || true
    say "no agent binary on the seed ISO"
    exit 1
  fi
  umount "$mnt"
  say "installed $dst"
  ;;
url)
  url=$2
  sum=$3
  tmp=$(mktemp /tmp/clusterctl-agent.XXXXXX)
  trap 'rm -f "$tmp"' EXIT
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 5 --retry-delay 2 -o "$tmp" "$url" || { say "download of $url failed"; exit 1; }
  elif command -v wget >/dev/null 2>&1; then
    wget -q -t 5 -O "$tmp" "$url" || { say "download of $url failed"; exit 1; }
  else
    say "neither curl nor wget is installed"
    exit 1
  fi
  if ! printf '%s  %s\n' "$sum" "$tmp" | sha256sum -c - >/dev/null 2>&1; then
    say "SHA256 of $url is not $sum; not installing it"
    exit 1
  fi
  install -m 0755 "$tmp" "$dst"
  say "installed $dst"
  ;;
preinstalled)
  [ -x "$dst" ] || { say "agent.source is preinstalled but the image has no executable $dst"; exit 1; }
  ;;
*)
  say "unknown agent source ${1:-(none)}"
  exit 1
  ;;
esac

# The agent's user and group (the group may later read the agent's socket).
if ! getent group "$group" >/dev/null; then
  groupadd --system "$group" || { say "cannot create group $group"; exit 1; }
fi
if ! getent passwd "$user" >/dev/null; then
  useradd --system --gid "$group" --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin --comment "clusterctl agent" "$user" ||
    { say "cannot create user $user"; exit 1; }
fi

# /etc/hosts becomes a link to the agent's copy; the link replaces the file
# in one rename, so a reader never finds /etc/hosts missing.
install -d -m 0755 -o "$user" -g "$group" "$hostsdir" || { say "cannot create $hostsdir"; exit 1; }
if [ "$(readlink /etc/hosts || true)" != "$hosts" ]; then
  install -m 0644 -o "$user" -g "$group" /etc/hosts "$hosts" || { say "cannot copy /etc/hosts to $hosts"; exit 1; }
  if ! { ln -sfn "$hosts" /etc/.hosts.clusterctl-agent && mv -fT /etc/.hosts.clusterctl-agent /etc/hosts; }; then
    say "cannot link /etc/hosts to $hosts"
    exit 1
  fi
fi
say "set up user $user and $hosts"

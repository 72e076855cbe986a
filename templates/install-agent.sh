# Installs the clusterctl agent. Run by cloud-init's runcmd as
#   sh -ec SCRIPT clusterctl-agent-install KIND [URL SHA256]
# Every failure prints a line starting with "clusterctl-agent-install:" to
# stderr (the console log) and exits non-zero; nothing is installed then.
set -eu
say() { echo "clusterctl-agent-install: $*" >&2; }
dst=/usr/local/bin/clusterctl-agent
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
  ;;
*)
  say "unknown agent source ${1:-(none)}"
  exit 1
  ;;
esac
say "installed $dst"

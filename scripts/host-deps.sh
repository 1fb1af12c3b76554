#!/usr/bin/env bash
# Install the Debian packages Corral needs on the host, only those that are missing. Run as root.
set -euo pipefail
PKGS=(qemu-system-x86 qemu-utils ovmf busybox-static cpio e2fsprogs util-linux iproute2 xz-utils zstd
      dosfstools mtools syslinux syslinux-common systemd-boot-efi fdisk debootstrap dnsmasq-base nftables
      openssl passwd postgresql prometheus chromium qemu-guest-agent xorriso openssh-client)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "corral: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if ! command -v node >/dev/null || ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; then
  echo "corral: Node.js 20 or later is required" >&2
  exit 1
fi

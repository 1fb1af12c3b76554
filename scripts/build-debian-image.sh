#!/usr/bin/env bash
# Build a Debian 12 (bookworm) disk image that boots from its own disk through firmware:
#
#   build-debian-image.sh OUT.qcow2 [SIZE]       (as root; SIZE of the virtual disk, default 2G)
#
# Guest: debootstrap minbase + linux-image-cloud-amd64, systemd, udev, dbus; hostname debian12; root password
# $ROOT_PASSWORD (default: corral); kernel and getty on the serial console (ttyS0, 115200); systemd-logind
# powers off on the ACPI power button. For cloud images' ways: cloud-init (local datasources only: NoCloud, ConfigDrive; networkd
# renderer, Debian's default user `debian`), qemu-guest-agent and openssh-server (host keys made on first boot,
# by cloud-init or, without a seed, by ssh-keygen -A before sshd starts). Disk (MBR): partition 1 a 64 MiB FAT ESP with a standalone GRUB as
# /EFI/BOOT/BOOTX64.EFI (UEFI), partition 2 the ext4 root; GRUB for BIOS in the MBR (SeaBIOS). Both GRUBs
# read the same /boot/grub/grub.cfg. If OUT exists it is kept (delete it to rebuild); OUT.version says which
# IMAGE_VERSION of this script built it. MIRROR overrides the
# Debian mirror (default: the one apt on this host uses).
#
# Debian packages it needs on the host (it installs nothing itself):
#   debootstrap  qemu-utils (qemu-img)  fdisk (sfdisk)  e2fsprogs (mkfs.ext4)  dosfstools (mkfs.fat)
#   mtools (mmd, mcopy)  util-linux (losetup, partx, mount, fstrim)  coreutils
# GRUB itself comes from the guest's own grub-pc and grub-efi-amd64-bin, run in a chroot.
set -euo pipefail

SUITE=bookworm
IMAGE_VERSION=4        # written to OUT.version; bump when the guest changes: the tests rebuild another version
ROOT_PASSWORD=${ROOT_PASSWORD:-corral}
GUEST_HOSTNAME=debian12
PACKAGES=linux-image-cloud-amd64,systemd-sysv,udev,dbus,initramfs-tools,ca-certificates
export PATH="$PATH:/usr/sbin:/sbin" LC_ALL=C DEBIAN_FRONTEND=noninteractive MTOOLS_SKIP_CHECK=1

die() { echo "build-debian-image: $*" >&2; exit 1; }
step() { echo "build-debian-image: [${SECONDS}s] $*" >&2; }

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $0 OUT.qcow2 [SIZE]"
OUT=$1 SIZE=${2:-2G}
if [ -e "$OUT" ]; then echo "build-debian-image: $OUT already exists; delete it to rebuild" >&2; exit 0; fi
[ "$(id -u)" -eq 0 ] || die "must run as root (loop devices, mount, chroot)"

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 (Debian package $2)"); }
need debootstrap debootstrap; need qemu-img qemu-utils; need sfdisk fdisk; need mkfs.ext4 e2fsprogs
need mkfs.fat dosfstools; need mcopy mtools; need mmd mtools; need losetup util-linux; need partx util-linux
need fstrim util-linux; need chroot coreutils
if [ ${#missing[@]} -gt 0 ]; then printf 'build-debian-image: missing: %s\n' "${missing[@]}" >&2; exit 2; fi

# The mirror apt uses here (deb822 .sources first, then one-line sources.list), else deb.debian.org.
if [ -z "${MIRROR:-}" ]; then
  MIRROR=$( { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | tr ' ' '\n';
              grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | tr ' ' '\n'; } \
            | grep -E '^https?://.*/debian/?$' | head -n1 || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi

mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d "$(dirname "$OUT")/.build-debian.XXXXXX")
RAW=$WORK/disk.raw MNT=$WORK/root LOOP='' MADE=()
cleanup() {
  local rc=$?
  set +e                                          # clean up as much as possible, whatever fails
  for m in dev proc sys ''; do mountpoint -q "$MNT/$m" 2>/dev/null && umount "$MNT/$m"; done
  [ -n "$LOOP" ] && losetup -d "$LOOP"
  [ ${#MADE[@]} -eq 0 ] || rm -f "${MADE[@]}"
  # Never delete through a mount that is still there (a bind of the host's /dev, /proc or /sys).
  if grep -q " $WORK/" /proc/mounts; then echo "build-debian-image: still mounted under $WORK; left in place" >&2
  else rm -rf --one-file-system "$WORK"; fi
  [ $rc -eq 0 ] || echo "build-debian-image: FAILED (exit $rc); cleaned up" >&2
}
trap cleanup EXIT

step "disk: $SIZE raw, MBR: 64 MiB ESP + ext4 root"
truncate -s "$SIZE" "$RAW"
printf 'start=2048, size=64MiB, type=ef\ntype=83, bootable\n' | sfdisk --quiet "$RAW"
LOOP=$(losetup --find --show --partscan "$RAW")
# Some kernels (no CONFIG_MSDOS_PARTITION) or containers (no udev) give no partition nodes: add them by hand.
[ -b "${LOOP}p2" ] || partx --add "$LOOP" 2>/dev/null || true
for n in 1 2; do
  sys=/sys/block/${LOOP#/dev/}/${LOOP#/dev/}p$n/dev
  [ -b "${LOOP}p$n" ] || ! [ -r "$sys" ] || { mknod "${LOOP}p$n" b "$(cut -d: -f1 "$sys")" "$(cut -d: -f2 "$sys")" && MADE+=("${LOOP}p$n"); }
  [ -b "${LOOP}p$n" ] || die "no partition device ${LOOP}p$n after losetup -P and partx -a"
done
ESP=${LOOP}p1 ROOT=${LOOP}p2

UUID=$(cat /proc/sys/kernel/random/uuid)
step "mkfs.ext4 $ROOT (UUID $UUID)"
mkfs.ext4 -q -L debian-root -U "$UUID" "$ROOT"
mkdir "$MNT"
mount "$ROOT" "$MNT"

step "debootstrap $SUITE from $MIRROR (minbase + $PACKAGES)"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$MNT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
  || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
for m in dev proc sys; do mount --bind "/$m" "$MNT/$m"; done

KVER=$(basename "$(ls -d "$MNT"/lib/modules/* | sort -V | tail -n1)")
step "kernel $KVER: checking the ACPI power button driver"
grep -Eq '^CONFIG_ACPI_BUTTON=(y|m)' "$MNT/boot/config-$KVER" || die "kernel $KVER has no ACPI button driver"
grep -q '^CONFIG_ACPI_BUTTON=y' "$MNT/boot/config-$KVER" \
  || ls "$MNT/lib/modules/$KVER/kernel/drivers/acpi/button.ko"* >/dev/null 2>&1 || die "button.ko missing in $KVER"

step "configure: hostname, fstab, root password, serial console, logind"
echo "$GUEST_HOSTNAME" > "$MNT/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$GUEST_HOSTNAME" > "$MNT/etc/hosts"
echo "UUID=$UUID / ext4 errors=remount-ro 0 1" > "$MNT/etc/fstab"
echo "root:$ROOT_PASSWORD" | chroot "$MNT" chpasswd
: > "$MNT/etc/machine-id"                         # each instance makes its own on first boot
ln -sf /etc/machine-id "$MNT/var/lib/dbus/machine-id"
mkdir -p "$MNT/etc/systemd/logind.conf.d"
printf '[Login]\nHandlePowerKey=poweroff\n' > "$MNT/etc/systemd/logind.conf.d/corral.conf"
CMDLINE="root=UUID=$UUID ro console=tty0 console=ttyS0,115200"   # ttyS0 last: the console systemd uses
cat > "$MNT/etc/default/grub" <<EOF
GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200"
GRUB_TERMINAL="serial console"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
EOF

step "GRUB: grub-pc onto $LOOP (BIOS), standalone grub-efi onto $ESP (UEFI)"
echo 'grub-pc grub-pc/install_devices_empty boolean true' | chroot "$MNT" debconf-set-selections
chroot "$MNT" apt-get install -y -q --no-install-recommends grub-pc grub-efi-amd64-bin >"$WORK/grub.log" 2>&1 \
  || { tail -n 30 "$WORK/grub.log" >&2; die "apt-get install grub-pc grub-efi-amd64-bin failed"; }
chroot "$MNT" grub-install --target=i386-pc --modules="part_msdos ext2" "$LOOP" 2>&1 | sed 's/^/  /' >&2
printf 'insmod part_msdos\ninsmod ext2\nsearch --no-floppy --fs-uuid --set=root %s\nconfigfile ($root)/boot/grub/grub.cfg\n' "$UUID" > "$MNT/tmp/efi.cfg"
chroot "$MNT" grub-mkstandalone -O x86_64-efi -o /tmp/BOOTX64.EFI "boot/grub/grub.cfg=/tmp/efi.cfg"
mkfs.fat -F 16 -n ESP -C "$WORK/esp.fat" $((64 * 1024)) >/dev/null     # built as a file, then copied in
mmd -i "$WORK/esp.fat" ::/EFI ::/EFI/BOOT
mcopy -i "$WORK/esp.fat" "$MNT/tmp/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
dd if="$WORK/esp.fat" of="$ESP" bs=1M conv=fsync status=none
# Written by hand, not by update-grub: in a chroot that would say root=/dev/loopNp2 (no /dev/disk/by-uuid).
# Inside the guest, update-grub (kernel upgrades) makes the same thing from /etc/default/grub.
cat > "$MNT/boot/grub/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set default=0
set timeout=1
insmod part_msdos
insmod ext2
search --no-floppy --fs-uuid --set=root $UUID
menuentry 'Debian GNU/Linux 12 ($KVER)' {
  echo 'Loading Linux $KVER ...'
  linux /boot/vmlinuz-$KVER $CMDLINE
  echo 'Loading initial ramdisk ...'
  initrd /boot/initrd.img-$KVER
}
EOF

step "cloud-init, qemu-guest-agent, openssh-server"
# Installed with apt in the chroot: debootstrap --include=cloud-init fails configuring python3-cryptography.
echo 'cloud-init cloud-init/datasources multiselect NoCloud' | chroot "$MNT" debconf-set-selections
chroot "$MNT" apt-get install -y -q --no-install-recommends cloud-init qemu-guest-agent openssh-server sudo \
  iproute2 >"$WORK/cloud.log" 2>&1 || { tail -n 30 "$WORK/cloud.log" >&2; die "apt-get install cloud-init ... failed"; }
# Local datasources only (disks the host attaches: a NoCloud seed, labelled cidata, or a config-2 ConfigDrive), so no
# boot waits for network metadata services; without either disk ds-identify finds nothing and cloud-init stays off.
# Two, not NoCloud alone: with a single datasource ds-identify skips its search and enables cloud-init at every boot.
# Networking through systemd-networkd (in systemd already; no ifupdown).
printf 'datasource_list: [ NoCloud, ConfigDrive ]\n' > "$MNT/etc/cloud/cloud.cfg.d/90_dpkg.cfg"
printf 'system_info:\n  network:\n    renderers: [networkd]\n' > "$MNT/etc/cloud/cloud.cfg.d/91_corral.cfg"
chroot "$MNT" systemctl enable systemd-networkd >/dev/null 2>&1
# Every instance its own host keys: none in the image; cloud-init makes them, or ssh-keygen -A without a seed.
rm -f "$MNT"/etc/ssh/ssh_host_*
mkdir -p "$MNT/etc/systemd/system/ssh.service.d"
# (before Debian's own `sshd -t`, which fails without host keys: the list is emptied and said again in order)
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
  > "$MNT/etc/systemd/system/ssh.service.d/corral-host-keys.conf"

step "shrink: apt caches, fstrim"
chroot "$MNT" apt-get clean
rm -rf "$MNT"/var/lib/apt/lists/* "$MNT"/var/log/*.log "$MNT"/tmp/*
for m in dev proc sys; do umount "$MNT/$m"; done
sync "$MNT"                                       # blocks freed above are trimmable only once committed
fstrim "$MNT" || echo "build-debian-image: fstrim failed; the image will be larger" >&2
umount "$MNT"
losetup -d "$LOOP"; LOOP=''

step "qemu-img convert -O qcow2 -> $OUT"
qemu-img convert -f raw -O qcow2 "$RAW" "$WORK/out.qcow2"
mv "$WORK/out.qcow2" "$OUT"
echo "$IMAGE_VERSION" > "$OUT.version"
step "done: $OUT ($(du -h "$OUT" | cut -f1) on disk, virtual $SIZE, kernel $KVER) in ${SECONDS}s"

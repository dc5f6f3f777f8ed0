#!/usr/bin/env bash
# Assemble a card image from a root file system made by image/build.sh, without loop devices or
# mounts (works unprivileged, in containers and CI):
#
#   image/disk.sh [--ab] ROOTFS OUT.img [ROOT.ext4]
#
# With ROOT.ext4, the root partition's image is kept there too: it is what an update bundle
# carries (image/bundle.sh).
#
# MBR partition table (what the Raspberry Pi firmware reads on every model):
#   1  FAT32  256 MiB  label VAKA-BOOT  /boot/firmware: firmware, kernel, config.txt, cmdline.txt
#   2  ext4   sized    label vaka-root  / (mounted read-only)
#   3  ext4   16 MiB   label vaka-cred  /var/lib/vaka/credentials: key, certificate, signed config
# The credentials partition is created empty (owned by the image's vaka user); the unit fills it
# at enrolment. cmdline.txt gets root=PARTUUID=<disk id>-02 in front.
#
# --ab (amd64 under UEFI): two root slots for RAUC and GRUB, GPT, named partitions:
#   1  ESP    256 MiB  label VAKA-BOOT  partlabel vaka-boot: EFI/BOOT/BOOTX64.EFI (a standalone
#                                       GRUB with the slot choice built in, image/grub.sh) and
#                                       EFI/BOOT/grubenv (which slot to try, RAUC writes it)
#   2  ext4   slot     partlabel vaka-root-a  slot A, the root file system
#   3  ext4   slot     partlabel vaka-root-b  slot B, empty until the first update
#   4  ext4   16 MiB   partlabel vaka-cred    as above
#   5  ext4   slot     partlabel vaka-data    /var/lib/vaka/update: where the agent downloads an
#                                       update bundle (created empty, owned by the vaka user)
# A slot is the root's size and half as much again, so that later roots fit. GRUB loads the
# kernel and initramfs from the chosen slot's /boot (the kernel is updated with the root). The
# download partition is a slot's size: a bundle is one compressed root, so it never outgrows a
# slot, and RAM (/run, a tenth of it) cannot hold one on a small unit.
# Extra kernel arguments for both slots: VAKA_KERNEL_ARGS (default console=ttyS0,115200).
set -euo pipefail
ab=0
if [ "${1:-}" = --ab ]; then ab=1; shift; fi
rootfs=${1:?usage: disk.sh [--ab] ROOTFS OUT.img [ROOT.ext4]}
img=${2:?usage: disk.sh [--ab] ROOTFS OUT.img [ROOT.ext4]}
keep_root=${3:-}
BOOT_MB=256
CRED_MB=16
ALIGN_MB=4  # erase-block friendly start of every partition

tools=(sfdisk mkfs.ext4 mkfs.vfat mcopy)
[ "$ab" = 1 ] && tools+=(grub-mkstandalone grub-editenv mmd)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || { echo "disk: $tool is missing" >&2; exit 1; }
done
work=$(mktemp -d)
aside=$work/firmware
put_back() {
  # The firmware files go back into the root file system tree once its ext4 image is made.
  if [ -d "$aside" ]; then
    find "$aside" -mindepth 1 -maxdepth 1 -exec mv -t "$rootfs/boot/firmware/" {} +
    rmdir "$aside"
  fi
}
trap 'put_back; rm -rf "$work"' EXIT

# A random disk id (the PARTUUIDs): no two cards share one.
disk_id=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')

# --- 1: the firmware partition ---------------------------------------------------------------
mkfs.vfat -F 32 -n VAKA-BOOT -C "$work/boot.img" $((BOOT_MB * 1024)) >/dev/null
if [ -n "$(ls -A "$rootfs/boot/firmware")" ]; then
  mcopy -s -p -m -i "$work/boot.img" "$rootfs"/boot/firmware/* ::/
fi
if [ "$ab" = 0 ] && [ -f "$rootfs/boot/firmware/cmdline.txt" ]; then
  printf 'root=PARTUUID=%s-02 rootfstype=ext4 %s\n' "$disk_id" \
    "$(tr -d '\n' <"$rootfs/boot/firmware/cmdline.txt")" >"$work/cmdline.txt"
  mcopy -o -i "$work/boot.img" "$work/cmdline.txt" ::/cmdline.txt
fi

# --- 2: the root file system, without the firmware files (they live on partition 1) -----------
mkdir "$aside"
find "$rootfs/boot/firmware" -mindepth 1 -maxdepth 1 -exec mv -t "$aside/" {} +
used_mb=$(du -sm --apparent-size "$rootfs" | cut -f1)
root_mb=$(( (used_mb * 5 / 4 + 128 + ALIGN_MB - 1) / ALIGN_MB * ALIGN_MB ))
truncate -s "${root_mb}M" "$work/root.img"
mkfs.ext4 -q -L vaka-root -d "$rootfs" -E root_owner=0:0 "$work/root.img"
put_back
if [ -n "$keep_root" ]; then
  cp --sparse=always "$work/root.img" "$keep_root"
fi

# --- 3: the credentials partition, empty, for the vaka user -------------------------------------
uid=$(awk -F: '$1 == "vaka" { print $3 }' "$rootfs/etc/passwd")
gid=$(awk -F: '$1 == "vaka" { print $3 }' "$rootfs/etc/group")
truncate -s "${CRED_MB}M" "$work/cred.img"
mkfs.ext4 -q -L vaka-cred -m 0 -E "root_owner=$uid:$gid" "$work/cred.img"
if command -v debugfs >/dev/null; then
  debugfs -w -R "sif / mode 040700" "$work/cred.img" >/dev/null 2>&1  # tmpfiles.d sets it too
fi

# --- A/B: the download partition, empty, for the vaka user ------------------------------------
if [ "$ab" = 1 ]; then
  slot_mb=$(( (root_mb * 3 / 2 + ALIGN_MB - 1) / ALIGN_MB * ALIGN_MB ))
  truncate -s "${slot_mb}M" "$work/data.img"
  mkfs.ext4 -q -L vaka-data -m 0 -E "root_owner=$uid:$gid" "$work/data.img"
  if command -v debugfs >/dev/null; then
    debugfs -w -R "sif / mode 040700" "$work/data.img" >/dev/null 2>&1  # tmpfiles.d sets it too
  fi
fi

# --- A/B: GRUB and its environment on the ESP, the slots' PARTUUIDs in its script ---------------
if [ "$ab" = 1 ]; then
  uuid_a=$(cat /proc/sys/kernel/random/uuid)
  uuid_b=$(cat /proc/sys/kernel/random/uuid)
  "$(dirname "$0")/grub.sh" "$work/boot.img" "$uuid_a" "$uuid_b" \
    "${VAKA_KERNEL_ARGS:-console=ttyS0,115200}"
fi

# --- the card ----------------------------------------------------------------------------------
if [ "$ab" = 1 ]; then
  p1=$ALIGN_MB
  p2=$((p1 + BOOT_MB))
  p3=$((p2 + slot_mb))
  p4=$((p3 + slot_mb))
  p5=$((p4 + CRED_MB))
  total=$((p5 + slot_mb + 1))  # and the backup GPT at the end
  linux=0FC63DAF-8483-4772-8E79-3D69D8477DE4
  rm -f "$img"
  truncate -s "${total}M" "$img"
  sfdisk --quiet "$img" <<EOF
label: gpt
unit: sectors

start=$((p1 * 2048)), size=$((BOOT_MB * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=vaka-boot
start=$((p2 * 2048)), size=$((slot_mb * 2048)), type=$linux, name=vaka-root-a, uuid=$uuid_a
start=$((p3 * 2048)), size=$((slot_mb * 2048)), type=$linux, name=vaka-root-b, uuid=$uuid_b
start=$((p4 * 2048)), size=$((CRED_MB * 2048)), type=$linux, name=vaka-cred
start=$((p5 * 2048)), size=$((slot_mb * 2048)), type=$linux, name=vaka-data
EOF
  dd if="$work/boot.img" of="$img" bs=1M seek="$p1" conv=notrunc,sparse status=none
  dd if="$work/root.img" of="$img" bs=1M seek="$p2" conv=notrunc,sparse status=none
  dd if="$work/cred.img" of="$img" bs=1M seek="$p4" conv=notrunc,sparse status=none
  dd if="$work/data.img" of="$img" bs=1M seek="$p5" conv=notrunc,sparse status=none
  echo "disk: $img (${total} MiB, GPT: boot ${BOOT_MB}, slots A and B ${slot_mb} each" \
    "(root ${root_mb}), credentials ${CRED_MB}, downloads ${slot_mb})" >&2
  exit 0
fi
p1=$ALIGN_MB
p2=$((p1 + BOOT_MB))
p3=$((p2 + root_mb))
total=$((p3 + CRED_MB))
rm -f "$img"
truncate -s "${total}M" "$img"
sfdisk --quiet "$img" <<EOF
label: dos
label-id: 0x$disk_id
unit: sectors

start=$((p1 * 2048)), size=$((BOOT_MB * 2048)), type=c
start=$((p2 * 2048)), size=$((root_mb * 2048)), type=83
start=$((p3 * 2048)), size=$((CRED_MB * 2048)), type=83
EOF
dd if="$work/boot.img" of="$img" bs=1M seek="$p1" conv=notrunc,sparse status=none
dd if="$work/root.img" of="$img" bs=1M seek="$p2" conv=notrunc,sparse status=none
dd if="$work/cred.img" of="$img" bs=1M seek="$p3" conv=notrunc,sparse status=none
echo "disk: $img (${total} MiB: boot ${BOOT_MB}, root ${root_mb}, credentials ${CRED_MB}; disk id $disk_id)" >&2

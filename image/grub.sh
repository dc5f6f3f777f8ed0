#!/usr/bin/env bash
# Put the A/B boot path onto a card's EFI system partition (a FAT image), with mtools only:
#
#   image/grub.sh BOOT.img PARTUUID_A PARTUUID_B "KERNEL ARGS"
#
# Called by image/disk.sh --ab. Writes
#   EFI/BOOT/BOOTX64.EFI  a standalone GRUB (grub-mkstandalone -O x86_64-efi): the firmware's
#                         fallback path, so the card boots without an NVRAM boot entry
#   EFI/BOOT/grubenv      ORDER="A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0 (slot B is empty)
# The script inside GRUB is RAUC's slot selection (rauc's contrib/grub.conf, docs/integration.rst):
# the first slot in ORDER that is good (X_OK=1) and not already being tried (X_TRY=0) is booted,
# and its X_TRY is set before the kernel starts. `rauc status mark-good` on the unit sets X_TRY=0
# again; a slot that never gets there is skipped on the next boot. RAUC sets ORDER, X_OK and X_TRY
# when it installs into a slot. When no slot qualifies (every good slot failed its try), the try
# flags of the good slots are cleared and the first good one is booted: a unit keeps trying
# rather than stopping at a GRUB prompt in a home.
set -euo pipefail
boot=${1:?usage: grub.sh BOOT.img PARTUUID_A PARTUUID_B KERNEL_ARGS}
uuid_a=${2:?} uuid_b=${3:?} args=${4:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/grub.cfg" <<EOF
# Vaka unit: A/B slot choice (image/grub.sh). GRUB's own variables only; no menu is shown.
set timeout=0
set timeout_style=hidden
set default=0
insmod part_gpt
insmod fat
insmod ext2
insmod all_video
# The FAT that holds this GRUB and its environment, by its label (GRUB's own cmdpath names
# the whole disk, not the partition, under OVMF).
search --no-floppy --label VAKA-BOOT --set=esp
set env=(\$esp)/EFI/BOOT/grubenv
regexp --set=1:disk '^([^,]+),' "\$esp"
set ORDER="A B"
set A_OK=0
set B_OK=0
set A_TRY=0
set B_TRY=0
load_env -f \$env ORDER A_OK B_OK A_TRY B_TRY

set chosen=
for SLOT in \$ORDER; do
  if [ "\$SLOT" = "A" ]; then
    OK=\$A_OK
    TRY=\$A_TRY
  elif [ "\$SLOT" = "B" ]; then
    OK=\$B_OK
    TRY=\$B_TRY
  else
    continue
  fi
  if [ "\$OK" = 1 -a "\$TRY" = 0 ]; then
    chosen=\$SLOT
    break
  fi
done
if [ -z "\$chosen" ]; then
  # Every good slot has had its try: clear the tries and start again from the first good one.
  for SLOT in \$ORDER; do
    if [ "\$SLOT" = "A" -a "\$A_OK" = 1 ]; then
      chosen=A
      break
    fi
    if [ "\$SLOT" = "B" -a "\$B_OK" = 1 ]; then
      chosen=B
      break
    fi
  done
  set A_TRY=0
  set B_TRY=0
fi
if [ -z "\$chosen" ]; then
  set chosen=A
fi
if [ "\$chosen" = "A" ]; then
  set A_TRY=1
  set default=0
else
  set B_TRY=1
  set default=1
fi
save_env -f \$env A_TRY B_TRY
echo "vaka: booting slot \$chosen (ORDER=\$ORDER A_OK=\$A_OK A_TRY=\$A_TRY B_OK=\$B_OK B_TRY=\$B_TRY)"

menuentry "Slot A" {
  linux (\$disk,gpt2)/boot/vmlinuz root=PARTUUID=$uuid_a ro rootwait panic=30 rauc.slot=A $args
  initrd (\$disk,gpt2)/boot/initrd.img
}
menuentry "Slot B" {
  linux (\$disk,gpt3)/boot/vmlinuz root=PARTUUID=$uuid_b ro rootwait panic=30 rauc.slot=B $args
  initrd (\$disk,gpt3)/boot/initrd.img
}
EOF

grub-mkstandalone -O x86_64-efi -o "$work/BOOTX64.EFI" --locales= --fonts= --themes= \
  "boot/grub/grub.cfg=$work/grub.cfg"
grub-editenv "$work/grubenv" create
grub-editenv "$work/grubenv" set ORDER="A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0
mmd -i "$boot" ::/EFI 2>/dev/null || true  # there already if the root brought one
mmd -i "$boot" ::/EFI/BOOT 2>/dev/null || true
mcopy -o -i "$boot" "$work/BOOTX64.EFI" "$work/grubenv" ::/EFI/BOOT/

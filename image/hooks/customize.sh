#!/usr/bin/env bash
# mmdebstrap customize hook, shared by every variant: turns a Debian (or Raspberry Pi OS) root
# file system into a Vaka unit. Runs on the build host with the root file system as $1, after the
# packages are installed. Only `pip` runs inside the root (chroot; under qemu-user for a foreign
# architecture); everything else is done from outside, so it works for any architecture.
#
# Environment (set by image/build.sh):
#   VAKA_REPO      the project checkout (systemd/, firmware_config/)
#   VAKA_HERE      image/
#   VAKA_PROFILE   nightcam | tv
#   VAKA_BOARD     rpi | generic
#   VAKA_VARIANT   the variant's name (image/variants/), RAUC's `compatible` is vaka-VARIANT
#   VAKA_VERSION   the root's version: IMAGE_ID=vaka-VARIANT and IMAGE_VERSION= in os-release
#   VAKA_WHEELS    a directory with the project's wheel, constraints.txt (pins of the tested venv)
#                  and ca.pem (the build host's trusted CAs, for pip; not left in the image)
#   VAKA_SITE      optional: the municipality's files for /etc/vaka (agent.toml, server-ca.crt,
#                  ticket-key.pub.pem, config-key.pub.pem, claim.crt, claim.key, technician_keys),
#                  and rauc-keyring.pem (the update signers' CA, for /etc/rauc/keyring.pem)
#   VAKA_PIP_INDEX optional: a package index to install the agent's dependencies from
#   VAKA_AB        1 for the A/B card (build.sh --ab): image/overlay-ab, the download partition
set -euo pipefail
root=$1
# Everything below writes under $root: never let it be the build host's own root.
if [ -z "$root" ] || [ "$(cd "$root" && pwd -P)" = / ] || [ ! -d "$root/etc" ]; then
  echo "vaka-image: refusing to customize '$root'" >&2
  exit 1
fi
: "${VAKA_REPO:?}" "${VAKA_HERE:?}" "${VAKA_PROFILE:?}" "${VAKA_BOARD:?}" "${VAKA_WHEELS:?}"
say() { echo "vaka-image: $*" >&2; }

# --- the agent: /opt/vaka/venv from the unit's wheels (vaka-agent and the members it needs) ----
# --system-site-packages: python3-systemd comes from the distribution (systemd-python has no
# wheel), and on a Raspberry Pi so do picamera2 and libcamera's bindings (Raspberry Pi OS only).
say "installing the agent into /opt/vaka/venv"
mkdir -p "$root/tmp/vaka-wheels"
cp "$VAKA_WHEELS"/* "$root/tmp/vaka-wheels/"
index_args=()
if [ -n "${VAKA_PIP_INDEX:-}" ]; then index_args=(--index-url "$VAKA_PIP_INDEX"); fi
# DNS for pip: systemd-resolved has made /etc/resolv.conf a link into /run, empty in a chroot.
rm -f "$root/etc/resolv.conf"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
in_root() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 chroot "$root" "$@"; }
in_root python3 -m venv --system-site-packages /opt/vaka/venv
in_root env PIP_CERT=/tmp/vaka-wheels/ca.pem /opt/vaka/venv/bin/python -m pip install --quiet --no-cache-dir \
  --disable-pip-version-check --no-warn-script-location "${index_args[@]}" \
  --constraint /tmp/vaka-wheels/constraints.txt --find-links /tmp/vaka-wheels vaka-agent
# Byte-code compiled now: the root is read-only on the unit and the service sets
# PYTHONDONTWRITEBYTECODE (pip compiled the packages; this covers anything it skipped).
in_root /opt/vaka/venv/bin/python -m compileall -q -j 0 /opt/vaka/venv >/dev/null || true
rm -rf "$root/tmp/vaka-wheels" "$root/root/.cache"

# --- systemd units and settings from systemd/ -----------------------------------------------
say "installing systemd units"
units=$root/etc/systemd/system
install -d "$units"
for unit in "$VAKA_REPO"/systemd/*.service "$VAKA_REPO"/systemd/*.mount \
  "$VAKA_REPO"/systemd/*.timer "$VAKA_REPO"/systemd/*.path "$VAKA_REPO"/systemd/*.socket; do
  [ -e "$unit" ] && install -m 0644 "$unit" "$units/"
done
for dropins in "$VAKA_REPO"/systemd/*.service.d "$VAKA_REPO"/systemd/*.mount.d; do
  [ -d "$dropins" ] || continue
  install -d "$units/$(basename "$dropins")"
  # The example (broker and TURN addresses) stays an example: provisioning writes the real one.
  install -m 0644 "$dropins"/* "$units/$(basename "$dropins")/"
done
for conf in system.conf.d journald.conf.d; do
  [ -d "$VAKA_REPO/systemd/$conf" ] || continue
  install -d "$root/etc/systemd/$conf"
  install -m 0644 "$VAKA_REPO/systemd/$conf"/* "$root/etc/systemd/$conf/"
done
install -d "$root/etc/tmpfiles.d" "$root/etc/sysusers.d"
install -m 0644 "$VAKA_REPO"/systemd/tmpfiles.d/* "$root/etc/tmpfiles.d/"
install -m 0644 "$VAKA_REPO"/systemd/sysusers.d/* "$root/etc/sysusers.d/"

# --- the profile's own services and files (tv: the display session and PipeWire) -------------
profile_units=$VAKA_REPO/systemd/$VAKA_PROFILE
if [ -d "$profile_units" ]; then
  say "installing the $VAKA_PROFILE profile's services"
  install -m 0644 "$profile_units"/*.service "$units/"
  for dropins in "$profile_units"/*.service.d; do
    install -d "$units/$(basename "$dropins")"
    install -m 0644 "$dropins"/* "$units/$(basename "$dropins")/"
  done
  install -m 0644 "$profile_units"/sysusers.d/* "$root/etc/sysusers.d/"
  install -d "$root/etc/systemd/logind.conf.d"
  install -m 0644 "$profile_units"/logind.conf.d/* "$root/etc/systemd/logind.conf.d/"
fi
if [ -d "$VAKA_HERE/overlay-$VAKA_PROFILE" ]; then
  cp -a --no-preserve=ownership "$VAKA_HERE/overlay-$VAKA_PROFILE/." "$root/"
fi

# --- board configuration from firmware_config/ ----------------------------------------------
say "installing the board configuration (profile $VAKA_PROFILE)"
fw=$VAKA_REPO/firmware_config
install -d "$root/boot/firmware" "$root/etc/udev/rules.d" "$root/etc/sysctl.d"
# config.txt and cmdline.txt: the firmware reads them on a Raspberry Pi; on other variants they
# only keep the layout the same (image/disk.sh puts root= in front of cmdline.txt).
install -m 0644 "$fw/$VAKA_PROFILE/config.txt" "$fw/$VAKA_PROFILE/cmdline.txt" "$root/boot/firmware/"
install -m 0644 "$fw"/common/udev/*.rules "$root/etc/udev/rules.d/"
install -m 0644 "$fw"/common/sysctl.d/*.conf "$root/etc/sysctl.d/"
install -m 0755 "$fw/common/nftables.conf" "$root/etc/nftables.conf"
# PipeWire drop-ins of the profile (tv: the echo canceller for two-way calls, docs/audio.md).
if [ -d "$fw/$VAKA_PROFILE/pipewire/pipewire.conf.d" ]; then
  install -d "$root/etc/pipewire/pipewire.conf.d"
  install -m 0644 "$fw/$VAKA_PROFILE"/pipewire/pipewire.conf.d/*.conf "$root/etc/pipewire/pipewire.conf.d/"
fi
# WirePlumber as a system service without a desktop session (tv: vaka-wireplumber.service).
if [ -d "$fw/$VAKA_PROFILE/wireplumber/main.lua.d" ]; then
  install -d "$root/etc/wireplumber/main.lua.d"
  install -m 0644 "$fw/$VAKA_PROFILE"/wireplumber/main.lua.d/*.lua "$root/etc/wireplumber/main.lua.d/"
fi

# --- the image's own files (fstab, network, sshd, technician account) ------------------------
cp -a --no-preserve=ownership "$VAKA_HERE/overlay/." "$root/"
# The A/B card's own: its download partition's mount and what the agent, the install helper and
# RAUC need to use it (image/disk.sh --ab makes the partition).
if [ "${VAKA_AB:-0}" = 1 ]; then
  cp -a --no-preserve=ownership "$VAKA_HERE/overlay-ab/." "$root/"
fi

# --- the root's version, as the agent reports it (health, and an update order's "running") -----
# /etc/os-release is a link to /usr/lib/os-release in Debian: the file itself gets the lines.
release=$root/usr/lib/os-release
[ -L "$root/etc/os-release" ] || release=$root/etc/os-release
sed -i '/^IMAGE_ID=/d; /^IMAGE_VERSION=/d' "$release"
printf 'IMAGE_ID=vaka-%s\nIMAGE_VERSION=%s\n' "${VAKA_VARIANT:-amd64}" "${VAKA_VERSION:?}" >>"$release"
say "os-release: IMAGE_VERSION=$VAKA_VERSION"

# --- RAUC: the unit's slots and the keyring its update bundles must be signed under -------------
# amd64 (UEFI): GRUB chooses the slot (image/grub.sh); the card is disk.sh --ab's. The Raspberry
# Pi's boot path (tryboot or U-Boot) is not built, so its variants get no system.conf yet.
if [ "$VAKA_BOARD" = generic ]; then
  say "configuring RAUC (compatible vaka-${VAKA_VARIANT:-amd64}, GRUB, slots A and B)"
  install -d "$root/etc/rauc"
  cat >"$root/etc/rauc/system.conf" <<EOF
# RAUC on a Vaka unit (image/hooks/customize.sh; docs/image.md, "Updates").
[system]
compatible=vaka-${VAKA_VARIANT:-amd64}
bootloader=grub
grubenv=/boot/firmware/EFI/BOOT/grubenv
# The root is read-only: RAUC mounts bundles and slots under /run.
mountprefix=/run/rauc
# Only bundles whose payload is checked block by block as it is written.
bundle-formats=-plain
# The slots' status (installed bundle, version, time) in one file on the credentials partition,
# the only writable place that survives a reboot: RAUC then never mounts a slot to read it.
statusfile=/var/lib/vaka/credentials/rauc.status

[handlers]
# The slot just written is on trial until the agent is online on it (vaka-mark-good.service).
post-install=/usr/libexec/vaka/rauc-post-install

[keyring]
path=/etc/rauc/keyring.pem

[slot.rootfs.0]
device=/dev/disk/by-partlabel/vaka-root-a
type=ext4
bootname=A

[slot.rootfs.1]
device=/dev/disk/by-partlabel/vaka-root-b
type=ext4
bootname=B
EOF
fi

# --- users: vaka (the agent) and technician, from sysusers.d ----------------------------------
systemd-sysusers --root="$root"
install -d -m 0755 "$root/var/lib/vaka"
install -d -m 0700 "$root/var/lib/vaka/credentials"  # the mount point; tmpfiles.d fixes the owner
if [ "${VAKA_AB:-0}" = 1 ]; then
  install -d -m 0700 "$root/var/lib/vaka/update"  # the download partition's mount point
fi

# --- the site: the municipality's broker, pinned keys and claim identity ----------------------
# Two names are the site's network, not /etc/vaka: nftables.conf (firmware_config's ruleset with
# the real broker and TURN addresses in its `define` lines) and 50-peers.conf (the same addresses
# for the agent's IPAddressAllow=, see systemd/vaka-agent.service.d/50-peers.conf.example).
install -d -m 0750 "$root/etc/vaka"
if [ -n "${VAKA_SITE:-}" ]; then
  say "installing the site files from $VAKA_SITE"
  for f in "$VAKA_SITE"/*; do
    case $(basename "$f") in
      nftables.conf) install -m 0755 "$f" "$root/etc/nftables.conf" ;;
      50-peers.conf) install -m 0644 "$f" "$units/vaka-agent.service.d/50-peers.conf" ;;
      # The certificate authority of the project's update key (never the key itself).
      rauc-keyring.pem) install -D -m 0644 "$f" "$root/etc/rauc/keyring.pem" ;;
      *) install -m 0640 "$f" "$root/etc/vaka/" ;;
    esac
  done
fi
# The A/B card downloads bundles onto its data partition: the site's agent.toml gets
# [update] download_dir = "/var/lib/vaka/update" unless it names a directory itself.
agent_toml=$root/etc/vaka/agent.toml
if [ "${VAKA_AB:-0}" = 1 ] && [ -f "$agent_toml" ] && ! grep -q '^download_dir *=' "$agent_toml"; then
  say "agent.toml: update bundles are downloaded to the data partition (/var/lib/vaka/update)"
  if grep -q '^\[update\] *$' "$agent_toml"; then
    sed -i '/^\[update\] *$/a download_dir = "/var/lib/vaka/update"' "$agent_toml"
  else
    printf '\n[update]\ndownload_dir = "/var/lib/vaka/update"\n' >>"$agent_toml"
  fi
fi
vaka_gid=$(awk -F: '$1 == "vaka" { print $3 }' "$root/etc/group")
chown -R "0:$vaka_gid" "$root/etc/vaka"

# --- services: what runs, what never does ------------------------------------------------------
say "enabling and disabling services"
systemctl --root="$root" set-default multi-user.target
systemctl --root="$root" enable vaka-agent.service var-lib-vaka-credentials.mount \
  vaka-technician-ssh.service vaka-mark-good.service vaka-update-install.path nftables.service systemd-networkd.service \
  systemd-resolved.service systemd-timesyncd.service
if [ "$VAKA_BOARD" = rpi ]; then
  systemctl --root="$root" enable wpa_supplicant@wlan0.service
fi
if [ "$VAKA_PROFILE" = tv ]; then
  # The TV screen and sound. No text console anywhere: no getty on a VT, and Ctrl-Alt-Del on a
  # keyboard plugged into the TV unit does nothing.
  systemctl --root="$root" enable vaka-screen.service vaka-pipewire.service vaka-wireplumber.service
  systemctl --root="$root" mask getty@.service autovt@.service ctrl-alt-del.target
  # PipeWire's own user units are for desktop sessions (the display session's user would start
  # them); the unit runs vaka-pipewire.service instead.
  systemctl --root="$root" --global mask pipewire.socket pipewire.service pipewire-pulse.socket \
    pipewire-pulse.service wireplumber.service
fi
# SSH: off. ssh.service starts only as part of the technician switch; the socket never.
systemctl --root="$root" disable ssh.service ssh.socket e2scrub_reap.service 2>/dev/null || true
# Raspberry Pi OS's sshswitch (an `ssh` file on the boot partition would enable SSH for good),
# swap, and the jobs that write to a read-only root or update behind our back.
systemctl --root="$root" mask ssh.socket sshswitch.service dphys-swapfile.service \
  apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \
  dpkg-db-backup.timer dpkg-db-backup.service e2scrub_all.timer e2scrub_reap.service \
  man-db.timer
# No login prompt on a serial console either (the kernel's `console=ttyS0` would start one): no
# account has a password, but a unit offers no door it does not need.
systemctl --root="$root" mask serial-getty@.service console-getty.service

# --- names, resolver, identity ---------------------------------------------------------------
ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
# No machine id in the image: systemd makes a new one in /run at every boot (read-only root), so
# a unit carries no stable identifier besides its certificate.
: >"$root/etc/machine-id"
# (/var/lib/dbus/machine-id, a link to it, is made by build.sh: mmdebstrap's cleanup removes it.)
# No SSH host keys shared by every card (see ssh.service.d/60-vaka-hostkey.conf).
rm -f "$root"/etc/ssh/ssh_host_*

# --- nothing at rest: no persistent journal, no logs, caches or package lists -----------------
rm -rf "$root/var/log/journal"
find "$root/var/log" -type f -delete
rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*_* \
  "$root"/var/cache/debconf/*-old "$root"/tmp/* "$root"/var/tmp/*
say "done"

#!/usr/bin/env bash
# Build a Vaka unit's root file system (and, with --disk, its card image) with mmdebstrap.
#
#   image/build.sh VARIANT [--version V] [--site DIR] [--out DIR] [--disk] [--ab] [--kernel]
#                  [--mirror URL] [--pip-index URL]
#
# VARIANT is a file in image/variants/: `nightcam` and `tv` (Raspberry Pi 4, arm64, Raspberry Pi
# OS) or `amd64` (this machine's architecture, for tests and QEMU). The result is OUT/rootfs/
# (default OUT: image/build/VARIANT), OUT/build.log and, with --disk, OUT/vaka-VARIANT.img and
# OUT/root.ext4 (the root partition alone, what an update bundle carries: image/bundle.sh).
# What goes in, and why mmdebstrap: docs/image.md.
#
#   --site DIR   the municipality's files for /etc/vaka (agent.toml, server-ca.crt,
#                ticket-key.pub.pem, config-key.pub.pem, claim.crt, claim.key, technician_keys),
#                and optionally nftables.conf and 50-peers.conf (its broker and TURN addresses)
#                and rauc-keyring.pem (the CA of the project's update signing certificate)
#   --version V  the root's version, IMAGE_VERSION= in /etc/os-release (what the agent reports
#                and compares with an update order's): give an update bundle of this root the
#                same --version (image/bundle.sh). Default: vaka-agent's version.
#   --kernel     also install a kernel and initramfs (amd64: to boot the image under QEMU)
#   --ab         the card with two root slots (A/B updates with RAUC) and GRUB for UEFI
#                (implies --disk; amd64 only: image/disk.sh --ab)
#   --mirror URL use URL instead of http://deb.debian.org/debian
#   --pip-index URL  install the agent's Python dependencies from URL instead of PyPI
#
# Needs root (chroot, file ownership in the image), mmdebstrap, and for --disk sfdisk, mkfs.ext4,
# mkfs.vfat and mtools; missing Debian packages are installed when run as root.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
variant=$1
shift
site="" out="" version="" disk=0 kernel=0 mirror="" pip_index="" disk_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --site) site=$(cd "$2" && pwd); shift 2 ;;
    --out) out=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --disk) disk=1; shift ;;
    --ab) disk=1; disk_args=(--ab); shift ;;
    --kernel) kernel=1; shift ;;
    --mirror) mirror=$2; shift 2 ;;
    --pip-index) pip_index=$2; shift 2 ;;
    *) usage ;;
  esac
done
version=${version:-$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/agent/pyproject.toml")}
case $version in
  "" | *[!A-Za-z0-9.+~_-]*) echo "build: version '$version' may hold only A-Z a-z 0-9 . + ~ _ -" >&2; exit 2 ;;
esac
conf=$HERE/variants/$variant.conf
[ -f "$conf" ] || { echo "build: no variant $variant (image/variants/*.conf)" >&2; exit 2; }
# shellcheck source=variants/amd64.conf
. "$conf"
out=${out:-$HERE/build/$variant}
# What the profile adds on any board (tv: the display session and PipeWire).
# shellcheck source=profiles/tv.conf
. "$HERE/profiles/$PROFILE.conf"

if [ "$(id -u)" -ne 0 ]; then
  echo "build: run as root (mmdebstrap's root mode: chroot, and file ownership in the image)" >&2
  exit 1
fi

# --- host tools ------------------------------------------------------------------------------
need=(mmdebstrap systemd)
[ "$disk" = 1 ] && need+=(fdisk e2fsprogs dosfstools mtools)
((${#disk_args[@]})) && need+=(grub-efi-amd64-bin grub-common)
[ "$ARCH" != "$(dpkg --print-architecture)" ] && need+=(qemu-user-static binfmt-support arch-test)
missing=()
for pkg in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "build: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for key in "${KEYRINGS[@]}"; do
  [ -f "$key" ] || { echo "build: missing keyring $key (see docs/image.md)" >&2; exit 1; }
done

# --- the unit's wheels (vaka-agent and what it pulls of Vaka), and the tested versions ---------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/wheels"
PY=${PYTHON:-$REPO/.venv/bin/python}
"$PY" -m vaka.devstack.wheels "$work/wheels" >/dev/null
# Every version the tests ran with, applied to what the agent pulls in (direct and transitive).
"$PY" -m pip freeze --exclude-editable | grep -v -i -E '^(vaka(-[a-z]+)?|systemd-python)([=@ ]|$)' \
  >"$work/wheels/constraints.txt" || true

# The certificate authorities this host trusts for the package index (a TLS-inspecting proxy's
# too), so that pip inside the root trusts what pip here does. Removed from the image after use.
cp -L "${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}" "$work/wheels/ca.pem"

# --- the root file system ------------------------------------------------------------------
packages=(
  systemd systemd-sysv udev dbus systemd-resolved systemd-timesyncd  # init, devices, DNS, NTP
  nftables iproute2 kmod netbase ca-certificates tzdata             # firewall, network
  openssh-server                                                    # technician switch only
  rauc                                                              # A/B updates (docs/image.md)
  python3 python3-venv python3-systemd                              # the agent's interpreter
  libgl1 libglib2.0-0                                               # OpenCV (the TV screen)
  "${BOARD_PACKAGES[@]}" "${PROFILE_PACKAGES[@]}"
)
[ "$kernel" = 1 ] && packages+=("${KERNEL_PACKAGES[@]}")
mirrors=("${MIRRORS[@]}")
if [ -n "$mirror" ]; then
  mirrors=("${mirrors[@]//http:\/\/deb.debian.org\/debian/$mirror}")
fi
keyring_args=()
for key in "${KEYRINGS[@]}"; do keyring_args+=(--keyring="$key"); done

rm -rf "$out/rootfs"
mkdir -p "$out"
export VAKA_REPO=$REPO VAKA_HERE=$HERE VAKA_PROFILE=$PROFILE VAKA_BOARD=$BOARD VAKA_VARIANT=$variant
export VAKA_WHEELS=$work/wheels VAKA_SITE=$site VAKA_PIP_INDEX=$pip_index VAKA_VERSION=$version
# The A/B card's own files (its download partition): image/overlay-ab, applied by the hook.
VAKA_AB=0
((${#disk_args[@]})) && VAKA_AB=1
export VAKA_AB
started=$(date +%s)
echo "build: $variant $version ($ARCH, profile $PROFILE) -> $out/rootfs" >&2
(IFS=,; mmdebstrap \
  --mode=root \
  --variant=minbase \
  --architectures="$ARCH" \
  --include="${packages[*]}" \
  "${keyring_args[@]}" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='"$VAKA_HERE/hooks/customize.sh" "$1"' \
  bookworm "$out/rootfs" "${mirrors[@]}") >"$out/build.log" 2>&1 || {
  tail -40 "$out/build.log" >&2
  echo "build: mmdebstrap failed, full log in $out/build.log" >&2
  exit 1
}
# D-Bus reads the machine id through this link. mmdebstrap's cleanup deletes it (after the
# customize hook), and tmpfiles.d would try to make it at boot, on the read-only root.
install -d "$out/rootfs/var/lib/dbus"
ln -sfn /etc/machine-id "$out/rootfs/var/lib/dbus/machine-id"
# GRUB (disk.sh --ab) loads the slot's kernel by one name whatever its version.
kernel_file=$(find "$out/rootfs/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sort -V | tail -1)
if [ -n "$kernel_file" ]; then
  ln -sfn "$kernel_file" "$out/rootfs/boot/vmlinuz"
  ln -sfn "initrd.img-${kernel_file#vmlinuz-}" "$out/rootfs/boot/initrd.img"
fi
echo "build: root file system in $(( $(date +%s) - started )) s, $(du -sh "$out/rootfs" | cut -f1)" >&2

if [ "$disk" = 1 ]; then
  # root.ext4: the root partition alone, for an update bundle (image/bundle.sh).
  "$HERE/disk.sh" "${disk_args[@]}" "$out/rootfs" "$out/vaka-$variant.img" "$out/root.ext4"
fi

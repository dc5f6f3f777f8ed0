#!/usr/bin/env bash
# Build a signed RAUC update bundle of a unit's root file system (docs/image.md, "Updates"):
#
#   image/bundle.sh ROOT.ext4 OUT.raucb --cert CERT.pem --key KEY.pem --version VERSION
#                   [--compatible NAME] [--keyring CA.pem]
#
# ROOT.ext4 is the root partition's image that image/disk.sh keeps beside the card (root.ext4).
# The bundle carries it for the unit's other root slot (RAUC slot class `rootfs`), in RAUC's
# `verity` format (the payload is checked block by block as it is installed), signed (CMS) with
# the project's update key. The key never goes into an image or onto a unit: keep it on the
# build machine, or better in an HSM (RAUC takes PKCS#11 URIs for --key). Units carry only the
# certificate authority that issued the signing certificate (/etc/rauc/keyring.pem).
#
#   --compatible NAME  what the unit's /etc/rauc/system.conf must say (default: vaka-amd64)
#   --keyring CA.pem   check the finished bundle against this CA, as a unit would
#
# Needs rauc and squashfs-tools (Debian packages; installed when missing and run as root).
set -euo pipefail
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] || usage
root_image=$1 out=$2
shift 2
cert="" key="" version="" compatible=vaka-amd64 keyring=""
while [ $# -gt 0 ]; do
  case $1 in
    --cert) cert=$2; shift 2 ;;
    --key) key=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --compatible) compatible=$2; shift 2 ;;
    --keyring) keyring=$2; shift 2 ;;
    *) usage ;;
  esac
done
[ -n "$cert" ] && [ -n "$key" ] && [ -n "$version" ] || usage
[ -f "$root_image" ] || { echo "bundle: no root file system image $root_image" >&2; exit 1; }
case $version in
  *[!A-Za-z0-9.+~_-]*) echo "bundle: version '$version' may hold only A-Z a-z 0-9 . + ~ _ -" >&2; exit 2 ;;
esac

missing=()
command -v rauc >/dev/null || missing+=(rauc)
command -v mksquashfs >/dev/null || missing+=(squashfs-tools)
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bundle: missing ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "bundle: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The version must be the root's own (IMAGE_VERSION=, image/build.sh --version): a unit that
# rebooted into a root saying another version would take the order as not yet done.
if command -v debugfs >/dev/null; then
  says=$(debugfs -R 'cat /usr/lib/os-release' "$root_image" 2>/dev/null | sed -n 's/^IMAGE_VERSION=//p')
  if [ -n "$says" ] && [ "$says" != "$version" ]; then
    echo "bundle: warning: the root says IMAGE_VERSION=$says, the bundle --version $version;" \
      "a unit would report $says after installing it (build the image with --version $version)" >&2
  fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/content"
cp --sparse=always "$root_image" "$work/content/rootfs.ext4"
cat >"$work/content/manifest.raucm" <<MANIFEST
[update]
compatible=$compatible
version=$version
description=Vaka unit root file system $version

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
MANIFEST
rm -f "$out"
rauc bundle --cert="$cert" --key="$key" "$work/content" "$out" >&2
if [ -n "$keyring" ]; then
  rauc info --keyring="$keyring" "$out" >/dev/null
fi
echo "bundle: $out ($compatible $version, $(du -h --apparent-size "$out" | cut -f1)," \
  "sha256 $(sha256sum "$out" | cut -d' ' -f1))" >&2

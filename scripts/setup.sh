#!/usr/bin/env bash
# Install what Vaka needs on Debian 12, idempotently: the apt packages the demo and the tests use,
# and a .venv with the project. Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  mosquitto          # the broker (tests start their own on free loopback ports)
  mosquitto-clients  # mosquitto_pub/sub for operators' debugging
  openssl            # `openssl verify` of issued chains
  python3-venv       # the project's .venv
  python3-dev gcc pkg-config
  libgl1 libglib2.0-0  # OpenCV's GUI build (the TV screen)
  libsystemd-dev     # systemd-python builds from source against libsystemd.pc
  systemd            # systemd-analyze security/verify for the unit tests
  nftables           # `nft --check` of firmware_config's ruleset in the tests
  bubblewrap         # tests/test_storage_free.py: the agent in a read-only view of the file system
  xvfb xdotool imagemagick  # tests/test_tv_screen.py: the TV screen under Xvfb, real clicks, screenshots
  fonts-dejavu-core  # the TV screen's TrueType text (å/ä/ö/æ/ø)
  v4l-utils          # cec-ctl: the TV unit wakes the TV over HDMI-CEC
  libudev1           # pyudev loads libudev: device discovery and hotplug
  chromium           # tests/test_console_login.py: the staff console in a real browser (Playwright)
  coturn             # the relay (turnserver): tests/test_networks.py and bench/latency.py start their
                     # own inside network namespaces; Debian enables its service, disabled below
  rauc squashfs-tools  # tests/test_image_bundle.py: the unit's signed update bundle (rauc bundle/info)
  postgresql         # the database tests' second backend: vaka.devstack.postgres makes a throw-away
                     # cluster (initdb/pg_ctl in a temporary directory, run as the `postgres` user
                     # when the suite runs as root); Debian's own cluster is stopped below
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: these Debian packages are missing: ${missing[*]}" >&2
    echo "setup: run as root, or install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [[ " ${missing[*]} " == *" coturn "* ]] && command -v systemctl >/dev/null; then
    # A relay on the host's ports would answer for nobody; the test bed runs turnserver itself.
    systemctl disable --now coturn >/dev/null 2>&1 || true
  fi
  if [[ " ${missing[*]} " == *" postgresql "* ]] && command -v systemctl >/dev/null; then
    # The tests make their own clusters; a system cluster on port 5432 would serve nobody here.
    systemctl disable --now postgresql >/dev/null 2>&1 || true
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
# The workspace's members (pyproject.toml at the top explains them), editable, and the dev tools.
MEMBERS=(protocol rtc provisioning agent central staff devstack)
stamp=.venv/.vaka-installed
stale=0
[ -f "$stamp" ] || stale=1
for f in pyproject.toml "${MEMBERS[@]/%//pyproject.toml}"; do
  [ "$f" -nt "$stamp" ] && stale=1
done
if ((stale)); then
  echo "setup: installing the workspace into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  # The single distribution of earlier releases shadows the members' namespace: remove it.
  .venv/bin/python -m pip uninstall -q -y vaka 2>/dev/null || true
  args=()
  for m in "${MEMBERS[@]}"; do
    extra=""
    [ "$m" = provisioning ] && extra="[technician]"
    args+=(-e "./$m$extra")
  done
  .venv/bin/python -m pip install -q "${args[@]}" --group dev
  touch "$stamp"
fi

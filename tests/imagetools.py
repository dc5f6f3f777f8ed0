"""Shared by the image tests (tests/test_image.py, tests/test_image_units.py): the build, once per
session, of the amd64 variant's card with this session's PKI and site files, and helpers to look
inside its root. Registered as a plugin (``pytest_plugins``) so both modules share one build."""

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomli_w

from vaka.devstack.ports import free_port
from vaka.provisioning.localpki import LocalPki

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "image" / "build.sh"
PROFILE = "nightcam"
UNIT = "u-image"
QEMU = shutil.which("qemu-system-x86_64")
#: What a QEMU guest with user-mode networking sees of this machine's loopback.
QEMU_HOST = "10.0.2.2"

#: Each image test module's ``pytestmark``.
MARKS = [
    pytest.mark.slow,
    # The first test also waits for the build (module fixture): more than the default 120 s.
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        os.environ.get("VAKA_IMAGE_TEST") != "1",
        reason="builds an image from Debian's packages (slow, root, network): make image-test",
    ),
]


@dataclass(frozen=True)
class Built:
    rootfs: Path
    disk: Path
    site: Path
    seconds: float
    log: str


@pytest.fixture(scope="session")
def image_pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    """The image tests' PKI: the broker's certificate also names the address a QEMU guest uses.

    Its own name: the suite's session ``pki`` (tests/conftest.py) would shadow a plugin fixture
    called ``pki``, and a guest would then meet a broker certificate without 10.0.2.2."""
    return LocalPki(
        tmp_path_factory.mktemp("image-pki"), broker_names=("localhost", "127.0.0.1", QEMU_HOST)
    ).ensure()


@pytest.fixture(scope="session")
def qemu_port() -> int:
    """The broker's port for the QEMU test, fixed at build time: the image's firewall, the agent's
    IPAddressAllow= drop-in and its agent.toml name it."""
    return free_port()


def site_nftables(port: int) -> str:
    """firmware_config's ruleset with this site's broker (the QEMU host) in its define lines."""
    text = (REPO / "firmware_config/common/nftables.conf").read_text()
    text = re.sub(r"(?m)^define BROKER_V4 = .*$", f"define BROKER_V4 = {{ {QEMU_HOST} }}", text)
    return re.sub(r"(?m)^define BROKER_PORTS = .*$", f"define BROKER_PORTS = {{ {port} }}", text)


def site_files(pki: LocalPki, directory: Path, port: int) -> Path:
    """A municipality's site directory: /etc/vaka (the generic agent.toml and the public half of
    the PKI) and its network (firewall ruleset, the agent's IP allow-list)."""
    directory.mkdir(parents=True)
    claim = pki.claim()
    shutil.copy(pki.server_ca_cert, directory / "server-ca.crt")
    shutil.copy(pki.ticket_keys()[1], directory / "ticket-key.pub.pem")
    shutil.copy(pki.config_keys()[1], directory / "config-key.pub.pem")
    shutil.copy(claim.cert, directory / "claim.crt")
    shutil.copy(claim.key, directory / "claim.key")
    (directory / "technician_keys").write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBj4ZnG2T0n3pYVd3nR3cEaJm3N6M8kO5gQ0uQm3C9N7 tech\n"
    )
    (directory / "agent.toml").write_text(tomli_w.dumps(generic_config(port, QEMU_HOST)))
    (directory / "nftables.conf").write_text(site_nftables(port))
    (directory / "50-peers.conf").write_text(f"[Service]\nIPAddressAllow={QEMU_HOST}\n")
    return directory


def generic_config(port: int, host: str = "127.0.0.1") -> dict[str, object]:
    """The same agent.toml for every card of a profile (docs/install.md, "A unit")."""
    return {
        "unit": {"profile": PROFILE, "simulate": True},
        "broker": {
            "host": host,
            "port": port,
            "server_ca": "/etc/vaka/server-ca.crt",
            "keepalive_s": 5,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
        },
        "calls": {"ticket_key": "/etc/vaka/ticket-key.pub.pem"},
        "storage": {"credentials_dir": "/var/lib/vaka/credentials"},
        "trust": {"config_key": "/etc/vaka/config-key.pub.pem"},
        "enrolment": {"claim_cert": "/etc/vaka/claim.crt", "claim_key": "/etc/vaka/claim.key"},
        "media": {"ice_addresses": ["127.0.0.1"]},
    }


@pytest.fixture(scope="session")
def built(
    image_pki: LocalPki, qemu_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    """The amd64 variant, built once for the session (and deleted afterwards, unless
    ``VAKA_IMAGE_KEEP=1``)."""
    if os.geteuid() != 0:
        pytest.skip("the image build needs root (mmdebstrap's root mode: chroot, file owners)")
    base = tmp_path_factory.mktemp("image")
    site = site_files(image_pki, base / "site", qemu_port)
    out = base / "out"
    started = time.monotonic()
    run = subprocess.run(
        ["bash", str(BUILD), "amd64", "--site", str(site), "--out", str(out), "--disk", "--kernel"],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "VAKA_PROFILE": PROFILE, "PYTHON": sys.executable},
    )
    seconds = time.monotonic() - started
    assert run.returncode == 0, f"{run.stderr[-4000:]}"
    print(f"\nimage: amd64 root file system and card built in {seconds:.0f} s\n{run.stderr}")
    try:
        yield Built(out / "rootfs", out / "vaka-amd64.img", site, seconds, run.stderr)
    finally:
        if os.environ.get("VAKA_IMAGE_KEEP") != "1":
            shutil.rmtree(out, ignore_errors=True)


def in_root(built: Built, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command of the image inside its root (chroot), with a clean environment."""
    return subprocess.run(
        ["chroot", str(built.rootfs), *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"},
    )


def systemctl(built: Built, *args: str) -> str:
    run = subprocess.run(
        ["systemctl", f"--root={built.rootfs}", *args], capture_output=True, text=True, timeout=60
    )
    return run.stdout.strip()


def vaka_ids(built: Built) -> tuple[int, int]:
    """The image's vaka user and group ids."""
    for line in (built.rootfs / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "vaka":
            return int(fields[2]), int(fields[3])
    raise AssertionError("no vaka user in the image")

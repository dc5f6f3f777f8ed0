"""Shared by the image tests (tests/test_image.py, tests/test_image_units.py,
tests/test_image_tv.py): the build, once per session, of the amd64 variant's card with this
session's PKI and site files, helpers to look inside its root, and QEMU (start a card, take a
screendump through QMP). Registered as a plugin (``pytest_plugins``) so the modules share one
build of each profile."""

import json
import os
import re
import shutil
import socket
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


@pytest.fixture(scope="session")
def qemu_claim_port() -> int:
    """The broker's enrolment listener for a fresh card under QEMU, fixed at build time too."""
    return free_port()


def site_nftables(port: int, claim_port: int | None = None) -> str:
    """firmware_config's ruleset with this site's broker (the QEMU host) in its define lines."""
    text = (REPO / "firmware_config/common/nftables.conf").read_text()
    text = re.sub(r"(?m)^define BROKER_V4 = .*$", f"define BROKER_V4 = {{ {QEMU_HOST} }}", text)
    ports = f"{port}, {claim_port}" if claim_port else f"{port}"
    return re.sub(r"(?m)^define BROKER_PORTS = .*$", f"define BROKER_PORTS = {{ {ports} }}", text)


def site_files(
    pki: LocalPki,
    directory: Path,
    port: int,
    profile: str = PROFILE,
    claim_port: int | None = None,
) -> Path:
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
    config = generic_config(port, QEMU_HOST, profile)
    if claim_port is not None:
        config["enrolment"]["port"] = claim_port  # type: ignore[index]
    (directory / "agent.toml").write_text(tomli_w.dumps(config))
    (directory / "nftables.conf").write_text(site_nftables(port, claim_port))
    (directory / "50-peers.conf").write_text(f"[Service]\nIPAddressAllow={QEMU_HOST}\n")
    return directory


def generic_config(port: int, host: str = "127.0.0.1", profile: str = PROFILE) -> dict[str, object]:
    """The same agent.toml for every card of a profile (docs/install.md, "A unit")."""
    return {
        "unit": {"profile": profile, "simulate": True},
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


def build_card(site: Path, out: Path, profile: str, *extra: str) -> Built:
    """Run image/build.sh for the amd64 variant with ``profile``, with a kernel, into ``out``
    (``extra``: more of build.sh's options, e.g. ``--ab``)."""
    if os.geteuid() != 0:
        pytest.skip("the image build needs root (mmdebstrap's root mode: chroot, file owners)")
    started = time.monotonic()
    run = subprocess.run(
        ["bash", str(BUILD), "amd64", "--site", str(site), "--out", str(out), "--disk", "--kernel",
         *extra],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "VAKA_PROFILE": profile, "PYTHON": sys.executable},
    )  # fmt: skip
    seconds = time.monotonic() - started
    assert run.returncode == 0, f"{run.stderr[-4000:]}"
    print(f"\nimage: amd64 ({profile}) built in {seconds:.0f} s\n{run.stderr}")
    return Built(out / "rootfs", out / "vaka-amd64.img", site, seconds, run.stderr)


@pytest.fixture(scope="session")
def built(
    image_pki: LocalPki, qemu_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    """The amd64 variant, built once for the session (and deleted afterwards, unless
    ``VAKA_IMAGE_KEEP=1``)."""
    base = tmp_path_factory.mktemp("image")
    site = site_files(image_pki, base / "site", qemu_port)
    out = base / "out"
    try:
        yield build_card(site, out, PROFILE)
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


def disk_id(card: Path) -> str:
    """The card's MBR disk id (the first half of every PARTUUID)."""
    table = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(card)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]
    return str(table["id"]).removeprefix("0x")


def start_qemu(
    built: Built, card: Path, console: Path, extra: tuple[str, ...] = ("-display", "none")
) -> "subprocess.Popen[bytes]":
    """Power on ``card`` (a copy of ``built.disk``) in QEMU with the image's own kernel; the
    guest's serial console goes to ``console``. ``extra``: devices and the display."""
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 is missing: apt-get install qemu-system-x86")
    kernels = sorted((built.rootfs / "boot").glob("vmlinuz-*"))
    initrds = sorted((built.rootfs / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        pytest.skip("the image was built without --kernel")
    return subprocess.Popen(
        [
            QEMU,
            # TCG by default: /dev/kvm exists here but a KVM guest never starts (nested
            # virtualisation is not offered); VAKA_QEMU_ACCEL=kvm where it works.
            "-accel", os.environ.get("VAKA_QEMU_ACCEL", "tcg"),
            # Every CPU feature TCG emulates: numpy's wheels need x86-64-v2 (SSE4.2...) and
            # die with SIGILL on QEMU's default qemu64 model.
            "-cpu", "max",
            "-m", "1024", "-smp", "2",
            "-nodefaults", "-no-reboot",
            "-serial", f"file:{console}",
            "-kernel", str(kernels[-1]), "-initrd", str(initrds[-1]),
            "-append", f"root=PARTUUID={disk_id(card)}-02 ro rootwait console=ttyS0 "
            "systemd.journald.forward_to_console=1 systemd.log_color=0",
            "-drive", f"file={card},format=raw,if=virtio",
            "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
            # A hardware watchdog for systemd's RuntimeWatchdogSec= to drive.
            "-device", "i6300esb",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip


#: UEFI firmware for QEMU (Debian's ``ovmf``): the code read-only, a copy of the variables per card.
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


def start_qemu_efi(
    card: Path,
    console: Path,
    *,
    reboot: bool = False,
    extra: tuple[str, ...] = (),
    memory_mib: int = 1024,
) -> "subprocess.Popen[bytes]":
    """Power on an A/B ``card`` (image/disk.sh --ab) the way a PC does: UEFI firmware (OVMF),
    which starts the card's own GRUB from its EFI system partition; GRUB picks the slot and loads
    that slot's kernel. ``reboot``: a reboot in the guest restarts the machine (as on a unit)
    instead of ending QEMU. ``memory_mib``: the guest's RAM (its ``/run`` tmpfs is a tenth)."""
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 is missing: apt-get install qemu-system-x86")
    if not OVMF_CODE.exists():
        pytest.skip("OVMF is missing: apt-get install ovmf")
    variables = console.with_name(console.stem + "-efivars.fd")
    shutil.copy(OVMF_VARS, variables)
    return subprocess.Popen(
        [
            QEMU,
            "-accel", os.environ.get("VAKA_QEMU_ACCEL", "tcg"),
            "-cpu", "max",
            "-m", str(memory_mib), "-smp", "2",
            "-nodefaults", *(() if reboot else ("-no-reboot",)),
            "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,file={variables}",
            "-serial", f"file:{console}",
            "-display", "none",
            "-drive", f"file={card},format=raw,if=virtio",
            "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
            "-device", "i6300esb",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip


class Qmp:
    """A QEMU machine protocol connection (``-qmp unix:PATH,server=on,wait=off``): blocking, one
    command at a time; call from a thread."""

    def __init__(self, path: Path) -> None:
        self._sock = socket.socket(socket.AF_UNIX)
        self._sock.settimeout(30)
        self._sock.connect(str(path))
        self._file = self._sock.makefile("rwb")
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, object]:
        while True:
            line = self._file.readline()
            if not line:
                raise ConnectionError("QEMU closed the QMP connection")
            message: dict[str, object] = json.loads(line)
            if "event" not in message:
                return message

    def execute(self, command: str, **arguments: object) -> object:
        self._file.write(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
        self._file.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(f"QMP {command}: {answer['error']}")
        return answer.get("return")

    def close(self) -> None:
        self._file.close()
        self._sock.close()

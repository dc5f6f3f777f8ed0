"""The A/B card (``image/build.sh amd64 --ab``): two root slots, the credentials partition and a
boot path with no loop devices: a standalone GRUB on the EFI system partition with RAUC's slot
selection (image/grub.sh), started by UEFI firmware (OVMF) in QEMU.

One card is built for the module. Offline: the GPT and its partition names, GRUB and its
environment on the FAT, RAUC's system.conf and keyring in the root. Then the card is powered on:
GRUB boots slot A (its console line and the try flag it leaves in grubenv say so), the unit comes
online in a central on this machine, and ``rauc status`` in the guest reports slot A booted.

How the test reads ``rauc status`` in the guest (a test-only path: the unit has no shell for
anybody): a one-shot service, written into the test's copy of slot A with ``debugfs``, prints it
to the serial console. The unit as built has no such service.

Slow, root, network: only with ``VAKA_IMAGE_TEST=1`` (``make image-test``).
"""

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaka.agent.config import CERT_FILE, KEY_FILE
from vaka.central.service import CentralService
from vaka.devstack.central import unit_status
from vaka.devstack.polling import WaitTimeout, wait_for
from vaka.devstack.stack import LocalStack
from vaka.provisioning.localpki import LocalPki

pytest.register_assert_rewrite("tests.imagetools")

from tests.imagetools import (  # noqa: E402
    MARKS,
    PROFILE,
    REPO,
    UNIT,
    Built,
    build_card,
    site_files,
    start_qemu_efi,
    vaka_ids,
)
from tests.test_image_bundle import Signer, make_signer  # noqa: E402

pytest_plugins = ["tests.imagetools"]

pytestmark = MARKS

SECTOR = 512
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    """The project's update signer: its CA goes into the image as RAUC's keyring."""
    return make_signer(tmp_path_factory.mktemp("rauc-signer") / "project", "Vaka updates (test)")


@pytest.fixture(scope="module")
def built_ab(
    image_pki: LocalPki,
    qemu_port: int,
    signer: Signer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Built]:
    """The amd64 variant with two root slots and GRUB, built once for this module."""
    base = tmp_path_factory.mktemp("image-ab")
    site = site_files(image_pki, base / "site", qemu_port)
    shutil.copy(signer.ca, site / "rauc-keyring.pem")
    out = base / "out"
    try:
        yield build_card(site, out, PROFILE, "--ab")
    finally:
        if os.environ.get("VAKA_IMAGE_KEEP") != "1":
            shutil.rmtree(out, ignore_errors=True)


def partitions(card: Path) -> dict[str, dict[str, object]]:
    """The card's GPT partitions by name."""
    table = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(card)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]
    assert table["label"] == "gpt"
    return {str(part["name"]): part for part in table["partitions"]}


def esp_file(card: Path, name: str) -> bytes:
    """A file off the card's EFI system partition (mtools, at the partition's offset)."""
    start = int(partitions(card)["vaka-boot"]["start"])  # type: ignore[call-overload]
    return subprocess.run(
        ["mtype", "-i", f"{card}@@{start * SECTOR}", f"::{name}"], capture_output=True, check=True
    ).stdout


def grubenv(card: Path) -> dict[str, str]:
    text = esp_file(card, "EFI/BOOT/grubenv").decode()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def debugfs(card: Path, partition: str, *requests: str) -> None:
    """Change an ext4 partition of ``card`` in place (debugfs at the partition's offset)."""
    start = int(partitions(card)[partition]["start"])  # type: ignore[call-overload]
    run = subprocess.run(
        ["debugfs", "-w", "-f", "-", f"{card}?offset={start * SECTOR}"],
        input="\n".join(requests) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "error" not in run.stderr.lower() and "not found" not in run.stderr.lower(), run.stderr


def card_with_identity(built: Built, directory: Path, pki: LocalPki) -> Path:
    """A copy of the card whose credentials partition holds this unit's key and certificate."""
    card = directory / "card.img"
    subprocess.run(["cp", "--sparse=always", str(built.disk), str(card)], check=True)
    uid, gid = vaka_ids(built)
    creds = directory / "credentials"
    creds.mkdir(mode=0o700)
    issued = pki.client(UNIT)
    shutil.copy(issued.cert, creds / CERT_FILE)
    shutil.copy(issued.key, creds / KEY_FILE)
    for path in (creds / CERT_FILE, creds / KEY_FILE):
        os.chown(path, uid, gid)
    (creds / KEY_FILE).chmod(0o600)
    partition = directory / "credentials.ext4"
    with partition.open("wb") as blank:
        blank.truncate(16 * 2**20)
    subprocess.run(
        ["mkfs.ext4", "-q", "-L", "vaka-cred", "-m", "0", "-d", str(creds),
         "-E", f"root_owner={uid}:{gid}", str(partition)],
        check=True,
    )  # fmt: skip
    start = int(partitions(card)["vaka-cred"]["start"])  # type: ignore[call-overload]
    with card.open("r+b") as out:
        out.seek(start * SECTOR)
        out.write(partition.read_bytes())
    return card


#: The test-only service that shows ``rauc status`` on the serial console (see the docstring).
STATUS_SERVICE = """\
[Unit]
Description=rauc status on the serial console (tests only)
After=vaka-agent.service dbus.service
[Service]
Type=oneshot
ExecStart=/bin/echo RAUC-STATUS-BEGIN
ExecStart=-/usr/bin/rauc status --output-format=json
ExecStart=/bin/echo RAUC-STATUS-END
ExecStart=-/bin/cat /etc/vaka-test-release
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
"""


def with_status_service(card: Path, directory: Path, slot: str) -> None:
    unit = directory / "vaka-test-rauc-status.service"
    unit.write_text(STATUS_SERVICE)
    unit.chmod(0o644)
    debugfs(
        card,
        slot,
        "cd /etc/systemd/system",
        f"write {unit} vaka-test-rauc-status.service",
        "cd /etc/systemd/system/multi-user.target.wants",
        "symlink vaka-test-rauc-status.service /etc/systemd/system/vaka-test-rauc-status.service",
    )


async def online(central: CentralService) -> bool:
    return await unit_status(central, UNIT) == "online"


def rauc_status(console: str) -> str | None:
    """What ``rauc status`` printed on the console, once it has finished."""
    found = re.search(r"RAUC-STATUS-BEGIN(.*?)RAUC-STATUS-END", console, re.S)
    return found.group(1) if found else None


def test_the_card_has_two_slots_grub_and_rauc(built_ab: Built, signer: Signer) -> None:
    parts = partitions(built_ab.disk)
    assert list(parts) == ["vaka-boot", "vaka-root-a", "vaka-root-b", "vaka-cred"]
    assert parts["vaka-boot"]["type"] == ESP
    # Both slots the same size, the credentials partition small and last.
    assert parts["vaka-root-a"]["size"] == parts["vaka-root-b"]["size"]
    assert int(parts["vaka-cred"]["size"]) * SECTOR == 16 * 2**20  # type: ignore[call-overload]
    # GRUB (a PE file) and its environment: slot A good, B empty, nothing tried yet.
    assert esp_file(built_ab.disk, "EFI/BOOT/BOOTX64.EFI")[:2] == b"MZ"
    assert grubenv(built_ab.disk) == {
        "ORDER": "A B", "A_OK": "1", "A_TRY": "0", "B_OK": "0", "B_TRY": "0",
    }  # fmt: skip
    # The kernel by one name in the slot, for GRUB.
    boot = built_ab.rootfs / "boot"
    assert (boot / "vmlinuz").resolve().exists() and (boot / "initrd.img").resolve().exists()
    conf = (built_ab.rootfs / "etc/rauc/system.conf").read_text()
    for line in (
        "compatible=vaka-amd64",
        "bootloader=grub",
        "grubenv=/boot/firmware/EFI/BOOT/grubenv",
        "device=/dev/disk/by-partlabel/vaka-root-a",
        "device=/dev/disk/by-partlabel/vaka-root-b",
        "bootname=A",
        "bootname=B",
        "path=/etc/rauc/keyring.pem",
    ):
        assert line in conf.splitlines(), line
    assert (built_ab.rootfs / "etc/rauc/keyring.pem").read_bytes() == signer.ca.read_bytes()
    for binary in ("usr/bin/rauc", "usr/bin/grub-editenv"):
        assert (built_ab.rootfs / binary).exists(), binary
    # Debian's rauc has no units: the image brings the service, its D-Bus activation and policy.
    root = built_ab.rootfs
    assert "BusName=de.pengutronix.rauc" in (root / "etc/systemd/system/rauc.service").read_text()
    activation = root / "usr/share/dbus-1/system-services/de.pengutronix.rauc.service"
    assert "SystemdService=rauc.service" in activation.read_text()
    policy = (root / "usr/share/dbus-1/system.d/de.pengutronix.rauc.conf").read_text()
    assert '<deny send_destination="de.pengutronix.rauc"/>' in policy


async def test_the_card_boots_slot_a_through_grub_and_comes_online(
    built_ab: Built, image_pki: LocalPki, qemu_port: int, tmp_path: Path
) -> None:
    """Power-on to online through OVMF, GRUB and slot A; ``rauc status`` says A is booted."""
    card = card_with_identity(built_ab, tmp_path, image_pki)
    with_status_service(card, tmp_path, "vaka-root-a")
    stack = LocalStack(tmp_path, pki=image_pki, broker_port=qemu_port)
    stack.start_broker()
    central = CentralService(stack.central_config())
    console = tmp_path / "console.log"
    qemu: subprocess.Popen[bytes] | None = None

    def tail() -> str:
        return console.read_text(errors="replace")[-8000:] if console.exists() else ""

    try:
        await central.start()
        started = time.monotonic()
        qemu = start_qemu_efi(card, console)
        try:
            await wait_for(lambda: online(central), 900, 0.5, what="unit online")
        except WaitTimeout as err:
            raise AssertionError(f"{err}; the guest's console:\n{tail()}") from None
        seconds = time.monotonic() - started
        print(f"\nqemu (OVMF, GRUB, slot A): unit online {seconds:.0f} s after power-on")
        try:
            await wait_for(
                lambda: rauc_status(console.read_text(errors="replace")),
                300,
                0.5,
                what="rauc status on the console",
            )
        except WaitTimeout as err:
            raise AssertionError(f"{err}; the guest's console:\n{tail()}") from None
        log = console.read_text(errors="replace")
        printed = rauc_status(log) or ""
        found = re.search(r"\{.*\}", printed, re.S)
        assert found, f"rauc status printed no JSON: {printed}"
        status = json.loads(found.group(0))
        print(f"rauc status: {json.dumps(status)}")
        assert status["compatible"] == "vaka-amd64"
        assert status["booted"] == "A"
        slots = {name: fields for slot in status["slots"] for name, fields in slot.items()}
        assert slots["rootfs.0"]["state"] == "booted" and slots["rootfs.1"]["state"] == "inactive"
        # Nothing marks a slot good yet: A is on its try (A_TRY=1), which RAUC calls "bad".
        assert slots["rootfs.0"]["boot_status"] == "bad"
        assert "vaka: booting slot A (ORDER=A B A_OK=1 A_TRY=1" in log
        assert "rauc.slot=A" in log
        assert "Failed to start vaka-agent.service" not in log, tail()
    finally:
        if qemu is not None:
            qemu.kill()
            qemu.wait()
        await central.stop()
        stack.close()
    # GRUB marked the try; nothing on the unit marks the slot good yet, so it stays tried.
    assert grubenv(card)["A_TRY"] == "1"


# -- an update from inside the guest: bundle v2 into slot B, reboot, B booted -----------------

#: The test-only service that installs the bundle on the test's second drive, then reboots (how
#: the test triggers an install; on a unit it is to be the agent, on a signed order from central).
INSTALL_SERVICE = """\
[Unit]
Description=install the test's bundle (tests only)
After=vaka-test-rauc-status.service
ConditionPathExists=/dev/vdb
[Service]
Type=oneshot
ExecStart=/bin/mkdir -p /run/vaka-test-bundle
ExecStart=/bin/mount -o ro /dev/vdb /run/vaka-test-bundle
ExecStart=/bin/echo RAUC-INSTALL-BEGIN
ExecStart=-/usr/bin/rauc install /run/vaka-test-bundle/update.raucb
ExecStart=/bin/echo RAUC-INSTALL-END
ExecStart=/bin/systemctl reboot
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
"""


def with_install_service(card: Path, directory: Path, slot: str) -> None:
    unit = directory / "vaka-test-rauc-install.service"
    unit.write_text(INSTALL_SERVICE)
    unit.chmod(0o644)
    debugfs(
        card,
        slot,
        "cd /etc/systemd/system",
        f"write {unit} vaka-test-rauc-install.service",
        "cd /etc/systemd/system/multi-user.target.wants",
        "symlink vaka-test-rauc-install.service /etc/systemd/system/vaka-test-rauc-install.service",
    )


def bundle_drive(built: Built, directory: Path, signer: Signer, version: str) -> Path:
    """A drive with ``update.raucb``: the built root (plus the status service), signed, as
    ``version``."""
    root = directory / f"root-{version}.ext4"
    subprocess.run(
        ["cp", "--sparse=always", str(built.disk.with_name("root.ext4")), str(root)], check=True
    )
    unit = directory / "vaka-test-rauc-status.service"
    unit.write_text(STATUS_SERVICE)
    unit.chmod(0o644)
    release = directory / "vaka-test-release"
    release.write_text(f"vaka-test-release {version}\n")
    release.chmod(0o644)
    run = subprocess.run(
        ["debugfs", "-w", "-f", "-", str(root)],
        input=f"cd /etc\nwrite {release} vaka-test-release\n"
        "cd /etc/systemd/system\n"
        f"write {unit} vaka-test-rauc-status.service\n"
        "cd /etc/systemd/system/multi-user.target.wants\n"
        "symlink vaka-test-rauc-status.service /etc/systemd/system/vaka-test-rauc-status.service\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert "error" not in run.stderr.lower(), run.stderr
    content = directory / f"bundle-{version}"
    content.mkdir()
    started = time.monotonic()
    made = subprocess.run(
        ["bash", str(REPO / "image/bundle.sh"), str(root), str(content / "update.raucb"),
         "--cert", str(signer.cert), "--key", str(signer.key), "--version", version,
         "--keyring", str(signer.ca)],
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    print(f"\nbundle {version}: {time.monotonic() - started:.0f} s; {made.stderr.strip()}")
    root.unlink()
    size = (content / "update.raucb").stat().st_size + 64 * 2**20
    drive = directory / f"bundle-{version}.ext4"
    with drive.open("wb") as blank:
        blank.truncate(size)
    subprocess.run(["mkfs.ext4", "-q", "-d", str(content), str(drive)], check=True)
    shutil.rmtree(content)
    return drive


def status_blocks(console: str) -> list[str]:
    return re.findall(r"RAUC-STATUS-BEGIN(.*?)RAUC-STATUS-END", console, re.S)


async def test_a_bundle_installed_in_the_guest_boots_from_slot_b(
    built_ab: Built, image_pki: LocalPki, qemu_port: int, signer: Signer, tmp_path: Path
) -> None:
    """v2 goes into slot B from inside the guest (rauc install, test-only trigger), the unit
    reboots by itself, GRUB boots B, and the unit is online again from B."""
    card = card_with_identity(built_ab, tmp_path, image_pki)
    with_status_service(card, tmp_path, "vaka-root-a")
    with_install_service(card, tmp_path, "vaka-root-a")
    drive = bundle_drive(built_ab, tmp_path, signer, "2")
    stack = LocalStack(tmp_path, pki=image_pki, broker_port=qemu_port)
    stack.start_broker()
    central = CentralService(stack.central_config())
    console = tmp_path / "console.log"
    qemu: subprocess.Popen[bytes] | None = None

    def text() -> str:
        return console.read_text(errors="replace") if console.exists() else ""

    try:
        await central.start()
        started = time.monotonic()
        qemu = start_qemu_efi(
            card,
            console,
            reboot=True,
            extra=("-drive", f"file={drive},format=raw,if=virtio,readonly=on"),
        )
        try:
            await wait_for(
                lambda: len(status_blocks(text())) >= 2 or None, 1500, 1, what="slot B booted"
            )
            await wait_for(
                lambda: "vaka: booting slot B" in text() and online(central),
                600,
                0.5,
                what="online from slot B",
            )
        except WaitTimeout as err:
            raise AssertionError(f"{err}; the guest's console:\n{text()[-10000:]}") from None
        print(f"\nqemu: v2 installed and online from slot B {time.monotonic() - started:.0f} s")
        log = text()
        installed = re.search(r"RAUC-INSTALL-BEGIN(.*?)RAUC-INSTALL-END", log, re.S)
        assert installed and "Installing" in installed.group(1), log[-10000:]
        first, second = (json.loads(re.search(r"\{.*\}", b, re.S).group(0))  # type: ignore[union-attr]
                         for b in status_blocks(log)[:2])  # fmt: skip
        assert first["booted"] == "A" and second["booted"] == "B"
        assert "vaka: booting slot B (ORDER=B A" in log
        slots = {name: fields for slot in second["slots"] for name, fields in slot.items()}
        print(f"rauc status from slot B: {json.dumps(second)}")
        assert slots["rootfs.1"]["state"] == "booted"
        # The root running from B is the bundle's: a file only v2 has, shown after its status.
        assert "vaka-test-release 2" in log.split("RAUC-STATUS-END")[2]
    finally:
        if qemu is not None:
            qemu.kill()
            qemu.wait()
        await central.stop()
        stack.close()
    env = grubenv(card)
    assert env["ORDER"].startswith("B") and env["B_OK"] == "1"

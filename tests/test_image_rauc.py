"""The A/B card (``image/build.sh amd64 --ab``): two root slots, the credentials partition and a
boot path with no loop devices: a standalone GRUB on the EFI system partition with RAUC's slot
selection (image/grub.sh), started by UEFI firmware (OVMF) in QEMU.

One card is built for the module. Offline: the GPT and its partition names, GRUB and its
environment on the FAT, RAUC's system.conf and keyring in the root. Then the card is powered on:
GRUB boots slot A (its console line and the try flag it leaves in grubenv say so), the unit comes
online in a central on this machine, ``rauc status`` in the guest reports slot A booted, and
boot counting marks the card's own root good. Then one power-on of five boots: v2 installed into
B, on trial, online, marked good and kept over a reboot; a broken v3 (its agent does not start)
installed into A, marked bad at its health deadline, and the unit back on B by itself; a bundle
signed by another authority refused inside the guest.

How the test reads ``rauc status`` in the guest and moves from step to step (a test-only path:
the unit has no shell for anybody): one-shot services, written into the test's copy of slot A
and into the bundles' roots with ``debugfs``, print to the serial console and run the next step
from the bundle drive. The unit as built has no such service.

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
from typing import Any

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


def with_counting_on_console(card: Path, directory: Path, slot: str) -> None:
    """vaka-mark-good.service's lines on the serial console too (a test-only drop-in)."""
    dropin = directory / "50-test-console.conf"
    dropin.write_text("[Service]\nStandardOutput=journal+console\n")
    dropin.chmod(0o644)
    debugfs(
        card,
        slot,
        "cd /etc/systemd/system",
        "mkdir vaka-mark-good.service.d",
        "cd /etc/systemd/system/vaka-mark-good.service.d",
        f"write {dropin} 50-test.conf",
    )


def plain(console: str) -> str:
    """The console without colour codes (systemd's status lines have them)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", console)


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
        "statusfile=/var/lib/vaka/credentials/rauc.status",
        "post-install=/usr/libexec/vaka/rauc-post-install",
    ):
        assert line in conf.splitlines(), line
    # Boot counting: the service enabled, its script and RAUC's post-install handler executable.
    root = built_ab.rootfs
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert (wants / "vaka-mark-good.service").is_symlink()  # to /etc/...: not resolvable here
    for script in ("mark-good", "rauc-post-install"):
        assert os.access(root / "usr/libexec/vaka" / script, os.X_OK), script
    unit = (root / "etc/systemd/system/vaka-mark-good.service").read_text()
    assert "Environment=VAKA_HEALTH_DEADLINE=600" in unit
    rauc_unit = (root / "etc/systemd/system/rauc.service").read_text()
    assert "RequiresMountsFor=/var/lib/vaka/credentials /boot/firmware" in rauc_unit
    assert (built_ab.rootfs / "etc/rauc/keyring.pem").read_bytes() == signer.ca.read_bytes()
    for binary in ("usr/bin/rauc", "usr/bin/grub-editenv"):
        assert (built_ab.rootfs / binary).exists(), binary
    # Debian's rauc has no units: the image brings the service, its D-Bus activation and policy.
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
    with_counting_on_console(card, tmp_path, "vaka-root-a")
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
        assert "vaka: booting slot A (ORDER=A B A_OK=1 A_TRY=1" in log
        assert "rauc.slot=A" in log
        assert "Failed to start vaka-agent" not in plain(log), tail()
        # The card's own root was never installed by RAUC, so it is not on trial: boot counting
        # marks it good as soon as it has booted.
        try:
            await wait_for(
                lambda: "vaka-mark-good: slot A is proven" in console.read_text(errors="replace"),
                300,
                0.5,
                what="slot A marked good",
            )
        except WaitTimeout as err:
            raise AssertionError(f"{err}; the guest's console:\n{tail()}") from None
    finally:
        if qemu is not None:
            qemu.kill()
            qemu.wait()
        await central.stop()
        stack.close()
    # GRUB marked the try, vaka-mark-good (rauc status mark-good) cleared it.
    env = grubenv(card)
    assert env["A_OK"] == "1" and env["A_TRY"] == "0" and "VAKA_TRIAL" not in env, env


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


def slot_root(
    built: Built, directory: Path, version: str, files: dict[str, tuple[Path, str]]
) -> Path:
    """A copy of the built root as ``version``: the status service, ``/etc/vaka-test-release``
    and ``files`` (path in the root -> local file, its mode applied) written in with debugfs."""
    root = directory / f"root-{version}.ext4"
    subprocess.run(
        ["cp", "--sparse=always", str(built.disk.with_name("root.ext4")), str(root)], check=True
    )
    unit = directory / "vaka-test-rauc-status.service"
    unit.write_text(STATUS_SERVICE)
    unit.chmod(0o644)
    release = directory / f"vaka-test-release-{version}"
    release.write_text(f"vaka-test-release {version}\n")
    release.chmod(0o644)
    requests = [
        "cd /etc",
        f"write {release} vaka-test-release",
        "cd /etc/systemd/system",
        f"write {unit} vaka-test-rauc-status.service",
        "cd /etc/systemd/system/multi-user.target.wants",
        "symlink vaka-test-rauc-status.service /etc/systemd/system/vaka-test-rauc-status.service",
    ]
    for target, (local, mode) in files.items():
        folder, _, name = target.rstrip("/").rpartition("/")
        if target.endswith("/"):
            requests += [f"cd {folder}", f"mkdir {name}"]
            continue
        local.chmod(int(mode, 8))
        requests += [f"cd {folder}", f"rm {name}" if target.startswith("/opt/") else "pwd"]
        requests.append(f"write {local} {name}")
        if name.endswith(".service") and folder == "/etc/systemd/system":
            requests += [
                "cd /etc/systemd/system/multi-user.target.wants",
                f"symlink {name} {target}",
            ]
    run = subprocess.run(
        ["debugfs", "-w", "-f", "-", str(root)],
        input="\n".join(requests) + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert "error" not in run.stderr.lower() and "not found" not in run.stderr.lower(), run.stderr
    return root


def make_bundle(root: Path, out: Path, signer: Signer, version: str) -> Path:
    """``root`` as a signed bundle (image/bundle.sh), checked against the signer's CA."""
    started = time.monotonic()
    made = subprocess.run(
        ["bash", str(REPO / "image/bundle.sh"), str(root), str(out),
         "--cert", str(signer.cert), "--key", str(signer.key), "--version", version,
         "--keyring", str(signer.ca)],
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    print(f"\nbundle {version}: {time.monotonic() - started:.0f} s; {made.stderr.strip()}")
    root.unlink()
    return out


def drive_of(content: Path, drive: Path) -> Path:
    """An ext4 drive image holding the files of ``content`` (then removed)."""
    size = sum(f.stat().st_size for f in content.iterdir()) + 64 * 2**20
    with drive.open("wb") as blank:
        blank.truncate(size)
    subprocess.run(["mkfs.ext4", "-q", "-d", str(content), str(drive)], check=True)
    shutil.rmtree(content)
    return drive


def status_blocks(console: str, marker: str = "RAUC-STATUS") -> list[str]:
    return re.findall(rf"{marker}-BEGIN(.*?){marker}-END", console, re.S)


def status_json(block: str) -> dict[str, Any]:
    found = re.search(r"\{.*\}", block, re.S)
    assert found, f"rauc status printed no JSON: {block}"
    status: dict[str, Any] = json.loads(found.group(0))
    return status


def slot_fields(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: fields for slot in status["slots"] for name, fields in slot.items()}


# -- boot counting: v2 kept, a broken v3 rolled back, a foreign bundle refused ---------------

#: In the v2 root (slot B), tests only: once boot counting has decided, ``rauc status`` (plain
#: and ``--detailed``) on the console, then the next step of the test from the bundle drive.
STEP_SERVICE = """\
[Unit]
Description=after boot counting: rauc status and the test's next step (tests only)
After=vaka-mark-good.service vaka-test-rauc-status.service
ConditionPathExists=/dev/vdb
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'while systemctl is-active -q vaka-mark-good.service; do sleep 1; done'
ExecStart=/bin/echo RAUC-COUNTED-BEGIN
ExecStart=-/usr/bin/rauc status --output-format=json
ExecStart=/bin/echo RAUC-COUNTED-END
ExecStart=/bin/echo RAUC-DETAILED-BEGIN
ExecStart=-/usr/bin/rauc status --detailed --output-format=json
ExecStart=/bin/echo RAUC-DETAILED-END
ExecStart=/bin/mkdir -p /run/vaka-test-bundle
ExecStart=/bin/mount -o ro /dev/vdb /run/vaka-test-bundle
ExecStart=/bin/sh /run/vaka-test-bundle/step.sh
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
"""

#: The step, chosen by what boot counting did on this boot of slot B.
STEP_SCRIPT = """\
trial() {
  # vaka-mark-good has exited; give the journal a moment to have its last lines.
  for _ in 1 2 3 4 5; do
    journalctl -b -u vaka-mark-good.service | grep -q "is on trial" && return 0
    sleep 1
  done
  return 1
}
if trial; then
  echo "VAKA-STEP reboot after the trial"
  systemctl reboot
elif grub-editenv /boot/firmware/EFI/BOOT/grubenv list | grep -qx A_OK=1; then
  echo "VAKA-STEP install v3"
  echo RAUC-INSTALL-BEGIN
  rauc install /run/vaka-test-bundle/v3.raucb
  echo RAUC-INSTALL-END
  systemctl reboot
else
  echo "VAKA-STEP foreign"
  echo RAUC-FOREIGN-BEGIN
  rauc install /run/vaka-test-bundle/foreign.raucb
  echo "rauc install exit $?"
  echo RAUC-FOREIGN-END
fi
"""

#: The broken v3's agent: its entry point exits at once, so the agent never comes online.
BROKEN_AGENT = """\
#!/bin/sh
echo "vaka-agent: broken on purpose (test bundle v3)" >&2
exit 1
"""


def mark_good_dropin(directory: Path, version: str, deadline: int | None) -> Path:
    """Boot counting's lines on the serial console too, and (v3) a short health deadline."""
    dropin = directory / f"50-test-{version}.conf"
    lines = ["[Service]", "StandardOutput=journal+console"]
    if deadline is not None:
        lines.append(f"Environment=VAKA_HEALTH_DEADLINE={deadline}")
    dropin.write_text("\n".join(lines) + "\n")
    return dropin


def update_drive(built: Built, directory: Path, signer: Signer, stranger: Signer) -> Path:
    """The second drive: ``update.raucb`` (v2), ``v3.raucb`` (broken agent, 60 s deadline),
    ``foreign.raucb`` (v2 re-signed by ``stranger``) and ``step.sh``."""
    content = directory / "bundles"
    content.mkdir()
    dropins = "/etc/systemd/system/vaka-mark-good.service.d"
    step = directory / "vaka-test-step.service"
    step.write_text(STEP_SERVICE)
    v2 = slot_root(
        built,
        directory,
        "2",
        {
            f"{dropins}/": (directory, "755"),
            f"{dropins}/50-test.conf": (mark_good_dropin(directory, "2", None), "644"),
            "/etc/systemd/system/vaka-test-step.service": (step, "644"),
        },
    )
    update = make_bundle(v2, content / "update.raucb", signer, "2")
    broken = directory / "vaka-agent"
    broken.write_text(BROKEN_AGENT)
    v3 = slot_root(
        built,
        directory,
        "3",
        {
            f"{dropins}/": (directory, "755"),
            f"{dropins}/50-test.conf": (mark_good_dropin(directory, "3", 60), "644"),
            "/opt/vaka/venv/bin/vaka-agent": (broken, "755"),
        },
    )
    make_bundle(v3, content / "v3.raucb", signer, "3")
    resigned = subprocess.run(
        ["rauc", "resign", "--cert", str(stranger.cert), "--key", str(stranger.key),
         "--keyring", str(signer.ca), "--signing-keyring", str(stranger.ca),
         str(update), str(content / "foreign.raucb")],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert resigned.returncode == 0, resigned.stderr
    (content / "step.sh").write_text(STEP_SCRIPT)
    return drive_of(content, directory / "bundles.ext4")


def slot_file(card: Path, partition: str, path: str) -> str:
    """A file's text in an ext4 partition of ``card`` (debugfs, read-only)."""
    start = int(partitions(card)[partition]["start"])  # type: ignore[call-overload]
    return subprocess.run(
        ["debugfs", "-R", f"cat {path}", f"{card}?offset={start * SECTOR}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


@pytest.mark.timeout(4800)
async def test_an_update_is_kept_a_broken_one_rolled_back_a_foreign_one_refused(
    built_ab: Built, image_pki: LocalPki, qemu_port: int, signer: Signer, tmp_path: Path
) -> None:
    """One power-on, five boots, no hand on the unit after the first install's trigger:

    1. slot A (the card's own root) installs v2 into B (test-only trigger) and reboots;
    2. B on trial: the agent comes online, vaka-mark-good marks B good, its trial ends; reboot;
    3. B again (a good slot stays booted); the test installs a broken v3 into A; reboot;
    4. A on trial: the agent never starts; after the 60 s deadline A is marked bad, reboot;
    5. B again by itself, online; ``rauc status``: B booted, A bad. A bundle signed by another
       authority is refused with RAUC's signature error, and slot A keeps v3.
    """
    stranger = make_signer(tmp_path / "stranger", "Somebody else's updates")
    card = card_with_identity(built_ab, tmp_path, image_pki)
    with_status_service(card, tmp_path, "vaka-root-a")
    with_install_service(card, tmp_path, "vaka-root-a")
    with_counting_on_console(card, tmp_path, "vaka-root-a")
    drive = update_drive(built_ab, tmp_path, signer, stranger)
    stack = LocalStack(tmp_path, pki=image_pki, broker_port=qemu_port)
    stack.start_broker()
    central = CentralService(stack.central_config())
    console = tmp_path / "console.log"
    qemu: subprocess.Popen[bytes] | None = None

    def text() -> str:
        return console.read_text(errors="replace") if console.exists() else ""

    def boots() -> list[str]:
        return re.findall(r"vaka: booting slot ([AB])", text())

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
            for count, what in ((2, "v2 installed"), (3, "B kept"), (4, "v3 in A"), (5, "back")):
                await wait_for(lambda n=count: len(boots()) >= n or None, 1800, 1, what=what)  # type: ignore[misc]
                print(f"\nboot {count} (slot {boots()[-1]}) {time.monotonic() - started:.0f} s")
            await wait_for(
                lambda: "RAUC-FOREIGN-END" in text() and online(central),
                900,
                0.5,
                what="foreign bundle tried, online from B",
            )
        except WaitTimeout as err:
            raise AssertionError(f"{err}; the guest's console:\n{text()[-12000:]}") from None
        print(f"qemu: five boots, back on B and online {time.monotonic() - started:.0f} s")
        log = text()
    finally:
        if qemu is not None:
            qemu.kill()
            qemu.wait()
        await central.stop()
        stack.close()

    assert boots() == ["A", "B", "B", "A", "B"], log[-12000:]
    first, second, third, fourth, fifth = (status_json(b) for b in status_blocks(log)[:5])
    assert [s["booted"] for s in (first, second, third, fourth, fifth)] == list("ABBAB")
    releases = re.findall(r"vaka-test-release (\d)", log)
    assert releases[:4] == ["2", "2", "3", "2"], releases  # v1 has none; B is v2, A then v3
    installed = re.search(r"RAUC-INSTALL-BEGIN(.*?)RAUC-INSTALL-END", log, re.S)
    assert installed and "Installing" in installed.group(1), log[-12000:]

    # Boot 2: v2 on trial, online, marked good (B_TRY cleared); then a reboot keeps B.
    assert "vaka-mark-good: slot A is proven (online since its install): marked good" in log
    assert "vaka-mark-good: slot B is on trial since its install" in log
    assert "the agent is online: slot B marked good, its trial is over" in log
    counted = [status_json(b) for b in status_blocks(log, "RAUC-COUNTED")]
    assert len(counted) == 3, log[-12000:]
    print(f"rauc status after boot counting: {json.dumps(counted)}")
    assert counted[0]["booted"] == "B"
    assert slot_fields(counted[0])["rootfs.1"]["boot_status"] == "good"
    assert "vaka: booting slot B (ORDER=B A A_OK=1 A_TRY=0 B_OK=1 B_TRY=1)" in log
    # Boot 3: B is proven; good at once.
    assert "vaka-mark-good: slot B is proven (online since its install): marked good" in log
    # Boot 4: v3 in A on trial, its agent never starts; marked bad after its deadline.
    assert "vaka-mark-good: slot A is on trial since its install: the agent has 60 s" in log
    # systemd's status lines carry colours and shorten the unit's name: compare without them.
    segments = re.split(r"vaka: booting slot [AB]", plain(log))[1:]
    assert "Failed to start vaka-agent" in segments[3], segments[3][-8000:]
    for healthy in (1, 2, 4):
        assert "Failed to start vaka-agent" not in segments[healthy], healthy
    assert "the agent was not online within 60 s: slot A marked bad" in log
    # Boot 5: back on v2 by itself; RAUC says B booted, A bad.
    assert counted[2]["booted"] == "B"
    final = slot_fields(counted[2])
    assert final["rootfs.1"]["state"] == "booted" and final["rootfs.1"]["boot_status"] == "good"
    assert final["rootfs.0"]["boot_status"] == "bad"

    # The foreign bundle: RAUC's signature error, and slot A still holds v3.
    foreign = re.search(r"RAUC-FOREIGN-BEGIN(.*?)RAUC-FOREIGN-END", log, re.S)
    assert foreign, log[-12000:]
    print(f"foreign bundle: {foreign.group(1).strip()}")
    assert "signature verification failed" in foreign.group(1).lower()
    assert re.search(r"rauc install exit [1-9]", foreign.group(1))
    assert slot_file(card, "vaka-root-a", "/etc/vaka-test-release") == "vaka-test-release 3\n"
    env = grubenv(card)
    assert env["A_OK"] == "0" and env["B_OK"] == "1", env
    assert env["B_TRY"] == "0" and env.get("VAKA_TRIAL") == "A", env

    # The slots' status comes from the status file on the credentials partition: --detailed
    # works (it mounted the booted slot a second time without it).
    detailed = status_json(status_blocks(log, "RAUC-DETAILED")[-1])
    assert slot_fields(detailed)["rootfs.1"]["slot_status"]["bundle"]["version"] == "2", detailed

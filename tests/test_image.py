"""The image recipe (image/): build the amd64 variant's card, check it offline, boot it in QEMU.

Slow (about three minutes here: Debian's packages with a kernel, the agent's wheels from PyPI, a
QEMU boot without KVM), and it needs root and the network, so it runs only with
``VAKA_IMAGE_TEST=1``: ``make image-test`` sets it, ``make test`` skips it. One build per session
(tests/imagetools.py); every test here and in tests/test_image_units.py (systemd, SSH, the agent)
looks at the same result:

* ``systemd-analyze verify --root=ROOTFS`` and ``systemd-analyze security --offline=yes
  --root=ROOTFS`` with the thresholds of tests/test_systemd_units.py (agent 1.5, others 2.0);
* the read-only layout: fstab (``ro`` root, tmpfs for /tmp, /var/tmp, /var/log), the credentials
  partition's mount unit, the card's three partitions and ``root=PARTUUID=`` in cmdline.txt;
* SSH off (ssh.service disabled, ssh.socket masked, no host keys in the image, keys only);
* journal volatile, no machine id, the board configuration and site files in place;
* the agent: ``chroot ROOTFS /opt/vaka/venv/bin/vaka-agent --help`` and its imports; the image's
  own agent, as its user ``vaka`` in a read-only view of the image's root, online in a real
  central over a real broker;
* the card booted under QEMU (kernel, read-only root, credentials partition, networkd, the site's
  firewall, vaka-agent.service with its whole sandbox): the unit comes online in central.
"""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from vaka.agent.config import CERT_FILE, KEY_FILE
from vaka.central.service import CentralService
from vaka.devstack.central import unit_status
from vaka.devstack.polling import WaitTimeout, wait_for
from vaka.devstack.stack import LocalStack
from vaka.provisioning.localpki import LocalPki

# Before its import: the shared module's asserts rewritten, as in any pytest plugin.
pytest.register_assert_rewrite("tests.imagetools")

from tests.imagetools import (  # noqa: E402
    MARKS,
    PROFILE,
    REPO,
    UNIT,
    Built,
    start_qemu,
    vaka_ids,
)

pytest_plugins = ["tests.imagetools"]  # the build (fixture built) and its inputs, shared

pytestmark = MARKS


# -- storage-free layout ------------------------------------------------------------------------


def fstab(built: Built) -> dict[str, tuple[str, str, list[str]]]:
    """Mount point -> (what, type, options) of every line in the image's /etc/fstab."""
    entries = {}
    for line in (built.rootfs / "etc/fstab").read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            entries[fields[1]] = (fields[0], fields[2], fields[3].split(","))
    return entries


def test_fstab_has_the_read_only_layout(built: Built) -> None:
    table = fstab(built)
    what, kind, options = table["/"]
    assert (what, kind) == ("LABEL=vaka-root", "ext4") and "ro" in options and "rw" not in options
    for point in ("/tmp", "/var/tmp", "/var/log"):
        assert table[point][1] == "tmpfs", point
        assert {"nosuid", "nodev"} <= set(table[point][2]), point
    assert "noexec" in table["/var/log"][2]
    # The only writable disk partitions: the firmware (FAT, root only) and the credentials.
    disk_rw = {p for p, (_, kind, opts) in table.items() if kind != "tmpfs" and "ro" not in opts}
    assert disk_rw == {"/boot/firmware"}
    assert "umask=0077" in table["/boot/firmware"][2]
    assert not [p for p, (_, kind, _o) in table.items() if kind == "swap"]
    mount = (built.rootfs / "etc/systemd/system/var-lib-vaka-credentials.mount").read_text()
    assert "What=/dev/disk/by-label/vaka-cred" in mount
    assert "Where=/var/lib/vaka/credentials" in mount
    assert re.search(r"Options=.*\bnoexec\b", mount) and re.search(r"Options=.*\bnodev\b", mount)
    assert (built.rootfs / "var/lib/vaka/credentials").is_dir()
    requires = built.rootfs / "etc/systemd/system/vaka-agent.service.requires"
    assert (requires / "var-lib-vaka-credentials.mount").is_symlink()
    cmdline = (built.rootfs / "boot/firmware/cmdline.txt").read_text().split()
    assert "ro" in cmdline


def test_nothing_at_rest_in_the_image(built: Built) -> None:
    journald = built.rootfs / "etc/systemd/journald.conf.d/50-vaka-volatile.conf"
    assert "Storage=volatile" in journald.read_text()
    assert not (built.rootfs / "var/log/journal").exists()
    assert [p for p in (built.rootfs / "var/log").rglob("*") if p.is_file()] == []
    assert (built.rootfs / "etc/machine-id").read_text() == ""
    assert os.readlink(built.rootfs / "var/lib/dbus/machine-id") == "/etc/machine-id"
    assert list((built.rootfs / "etc/ssh").glob("ssh_host_*")) == []
    assert not list((built.rootfs / "var/cache/apt/archives").glob("*.deb"))
    resolv = built.rootfs / "etc/resolv.conf"
    assert os.readlink(resolv) == "../run/systemd/resolve/stub-resolv.conf"


def test_users_board_configuration_and_site(built: Built) -> None:
    passwd = {
        line.split(":")[0]: line.split(":")
        for line in (built.rootfs / "etc/passwd").read_text().splitlines()
    }
    assert passwd["vaka"][6] == "/usr/sbin/nologin" and int(passwd["vaka"][2]) < 1000
    assert "technician" in passwd
    fw = REPO / "firmware_config"
    same = {
        "boot/firmware/config.txt": fw / PROFILE / "config.txt",
        "boot/firmware/cmdline.txt": fw / PROFILE / "cmdline.txt",
        "etc/udev/rules.d/99-vaka.rules": fw / "common/udev/99-vaka.rules",
        "etc/nftables.conf": built.site / "nftables.conf",  # the site's addresses
        "etc/systemd/system/vaka-agent.service.d/50-peers.conf": built.site / "50-peers.conf",
        "etc/sysctl.d/90-vaka.conf": fw / "common/sysctl.d/90-vaka.conf",
        "etc/systemd/system.conf.d/50-vaka-watchdog.conf": (
            REPO / "systemd/system.conf.d/50-vaka-watchdog.conf"
        ),
        "etc/tmpfiles.d/vaka.conf": REPO / "systemd/tmpfiles.d/vaka.conf",
    }
    for inside, source in same.items():
        assert (built.rootfs / inside).read_bytes() == source.read_bytes(), inside
    etc_vaka = built.rootfs / "etc/vaka"
    vaka_gid = int(passwd["vaka"][3])
    assert etc_vaka.stat().st_gid == vaka_gid and etc_vaka.stat().st_mode & 0o777 == 0o750
    key = etc_vaka / "claim.key"
    assert key.stat().st_mode & 0o777 == 0o640 and key.stat().st_uid == 0
    assert (etc_vaka / "agent.toml").exists()


# -- the card -------------------------------------------------------------------------------------


def test_card_has_boot_root_and_credentials_partitions(built: Built) -> None:
    table = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(built.disk)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]
    assert table["label"] == "dos"
    parts = table["partitions"]
    assert [p["type"] for p in parts] == ["c", "83", "83"]
    sector = table.get("sectorsize", 512)
    labels = []
    for part in parts:
        probe = subprocess.run(
            ["blkid", "-p", "-o", "export", "-O", str(part["start"] * sector), str(built.disk)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        fields = dict(line.split("=", 1) for line in probe.splitlines() if "=" in line)
        labels.append((fields.get("TYPE"), fields.get("LABEL")))
    assert labels == [("vfat", "VAKA-BOOT"), ("ext4", "vaka-root"), ("ext4", "vaka-cred")]
    assert parts[2]["size"] * sector == 16 * 2**20  # a small credentials partition
    # cmdline.txt on the FAT names the root partition by this card's PARTUUID.
    cmdline = subprocess.run(
        ["mtype", "-i", f"{built.disk}@@{parts[0]['start'] * sector}", "::cmdline.txt"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    disk_id = table["id"].removeprefix("0x")
    assert cmdline[0] == f"root=PARTUUID={disk_id}-02"
    assert "ro" in cmdline


# -- stretch: boot the card under QEMU -----------------------------------------------------------


def card_with_identity(built: Built, directory: Path, pki: LocalPki) -> tuple[Path, str]:
    """A copy of the card whose credentials partition holds this unit's key and certificate (as
    enrolment would leave it), and the card's disk id."""
    table = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(built.disk)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]
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
    sector = table.get("sectorsize", 512)
    with card.open("r+b") as out:
        out.seek(table["partitions"][2]["start"] * sector)
        out.write(partition.read_bytes())
    return card, table["id"].removeprefix("0x")


async def test_the_card_boots_under_qemu_and_the_unit_comes_online(
    built: Built, image_pki: LocalPki, qemu_port: int, tmp_path: Path
) -> None:
    """The whole card: kernel, read-only root, credentials partition by label, networkd, the
    site's firewall, vaka-agent.service with all its sandboxing, over QEMU's user network to a
    broker and central on this machine."""
    card, _ = card_with_identity(built, tmp_path, image_pki)
    stack = LocalStack(tmp_path, pki=image_pki, broker_port=qemu_port)
    stack.start_broker()
    central = CentralService(stack.central_config())
    console = tmp_path / "console.log"
    qemu: subprocess.Popen[bytes] | None = None
    try:
        await central.start()
        started = time.monotonic()
        qemu = start_qemu(built, card, console)

        def tail() -> str:
            return console.read_text(errors="replace")[-6000:] if console.exists() else ""

        try:
            await wait_for(lambda: unit_status(central, UNIT), 600, 0.5, what="unit online")
        except WaitTimeout as err:
            raise AssertionError(f"{err}; the guest's console:\n{tail()}") from None
        print(f"\nqemu: unit online in central {time.monotonic() - started:.0f} s after power-on")
        assert await unit_status(central, UNIT) == "online"
        log = tail()
        assert "Failed to start vaka-agent.service" not in log, log
    finally:
        if qemu is not None:
            qemu.kill()
            qemu.wait()
        await central.stop()
        stack.close()

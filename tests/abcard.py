"""The A/B card taken apart and put together again for its QEMU tests: its GPT partitions, the
grubenv on its FAT, files in a slot read and written with ``debugfs``, the test-only services that
print ``rauc status`` and boot counting to the serial console, and the roots of test bundles."""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.imagetools import (
    REPO,
    UNIT,
    Built,
    vaka_ids,
)
from tests.test_image_bundle import Signer
from vaka.agent.config import CERT_FILE, KEY_FILE
from vaka.central.service import CentralService
from vaka.devstack.central import unit_status
from vaka.provisioning.localpki import LocalPki

SECTOR = 512
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


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
#: It asks again until RAUC answers, and writes through the console as systemd does, not on the
#: serial line itself: there, lines were lost when the serial getty took the line over.
STATUS_SERVICE = """\
[Unit]
Description=rauc status on the serial console (tests only)
After=vaka-agent.service dbus.service
[Service]
Type=oneshot
ExecStart=/bin/echo RAUC-STATUS-BEGIN
ExecStart=-/bin/sh -c 'for try in 1 2 3 4 5 6 7 8 9 10; do \\
  rauc status --output-format=json >/run/vaka-test-status 2>&1; \\
  grep -q booted /run/vaka-test-status && break; sleep 3; done; cat /run/vaka-test-status'
ExecStart=/bin/echo RAUC-STATUS-END
ExecStart=-/bin/cat /etc/vaka-test-release
ExecStart=/bin/echo MOUNTS-BEGIN
ExecStart=-/bin/findmnt -n -b -o TARGET,SOURCE,FSTYPE,SIZE,OPTIONS --mountpoint /run
ExecStart=-/bin/findmnt -n -b -o TARGET,SOURCE,FSTYPE,SIZE,OPTIONS --mountpoint /var/lib/vaka/update
ExecStart=/bin/echo MOUNTS-END
StandardOutput=journal+console
StandardError=journal+console
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


def with_helper_on_console(card: Path, directory: Path, slot: str) -> None:
    """The install helper's lines (RAUC's answer among them) on the serial console too."""
    debugfs(
        card,
        slot,
        "cd /etc/systemd/system",
        "mkdir vaka-update-install.service.d",
        "cd /etc/systemd/system/vaka-update-install.service.d",
        f"write {helper_dropin(directory)} 50-test.conf",
    )


def helper_dropin(directory: Path) -> Path:
    dropin = directory / "50-test-helper.conf"
    dropin.write_text("[Service]\nStandardOutput=journal+console\nStandardError=journal+console\n")
    dropin.chmod(0o644)
    return dropin


def plain(console: str) -> str:
    """The console without colour codes (systemd's status lines have them)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", console)


async def online(central: CentralService) -> bool:
    return await unit_status(central, UNIT) == "online"


def rauc_status(console: str) -> str | None:
    """What ``rauc status`` printed on the console, once it has finished."""
    found = re.search(r"RAUC-STATUS-BEGIN(.*?)RAUC-STATUS-END", console, re.S)
    return found.group(1) if found else None


def slot_root(
    built: Built, directory: Path, version: str, files: dict[str, tuple[Path, str]]
) -> Path:
    """A copy of the built root as ``version``: ``IMAGE_VERSION=`` in its os-release, the status
    service, ``/etc/vaka-test-release`` and ``files`` (path in the root -> local file, its mode
    applied) written in with debugfs."""
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
    # The version the agent reports (what image/build.sh --version writes): the bundle's.
    built_release = (built.rootfs / "usr/lib/os-release").read_text()
    assert "IMAGE_VERSION=" in built_release, built_release
    os_release = directory / f"os-release-{version}"
    os_release.write_text(
        re.sub(r"(?m)^IMAGE_VERSION=.*$", f"IMAGE_VERSION={version}", built_release)
    )
    files = {"/usr/lib/os-release": (os_release, "644"), **files}
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
        there = os.path.lexists(built.rootfs / target.lstrip("/"))
        requests += [f"cd {folder}", f"rm {name}" if there else "pwd"]
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


def status_blocks(console: str, marker: str = "RAUC-STATUS") -> list[str]:
    return re.findall(rf"{marker}-BEGIN(.*?){marker}-END", console, re.S)


def status_json(block: str) -> dict[str, Any]:
    found = re.search(r"\{.*\}", block, re.S)
    assert found, f"rauc status printed no JSON: {block}"
    status: dict[str, Any] = json.loads(found.group(0))
    return status


def slot_fields(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: fields for slot in status["slots"] for name, fields in slot.items()}


#: In the v2 root (slot B), tests only: once boot counting has decided, ``rauc status`` (plain
#: and ``--detailed``) on the console.
COUNTED_SERVICE = """\
[Unit]
Description=after boot counting: rauc status (tests only)
After=vaka-mark-good.service vaka-test-rauc-status.service
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'while systemctl is-active -q vaka-mark-good.service; do sleep 1; done'
ExecStart=/bin/echo RAUC-COUNTED-BEGIN
ExecStart=-/usr/bin/rauc status --output-format=json
ExecStart=/bin/echo RAUC-COUNTED-END
ExecStart=/bin/echo RAUC-DETAILED-BEGIN
ExecStart=-/usr/bin/rauc status --detailed --output-format=json
ExecStart=/bin/echo RAUC-DETAILED-END
StandardOutput=journal+console
StandardError=journal+console
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


def debugfs_read(card: Path, partition: str, request: str) -> str:
    """What debugfs answers to ``request`` on an ext4 partition of ``card`` (read-only)."""
    start = int(partitions(card)[partition]["start"])  # type: ignore[call-overload]
    return subprocess.run(
        ["debugfs", "-R", request, f"{card}?offset={start * SECTOR}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def slot_file(card: Path, partition: str, path: str) -> str:
    """A file's text in an ext4 partition of ``card`` (debugfs, read-only)."""
    return debugfs_read(card, partition, f"cat {path}")


def partition_entries(
    card: Path, partition: str, path: str = "/"
) -> dict[str, tuple[int, int, int]]:
    """A directory of an ext4 partition of ``card``: name -> (mode, uid, gid), ``.`` for the
    directory itself (debugfs ``ls -p``, read-only)."""
    listing = debugfs_read(card, partition, f"ls -p {path}")
    entries: dict[str, tuple[int, int, int]] = {}
    for line in listing.splitlines():
        fields = line.split("/")  # /inode/mode/uid/gid/name/size/
        if len(fields) >= 7 and fields[5] not in ("..", ""):
            entries[fields[5]] = (int(fields[2], 8), int(fields[3]), int(fields[4]))
    return entries


def download_lines(console: str) -> list[str]:
    """The install helper's lines naming the bundle it checks (its full path)."""
    return re.findall(r"vaka-update-install: request [0-9a-f]+: checking (\S+)", plain(console))

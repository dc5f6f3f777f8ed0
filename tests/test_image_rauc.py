"""The A/B card (``image/build.sh amd64 --ab``): two root slots, the credentials partition and a
boot path with no loop devices: a standalone GRUB on the EFI system partition with RAUC's slot
selection (image/grub.sh), started by UEFI firmware (OVMF) in QEMU.

One card is built for the module. Offline: the GPT and its partition names (the download
partition ``vaka-data`` last, a slot's size, empty and the vaka user's), GRUB and its environment
on the FAT, RAUC's system.conf, keyring and sandbox in the root, the units and settings that put
the agent's downloads on the data partition. Then the card is powered on: GRUB boots slot A
(its console line and the try flag it leaves in grubenv say so), the unit comes online in a
central on this machine, ``rauc status`` in the guest reports slot A booted, and boot counting
marks the card's own root good.

How the test reads ``rauc status`` and boot counting in the guest (a test-only path: the unit has
no shell for anybody): one-shot services and drop-ins, written into the test's copy of slot A and
into the bundles' roots with ``debugfs``, print to the serial console. The unit as built has no
such service; nothing on the console drives the test's steps.

The updates central orders to this card are tested in ``tests/test_image_rauc_update.py``; the
card is built once for both (``tests/abcardbuild.py``).

Slow, root, network: only with ``VAKA_IMAGE_TEST=1`` (``make image-test``).
"""

import json
import os
import re
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from vaka.central.service import CentralService
from vaka.devstack.polling import WaitTimeout, wait_for
from vaka.devstack.stack import LocalStack
from vaka.provisioning.localpki import LocalPki

pytest.register_assert_rewrite("tests.imagetools", "tests.abcard")

from tests.abcard import (  # noqa: E402
    ESP,
    SECTOR,
    card_with_identity,
    esp_file,
    grubenv,
    online,
    partition_entries,
    partitions,
    plain,
    rauc_status,
    with_counting_on_console,
    with_status_service,
)
from tests.imagetools import (  # noqa: E402
    MARKS,
    Built,
    start_qemu_efi,
    vaka_ids,
)
from tests.test_image_bundle import Signer  # noqa: E402

pytest_plugins = ["tests.imagetools", "tests.abcardbuild"]

pytestmark = MARKS


def test_the_card_has_two_slots_grub_and_rauc(built_ab: Built, signer: Signer) -> None:
    parts = partitions(built_ab.disk)
    assert list(parts) == ["vaka-boot", "vaka-root-a", "vaka-root-b", "vaka-cred", "vaka-data"]
    assert parts["vaka-boot"]["type"] == ESP
    # Both slots the same size, the credentials partition small.
    assert parts["vaka-root-a"]["size"] == parts["vaka-root-b"]["size"]
    assert int(parts["vaka-cred"]["size"]) * SECTOR == 16 * 2**20  # type: ignore[call-overload]
    # The download partition last, a slot's size (a bundle is one compressed root), empty and
    # private to the vaka user, like the credentials partition.
    assert parts["vaka-data"]["size"] == parts["vaka-root-a"]["size"]
    uid, gid = vaka_ids(built_ab)
    data = partition_entries(built_ab.disk, "vaka-data")
    assert data["."] == (0o40700, uid, gid), data
    assert set(data) == {".", "lost+found"}, data
    mount = (built_ab.rootfs / "etc/systemd/system/var-lib-vaka-update.mount").read_text()
    for line in (
        "What=/dev/disk/by-partlabel/vaka-data",
        "Where=/var/lib/vaka/update",
        "Options=nodev,nosuid,noexec,noatime,errors=remount-ro",
    ):
        assert line in mount.splitlines(), line
    agent_toml = tomllib.loads((built_ab.rootfs / "etc/vaka/agent.toml").read_text())
    assert agent_toml["update"]["download_dir"] == "/var/lib/vaka/update"
    assert agent_toml["update"]["installer"] == "rauc"  # the site's own settings stay
    # The bundle server: the agent's list and the firewall's own lines name the same one.
    (server,) = agent_toml["update"]["servers"]
    host, port = server.rsplit(":", 1)
    rules = (built_ab.rootfs / "etc/nftables.conf").read_text()
    assert (
        f"define BUNDLE_V4 = {{ {host} }}" in rules
        and f"define BUNDLE_PORTS = {{ {port} }}" in rules
    )
    assert f"define BROKER_PORTS = {{ {port} }}" not in rules
    units = built_ab.rootfs / "etc/systemd/system"
    agent_dropin = (units / "vaka-agent.service.d/60-update-downloads.conf").read_text()
    assert "ReadWritePaths=/var/lib/vaka/update" in agent_dropin.splitlines()
    assert "Wants=var-lib-vaka-update.mount" in agent_dropin.splitlines()
    watch = (units / "vaka-update-install.path.d/60-update-downloads.conf").read_text()
    assert watch.splitlines()[-2:] == [
        "PathChanged=", "PathChanged=/var/lib/vaka/update/install.request"
    ]  # fmt: skip
    helper = (units / "vaka-update-install.service.d/60-update-downloads.conf").read_text()
    assert "Environment=VAKA_UPDATE_DIR=/var/lib/vaka/update" in helper.splitlines()
    rauc_dropins = units / "rauc.service.d"
    assert "ReadWritePaths=-/var/lib/vaka/update" in (
        (rauc_dropins / "60-update-downloads.conf").read_text().splitlines()
    )
    assert (rauc_dropins / "50-vaka-sandbox.conf").exists()
    assert (built_ab.rootfs / "var/lib/vaka/update").is_dir()
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

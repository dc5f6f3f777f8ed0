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

Then one power-on of four boots, every install ordered by central on this machine (a roll-out,
the signed order on the unit's ``update`` channel, the bundle from central's bundle path behind
an HTTPS front, the site's bundle server): the guest has the RAM of a small unit (2 GiB: its
``/run`` could not hold a bundle), and the unit's agent downloads v2 onto the card's data
partition and asks the image's root helper, which has RAUC install it into B and reboots; B on
trial, online, reporting 2 on slot B, marked good (audited ``update_marked_good``); a broken v3
(its agent does not start) ordered and installed into A the same way, marked bad at its health
deadline, and the unit back on B by itself, which central records as ``rolled_back``; a bundle
signed by another authority ordered, refused by RAUC in the guest, and the refusal reported with
RAUC's reason. Each bundle was on the data partition (the helper's line names its path), and the
partition is empty afterwards.

How the test reads ``rauc status`` and boot counting in the guest (a test-only path: the unit has
no shell for anybody): one-shot services and drop-ins, written into the test's copy of slot A and
into the bundles' roots with ``debugfs``, print to the serial console. The unit as built has no
such service; nothing on the console drives the test's steps.

Slow, root, network: only with ``VAKA_IMAGE_TEST=1`` (``make image-test``).
"""

import asyncio
import json
import os
import re
import shutil
import ssl
import subprocess
import time
import tomllib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import tomli_w
from aiohttp import web

from tests.nightcheck import hhmm
from vaka.central.service import CentralService
from vaka.central.settings.config import UpdatesSection
from vaka.central.updates.bundles import sha256_of
from vaka.central.updates.rollouts import BundleSpec
from vaka.devstack.central import push_unit_config
from vaka.devstack.polling import WaitTimeout, wait_for
from vaka.devstack.ports import free_port
from vaka.devstack.stack import LocalStack
from vaka.provisioning.localpki import LocalPki

pytest.register_assert_rewrite("tests.imagetools", "tests.abcard")

from tests.abcard import (  # noqa: E402
    BROKEN_AGENT,
    COUNTED_SERVICE,
    ESP,
    SECTOR,
    card_with_identity,
    download_lines,
    esp_file,
    grubenv,
    helper_dropin,
    make_bundle,
    mark_good_dropin,
    online,
    partition_entries,
    partitions,
    plain,
    rauc_status,
    slot_fields,
    slot_file,
    slot_root,
    status_blocks,
    status_json,
    with_counting_on_console,
    with_helper_on_console,
    with_status_service,
)
from tests.imagetools import (  # noqa: E402
    MARKS,
    PROFILE,
    QEMU_HOST,
    UNIT,
    Built,
    build_card,
    site_files,
    site_nftables,
    start_qemu_efi,
    vaka_ids,
)
from tests.test_image_bundle import Signer, make_signer  # noqa: E402

pytest_plugins = ["tests.imagetools"]

pytestmark = MARKS


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    """The project's update signer: its CA goes into the image as RAUC's keyring."""
    return make_signer(tmp_path_factory.mktemp("rauc-signer") / "project", "Vaka updates (test)")


@pytest.fixture(scope="module")
def bundle_port() -> int:
    """The port of central's HTTPS front on this machine (the bundle URL in the orders), fixed at
    build time: the card's firewall lets the unit reach it on the broker's address."""
    return free_port()


def bundle_rules(ruleset: str, port: int) -> str:
    """The site's bundle server in the ruleset's ``BUNDLE_*`` lines: central's HTTPS front on
    the QEMU host, on its own port (not one of the broker's)."""
    ruleset = re.sub(
        r"(?m)^define BUNDLE_V4 = .*$", f"define BUNDLE_V4 = {{ {QEMU_HOST} }}", ruleset
    )
    return re.sub(r"(?m)^define BUNDLE_PORTS = .*$", f"define BUNDLE_PORTS = {{ {port} }}", ruleset)


@pytest.fixture(scope="module")
def built_ab(
    image_pki: LocalPki,
    qemu_port: int,
    bundle_port: int,
    signer: Signer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Built]:
    """The amd64 variant with two root slots and GRUB, built once for this module. Its agent
    installs through RAUC although its devices are simulated (QEMU has no camera or GPIO, but
    real slots), downloads without a rate limit, and may reach central's HTTPS on the host. Its
    ``download_dir`` is the image's own (the data partition), not the site's."""
    base = tmp_path_factory.mktemp("image-ab")
    site = site_files(image_pki, base / "site", qemu_port)
    shutil.copy(signer.ca, site / "rauc-keyring.pem")
    config = tomllib.loads((site / "agent.toml").read_text())
    bundle_server = f"{QEMU_HOST}:{bundle_port}"
    config["update"] = {"installer": "rauc", "max_rate_kbps": 0, "servers": [bundle_server]}
    (site / "agent.toml").write_text(tomli_w.dumps(config))
    (site / "nftables.conf").write_text(bundle_rules(site_nftables(qemu_port), bundle_port))
    out = base / "out"
    try:
        yield build_card(site, out, PROFILE, "--ab")
    finally:
        if os.environ.get("VAKA_IMAGE_KEEP") != "1":
            shutil.rmtree(out, ignore_errors=True)


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


# -- updates ordered by central: v2 kept, a broken v3 rolled back, a foreign bundle refused ----


#: The update test's guest RAM: a small unit's (its /run tmpfs, a tenth, is ~200 MB).
GUEST_MIB = 2048


@dataclass(frozen=True)
class Bundles:
    """The bundles central serves: ``v2``, ``v3`` (broken agent, 60 s deadline) and ``foreign``
    (v2 re-signed by another authority), in ``directory``."""

    directory: Path
    v2: Path
    v3: Path
    foreign: Path

    def spec(self, bundle: Path, version: str) -> BundleSpec:
        return BundleSpec(version, sha256_of(bundle), bundle.stat().st_size)


def update_bundles(built: Built, directory: Path, signer: Signer, stranger: Signer) -> Bundles:
    """The three bundles, made from the built root with debugfs changes (no second build)."""
    content = directory / "bundles"
    content.mkdir()
    dropins = "/etc/systemd/system/vaka-mark-good.service.d"
    counted = directory / "vaka-test-counted.service"
    counted.write_text(COUNTED_SERVICE)
    v2 = slot_root(
        built,
        directory,
        "2",
        {
            f"{dropins}/": (directory, "755"),
            f"{dropins}/50-test.conf": (mark_good_dropin(directory, "2", None), "644"),
            "/etc/systemd/system/vaka-test-counted.service": (counted, "644"),
            "/etc/systemd/system/vaka-update-install.service.d/": (directory, "755"),
            "/etc/systemd/system/vaka-update-install.service.d/50-test.conf": (
                helper_dropin(directory),
                "644",
            ),
        },
    )
    update = make_bundle(v2, content / "vaka-2.raucb", signer, "2")
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
    broken_bundle = make_bundle(v3, content / "vaka-3.raucb", signer, "3")
    foreign = content / "foreign.raucb"
    resigned = subprocess.run(
        ["rauc", "resign", "--cert", str(stranger.cert), "--key", str(stranger.key),
         "--keyring", str(signer.ca), "--signing-keyring", str(stranger.ca),
         str(update), str(foreign)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert resigned.returncode == 0, resigned.stderr
    for bundle in (update, broken_bundle, foreign):
        print(f"{bundle.name}: {bundle.stat().st_size / 2**20:.0f} MiB")
    return Bundles(content, update, broken_bundle, foreign)


@asynccontextmanager
async def https_front(upstream: str, port: int, pki: LocalPki) -> AsyncIterator[list[str]]:
    """Central's HTTP behind TLS on ``port`` of this machine's loopback (the guest's
    ``10.0.2.2``), as a site puts central behind its HTTPS proxy. The certificate is the broker's:
    the site's server CA signed it and it names ``10.0.2.2``, so the unit checks it against the
    CA it already trusts. Yields each request's method, path and ``Range``."""
    seen: list[str] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.broker_cert, pki.broker_key)
    client = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path} {request.headers.get('Range', '')}".strip())
        headers = {k: v for k, v in request.headers.items() if k in ("Authorization", "Range")}
        async with client.get(upstream + request.path_qs, headers=headers) as answer:
            response = web.StreamResponse(status=answer.status)
            for name in ("Content-Length", "Content-Range", "Content-Type", "Accept-Ranges"):
                if name in answer.headers:
                    response.headers[name] = answer.headers[name]
            await response.prepare(request)
            async for chunk in answer.content.iter_chunked(1 << 20):
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        yield seen
    finally:
        await runner.cleanup()
        await client.close()


def mount_table(console: str) -> dict[str, list[str]]:
    """The first boot's ``findmnt`` of ``/run`` and the download directory (the status
    service's, one console line each, ``[time] findmnt[pid]: TARGET SOURCE FSTYPE SIZE
    OPTIONS``, other services' lines between them): target -> source, type, size in bytes,
    options."""
    found = re.search(r"MOUNTS-BEGIN(.*?)MOUNTS-END", plain(console), re.S)
    assert found, "no mount table on the console"
    table = {}
    for line in re.findall(r"findmnt\[\d+\]: (/\S*(?:\s+\S+){4})", found.group(1)):
        fields = line.split()
        table[fields[0]] = fields[1:5]
    assert set(table) >= {"/run", "/var/lib/vaka/update"}, found.group(1)
    return table


def unit_row(central: CentralService) -> dict[str, Any] | None:
    """The unit's row in central's fleet view of versions (``GET /api/fleet/versions``)."""
    rows = [r for r in central.rollouts.versions() if r["unit"] == UNIT]
    return rows[0] if rows else None


def unit_state(central: CentralService, rollout: int) -> dict[str, Any]:
    """The unit's state in a roll-out (``GET /api/updates/{id}``)."""
    state: dict[str, Any] = central.rollouts.status(rollout)["units"][0]
    return state


async def audit_kinds(central: CentralService) -> list[tuple[str, dict[str, Any]]]:
    entries = await asyncio.to_thread(central.audit.entries)
    return [(e.kind, e.detail) for e in entries if e.unit == UNIT and e.kind.startswith("update_")]


@pytest.mark.timeout(4800)
async def test_central_orders_an_update_kept_a_broken_one_rolled_back_a_foreign_one_refused(
    built_ab: Built,
    image_pki: LocalPki,
    qemu_port: int,
    bundle_port: int,
    signer: Signer,
    tmp_path: Path,
) -> None:
    """One power-on, four boots, every install ordered by central on the host:

    1. slot A (the card's own root, v1), online; central orders v2: the agent downloads it
       over HTTPS, the root helper has RAUC install it into B and reboots;
    2. B (v2) on trial: online, reports ``running`` 2 on slot B (central's fleet view), is marked
       good; central orders the broken v3, installed into A the same way; reboot;
    3. A (v3) on trial: the agent never starts; after the 60 s deadline A is marked bad; reboot;
    4. B again by itself, online: central concludes ``rolled_back`` (audited once). Central orders
       a bundle signed by another authority: RAUC refuses it, the unit reports the refusal with
       RAUC's reason, and slot A keeps v3.
    """
    stranger = make_signer(tmp_path / "stranger", "Somebody else's updates")
    card = card_with_identity(built_ab, tmp_path, image_pki)
    with_status_service(card, tmp_path, "vaka-root-a")
    with_counting_on_console(card, tmp_path, "vaka-root-a")
    with_helper_on_console(card, tmp_path, "vaka-root-a")
    bundles = update_bundles(built_ab, tmp_path, signer, stranger)
    stack = LocalStack(tmp_path, pki=image_pki, broker_port=qemu_port)
    stack.start_broker()
    updates = UpdatesSection(
        bundle_dir=bundles.directory, public_url=f"https://{QEMU_HOST}:{bundle_port}"
    )
    central = CentralService(stack.central_config().model_copy(update={"updates": updates}))
    console = tmp_path / "console.log"
    qemu: subprocess.Popen[bytes] | None = None
    started = time.monotonic()

    def text() -> str:
        return console.read_text(errors="replace") if console.exists() else ""

    def boots() -> list[str]:
        return re.findall(r"vaka: booting slot ([AB])", text())

    def progress(what: str) -> None:
        print(f"{time.monotonic() - started:5.0f} s  {what}", flush=True)

    async def until(check: Any, timeout: float, what: str) -> None:
        try:
            await wait_for(check, timeout, 1, what=what)
        except WaitTimeout as err:
            raise AssertionError(f"{err}; the guest's console:\n{text()[-12000:]}") from None
        progress(what)

    async def state_is(rollout: int, *wanted: str) -> dict[str, Any] | None:
        state = await asyncio.to_thread(unit_state, central, rollout)
        return state if state["state"] in wanted else None

    async def order(bundle: Path, version: str) -> int:
        made = await central.rollouts.create("t-tech", bundles.spec(bundle, version), [UNIT], 100)
        progress(f"central orders {bundle.name} as {version} (roll-out {made['rollout_id']})")
        return int(made["rollout_id"])

    try:
        await central.start()
        async with https_front(central.url, bundle_port, image_pki) as fetched:
            started = time.monotonic()
            # The RAM of a small unit: /run (a tenth of it) cannot hold a bundle, so the
            # download must go to the data partition.
            qemu = start_qemu_efi(card, console, reboot=True, memory_mib=GUEST_MIB)
            await until(lambda: online(central), 900, "v1 online from slot A")
            # Updates wait out the night-check hours: a configuration whose night is not now.
            await push_unit_config(
                central, UNIT, PROFILE, 1, timezone="Europe/Stockholm",
                night_from=hhmm(300), night_until=hhmm(360), health_interval_s=5,
            )  # fmt: skip
            await until(
                lambda: "vaka-mark-good: slot A is proven" in text(), 300, "slot A marked good"
            )
            v2 = await order(bundles.v2, "2")
            await until(lambda: len(boots()) >= 2 or None, 1800, "boot 2 (v2 installed)")
            await until(
                lambda: (
                    (row := unit_row(central)) is not None
                    and (row["system_version"], row["slot"]) == ("2", "B")
                ),
                900,
                "central's fleet view: 2 on slot B",
            )
            await until(lambda: state_is(v2, "running"), 300, "roll-out v2: running")
            await until(
                lambda: "slot B marked good, its trial is over" in text(), 600, "B marked good"
            )
            v3 = await order(bundles.v3, "3")
            await until(lambda: len(boots()) >= 3 or None, 1800, "boot 3 (v3 in A)")
            await until(lambda: len(boots()) >= 4 or None, 900, "boot 4 (back on B)")
            await until(
                lambda: state_is(v3, "rolled_back", "refused"), 900, "roll-out v3: rolled back"
            )
            await until(lambda: online(central), 300, "online from B")
            foreign = await order(bundles.foreign, "4")
            await until(
                lambda: state_is(foreign, "refused", "installed", "rebooting"),
                1200,
                "foreign bundle: refused",
            )
            # Nothing reboots after a refusal: give a wrong install the helper's delay to show.
            await asyncio.sleep(20)
            rolled = unit_state(central, v3)
            refused = unit_state(central, foreign)
            log = text()
            kinds = await audit_kinds(central)
    finally:
        if qemu is not None:
            qemu.kill()
            qemu.wait()
        await central.stop()
        stack.close()
    progress(f"bundle server requests: {fetched}")
    for kind, detail in kinds:
        print(f"audit {kind}: {json.dumps(detail)}")

    # Central's record: v2 ran, v3 came back, the foreign bundle was refused with RAUC's reason.
    assert rolled["state"] == "rolled_back", rolled
    print(f"rolled back: {rolled['reason']}\nforeign: {refused['reason']}")
    assert "previous system" in str(rolled["reason"]), rolled
    # The unit's own cause, from boot counting on slot B (vaka-mark-good's report).
    cause = "back on slot B: the agent was not online on slot A within 60 s: slot A was marked bad"
    assert cause in str(rolled["reason"]), rolled
    assert refused["state"] == "refused", refused
    assert "signature" in str(refused["reason"]).lower(), refused
    names = [kind for kind, _ in kinds]
    for step in ("ordered", "downloaded", "installed", "rebooting", "running"):
        assert f"update_{step}" in names, (step, names)
    assert names.index("update_downloaded") < names.index("update_installed")
    assert names.count("update_running") == 1, names
    # v2's trial ended well (boot counting, reported by the unit): audited once; v3's never did.
    kept = [d for kind, d in kinds if kind == "update_marked_good"]
    assert len(kept) == 1 and kept[0]["version"] == "2" and kept[0]["slot"] == "B", kept
    assert names.index("update_running") < names.index("update_marked_good")
    assert names.count("update_rolled_back") == 1, names
    assert names.count("update_ordered") == 3, names  # v2, v3, foreign: v3 never ordered again
    assert names.count("update_installed") == 2, names  # v2 and v3; the foreign one never
    refusals = [d for kind, d in kinds if kind == "update_refused"]
    assert len(refusals) == 1 and refusals[0]["version"] == "4", refusals
    # Every bundle came through central's bundle path, each once (no second install of v3).
    paths = [line.split()[1] for line in fetched]
    for bundle in (bundles.v2, bundles.v3, bundles.foreign):
        sha = bundles.spec(bundle, "x").sha256
        assert paths.count(f"/api/unit/bundles/{sha}") >= 1, (bundle.name, fetched)

    # Where the bundles were: on the data partition, never in /run, which could not hold one.
    checked = download_lines(log)
    assert len(checked) == 3, checked  # v2, v3, foreign
    for path, bundle in zip(checked, (bundles.v2, bundles.v3, bundles.foreign), strict=True):
        assert path == f"/var/lib/vaka/update/{sha256_of(bundle)}.bundle", (path, bundle.name)
    mounts = mount_table(log)
    run_size = int(mounts["/run"][2])
    assert run_size < bundles.v2.stat().st_size, mounts
    source, fstype, _, options = mounts["/var/lib/vaka/update"]
    assert source.startswith("/dev/vda5") and fstype == "ext4", mounts
    assert {"nodev", "nosuid", "noexec"} <= set(options.split(",")), options
    print(f"guest /run: {run_size / 2**20:.0f} MiB; downloads: {mounts['/var/lib/vaka/update']}")
    # Nothing of the updater's left at rest after the last install attempt (the refusal).
    left = set(partition_entries(card, "vaka-data")) - {".", "lost+found"}
    assert not left, left

    # The guest's side: four boots, A B A B, and what RAUC and boot counting said on each.
    assert boots() == ["A", "B", "A", "B"], log[-12000:]
    statuses = [status_json(b) for b in status_blocks(log)[:4]]
    assert [s["booted"] for s in statuses] == list("ABAB")
    releases = re.findall(r"vaka-test-release (\d)", log)
    assert releases[:3] == ["2", "3", "2"], releases  # v1 has none; B is v2, A then v3
    # Boot 2: v2 on trial, online, marked good (B_TRY cleared).
    assert "vaka-mark-good: slot A is proven (online since its install): marked good" in log
    assert "vaka-mark-good: slot B is on trial since its install" in log
    assert "the agent is online: slot B marked good, its trial is over" in log
    counted = [status_json(b) for b in status_blocks(log, "RAUC-COUNTED")]
    assert len(counted) == 2, log[-12000:]
    print(f"rauc status after boot counting: {json.dumps(counted)}")
    assert counted[0]["booted"] == "B"
    assert slot_fields(counted[0])["rootfs.1"]["boot_status"] == "good"
    assert "vaka: booting slot B (ORDER=B A A_OK=1 A_TRY=0 B_OK=1 B_TRY=1)" in log
    # Boot 3: v3 in A on trial, its agent never starts; marked bad after its deadline.
    assert "vaka-mark-good: slot A is on trial since its install: the agent has 60 s" in log
    # systemd's status lines carry colours and shorten the unit's name: compare without them.
    segments = re.split(r"vaka: booting slot [AB]", plain(log))[1:]
    assert "Failed to start vaka-agent" in segments[2], segments[2][-8000:]
    for healthy in (1, 3):
        assert "Failed to start vaka-agent" not in segments[healthy], healthy
    assert "the agent was not online within 60 s: slot A marked bad" in log
    assert "vaka-mark-good: back on slot B: the agent was not online on slot A within 60 s" in log
    # Boot 4: back on v2 by itself, a proven slot; RAUC says B booted, A bad.
    assert "vaka-mark-good: slot B is proven (online since its install): marked good" in log
    assert counted[1]["booted"] == "B"
    final = slot_fields(counted[1])
    assert final["rootfs.1"]["state"] == "booted" and final["rootfs.1"]["boot_status"] == "good"
    assert final["rootfs.0"]["boot_status"] == "bad"
    # The foreign bundle did not touch slot A: it still holds v3.
    assert slot_file(card, "vaka-root-a", "/etc/vaka-test-release") == "vaka-test-release 3\n"
    env = grubenv(card)
    assert env["A_OK"] == "0" and env["B_OK"] == "1", env
    assert env["B_TRY"] == "0" and env.get("VAKA_TRIAL") == "A", env

    # The slots' status comes from the status file on the credentials partition: --detailed
    # works (it mounted the booted slot a second time without it).
    detailed = status_json(status_blocks(log, "RAUC-DETAILED")[-1])
    assert slot_fields(detailed)["rootfs.1"]["slot_status"]["bundle"]["version"] == "2", detailed

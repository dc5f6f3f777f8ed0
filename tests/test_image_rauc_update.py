"""The A/B card updated by central (``image/build.sh amd64 --ab``, built once with
``tests/test_image_rauc.py``: ``tests/abcardbuild.py``).

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
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.nightcheck import hhmm
from vaka.central.service import CentralService
from vaka.central.settings.config import UpdatesSection
from vaka.central.updates.bundles import sha256_of
from vaka.devstack.central import push_unit_config
from vaka.devstack.polling import WaitTimeout, wait_for
from vaka.devstack.stack import LocalStack
from vaka.provisioning.localpki import LocalPki

pytest.register_assert_rewrite("tests.imagetools", "tests.abcard", "tests.abupdate")

from tests.abcard import (  # noqa: E402
    card_with_identity,
    download_lines,
    grubenv,
    online,
    partition_entries,
    plain,
    slot_fields,
    slot_file,
    status_blocks,
    status_json,
    with_counting_on_console,
    with_helper_on_console,
    with_status_service,
)
from tests.abupdate import (  # noqa: E402
    audit_kinds,
    https_front,
    mount_table,
    unit_row,
    unit_state,
    update_bundles,
)
from tests.imagetools import (  # noqa: E402
    MARKS,
    PROFILE,
    QEMU_HOST,
    UNIT,
    Built,
    start_qemu_efi,
)
from tests.test_image_bundle import Signer, make_signer  # noqa: E402

pytest_plugins = ["tests.imagetools", "tests.abcardbuild"]

pytestmark = MARKS


#: The update test's guest RAM: a small unit's (its /run tmpfs, a tenth, is ~200 MB).
GUEST_MIB = 2048


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

"""An update whose new system does not come up: the unit is back on its old one by boot
counting (the fake installer's failed boot), knows it installed that bundle, and reports
``rolled_back`` with boot counting's cause; central records it, audits it once, clears the
order, and the unit withdraws it: the bundle is installed once, never again. A unit of an older
release says "ordered" again instead, and central concludes the roll-back from that."""

import asyncio
import time
import uuid
from pathlib import Path

from tests.test_updates import (
    bundle_spec,
    central,  # noqa: F401 (fixture)
    daytime,
    installer,
    make_bundle,
    no_retained,
    update_section,
    wait_for_audit,
)
from vaka.central.fleet.store import EventRecord
from vaka.central.service import CentralService
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack
from vaka.protocol.topics import Channel, device_topic


async def test_a_rolled_back_update_is_concluded_audited_and_not_installed_again(
    stack: LocalStack,
    central: CentralService,  # noqa: F811
    tmp_path: Path,
) -> None:
    path, sha = make_bundle(tmp_path / "bundles", "3.0")
    unit = "u-upd-back"
    # A rate that makes the second download take seconds, as a real bundle takes minutes.
    section = update_section(tmp_path, unit, max_rate_kbps=50)
    async with stack.running_unit(unit, interval_s=1, update=section) as agent:
        await daytime(central, unit)
        await wait_for(lambda: agent.config_store.version == 1, 10, what="the config")
        installer(agent).fail_boot = True
        made = await central.rollouts.create(
            "t-tech", bundle_spec("3.0", sha, path.stat().st_size), [unit], 100
        )
        detail = await wait_for_audit(central, unit, "update_rolled_back")
        assert "came back on its previous system" in str(detail["reason"])
        # The unit's own cause, from boot counting (the fake's stand-in for vaka-mark-good).
        assert "back on slot A: the agent was not online on slot B within its health" in str(
            detail["reason"]
        )
        assert detail["version"] == "3.0"
        status = await asyncio.to_thread(central.rollouts.status, made["rollout_id"])
        assert status["units"][0]["state"] == "rolled_back"
        # The order is cleared, and the unit stops working on it.
        topic = device_topic(unit, Channel.UPDATE)
        await wait_for(lambda: no_retained(stack, topic), 10, what="the order cleared")
        updater = agent.unit.common.updater
        await wait_for(lambda: updater.order is None, 10, what="the order withdrawn")
        assert [i.sha256 for i in installer(agent).installed] == [sha]
        assert len(installer(agent).reboots) == 1
        assert installer(agent).running().version != "3.0"
        entries = await asyncio.to_thread(central.audit.entries, kind="update_rolled_back")
        assert len([e for e in entries if e.unit == unit]) == 1
        kinds = [e.kind for e in await asyncio.to_thread(central.audit.entries) if e.unit == unit]
        assert "update_ordered" in kinds and kinds.count("update_ordered") == 1, kinds


async def test_a_unit_of_an_older_release_saying_ordered_again_is_concluded_rolled_back(
    stack: LocalStack,
    central: CentralService,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Units before ``rolled_back`` say "ordered" again after the reboot: central concludes."""
    path, sha = make_bundle(tmp_path / "bundles", "3.0")
    unit = "u-upd-old"
    made = await central.rollouts.create(
        "t-tech", bundle_spec("3.0", sha, path.stat().st_size), [unit], 100
    )
    rollout = made["rollout_id"]
    for step in ("ordered", "downloaded", "installed", "rebooting", "ordered"):
        now = time.time()
        detail = {"step": step, "version": "3.0", "rollout": rollout, "sha256": sha}
        record = EventRecord(uuid.uuid4().hex, unit, now, now, "update", detail)
        central.rollouts.on_event_record(record)
    status = await asyncio.to_thread(central.rollouts.status, rollout)
    assert status["units"][0]["state"] == "rolled_back"
    assert "came back on its previous system" in status["units"][0]["reason"]
    entries = await asyncio.to_thread(central.audit.entries, kind="update_rolled_back")
    assert len([e for e in entries if e.unit == unit]) == 1
    topic = device_topic(unit, Channel.UPDATE)
    await wait_for(lambda: no_retained(stack, topic), 10, what="the order cleared")


async def test_a_kept_update_is_audited_marked_good_once(
    stack: LocalStack,
    central: CentralService,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The step after a kept trial: boot counting marks the new system good (the fake's
    ``mark_good``, vaka-mark-good's report on a unit), the unit says ``marked_good``, central
    audits ``update_marked_good`` once; the roll-out's state stays ``running``. Said again (an
    agent restarted in that boot), it is not audited again, nor is ``running``."""
    path, sha = make_bundle(tmp_path / "bundles", "4.0")
    unit = "u-upd-good"
    async with stack.running_unit(
        unit, interval_s=1, update=update_section(tmp_path, unit)
    ) as agent:
        await daytime(central, unit)
        await wait_for(lambda: agent.config_store.version == 1, 10, what="the config")
        made = await central.rollouts.create(
            "t-tech", bundle_spec("4.0", sha, path.stat().st_size), [unit], 100
        )
        rollout = made["rollout_id"]
        await wait_for_audit(central, unit, "update_running")
        # On trial until boot counting says otherwise: nothing marked good yet.
        await asyncio.sleep(0.5)
        marked = await asyncio.to_thread(central.audit.entries, kind="update_marked_good")
        assert [e for e in marked if e.unit == unit] == []
        installer(agent).mark_good()
        detail = await wait_for_audit(central, unit, "update_marked_good")
        assert detail["version"] == "4.0" and detail["slot"] == "B", detail
        assert detail["rollout"] == rollout and detail["sha256"] == sha
        assert "boot counting ended the new system's trial" in str(detail["reason"])
        status = await asyncio.to_thread(central.rollouts.status, rollout)
        assert status["units"][0]["state"] == "running"
        assert "marked good" in str(status["units"][0]["reason"])
    # The same unit says both again, as a restarted agent would with the order still retained.
    for step in ("running", "marked_good"):
        now = time.time()
        again = {"step": step, "version": "4.0", "rollout": rollout, "sha256": sha, "slot": "B"}
        central.rollouts.on_event_record(
            EventRecord(uuid.uuid4().hex, unit, now, now, "update", again)
        )
    kinds = [e.kind for e in await asyncio.to_thread(central.audit.entries) if e.unit == unit]
    assert kinds.count("update_marked_good") == 1, kinds
    assert kinds.count("update_running") == 1, kinds
    assert kinds.index("update_running") < kinds.index("update_marked_good")


async def test_marked_good_counts_only_after_running(
    central: CentralService,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A ``marked_good`` before the unit said ``running`` in that roll-out (or for none) is
    not a kept update: nothing is audited and the state does not move."""
    path, sha = make_bundle(tmp_path / "bundles", "4.0")
    unit = "u-upd-early"
    made = await central.rollouts.create(
        "t-tech", bundle_spec("4.0", sha, path.stat().st_size), [unit], 100
    )
    rollout = made["rollout_id"]
    for detail in (
        {"step": "marked_good", "version": "4.0", "rollout": rollout, "sha256": sha},
        {"step": "marked_good", "version": "4.0", "sha256": sha},
    ):
        now = time.time()
        central.rollouts.on_event_record(
            EventRecord(uuid.uuid4().hex, unit, now, now, "update", detail)
        )
    entries = await asyncio.to_thread(central.audit.entries, kind="update_marked_good")
    assert [e for e in entries if e.unit == unit] == []
    status = await asyncio.to_thread(central.rollouts.status, rollout)
    assert status["units"][0]["state"] == "ordered"

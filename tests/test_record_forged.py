"""Against the real stack: a unit's own certificate publishes forged ``call`` and
``shutter`` events (calls central never placed, a forged caller and purpose, a second start and a
late end of a real call, and a flood); none enters the audit trail or the supervision report, each
is counted, one alert is raised, only a bounded number of refusals is written down, and a real
night check right after is recorded whole."""

import asyncio
import time

import pytest

from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD, UNIT, load_directory, running_agent
from vaka.central.alerts.store import FORGED_STATUS, AlertStore
from vaka.central.alerts.unplaced import FORGED_REASON
from vaka.central.audit.reports import supervisions
from vaka.central.fleet.ingest import REFUSED_KIND
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.protocol.messages import EventMessage, EventPayload, encode
from vaka.staff.client import StaffClient, StaffError

FORGED_CALL = "central-1.f0f0f0f0f0f0f0f0"
FLOOD = 300


def forged(kind: str, **detail: str | float) -> EventMessage:
    return EventMessage(payload=EventPayload(kind=kind, detail=detail))


def a_whole_forged_call(call_id: str) -> list[EventMessage]:
    claims = {"call_id": call_id, "caller": "s-nurse", "purpose": "night_check"}
    return [
        forged("call", action="started", **claims),
        forged("shutter", state="open", **claims),
        forged("shutter", state="closed", **claims),
        forged("call", action="ended", duration_s=312.0, reason="all well", **claims),
    ]


async def publish_as_the_unit(broker: Broker, messages: list[EventMessage]) -> None:
    """Publish with the unit's own certificate (what a compromised unit can do)."""
    async with broker.client(UNIT) as unit:
        for message in messages:
            await unit.publish(f"vaka/v1/dev/{UNIT}/events", encode(message), qos=1)


def refused(central: CentralService) -> int:
    return central.ingest.refused_events[UNIT]


@pytest.mark.usefixtures("loopback_ice")
async def test_forged_call_events_never_reach_the_record(
    broker: Broker, central: CentralService
) -> None:
    await load_directory(central)
    started = time.time()
    # A whole call central never placed, and a shutter that opens outside any call.
    lies = [*a_whole_forged_call(FORGED_CALL), forged("shutter", state="open")]
    await publish_as_the_unit(broker, lies)
    await wait_for(lambda: refused(central) == len(lies), 10, what="each lie refused")

    # A real night check right after is recorded whole, with the ticket's caller and purpose.
    async with running_agent(broker) as unit, StaffClient(central.url) as staff:
        await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
        call = await staff.dial(UNIT, "night_check")
        await call.next_frame(timeout=10)
        # The first frame goes out before the shutter opens: all four are due once it is open.
        await wait_for(lambda: unit.shutter_states[-1] == "open", 10, what="the shutter open")
        await call.hangup()
        real = await call_entries(central, call.call_id)
        await wait_for(lambda: unit.agent.link.unconfirmed == 0, 10, what="receipts for the call")
        assert all(e.actor == "s-nurse" and e.purpose == "night_check" for e in real)
        # Night staff may see the alert but not close it.
        open_now = await asyncio.to_thread(AlertStore(central.engine).open_alerts)
        with pytest.raises(StaffError, match="may not close alerts"):
            await staff._api("POST", f"/api/alerts/{open_now[0].id}/clear", {"reason": "mine"})

        # The unit now lies about the real call: a second start, a second end, another caller.
        again = [
            forged("call", action="started", call_id=call.call_id, caller="s-other"),
            forged("call", action="ended", call_id=call.call_id, duration_s=9999.0),
        ]
        before = refused(central)
        await publish_as_the_unit_while_online(unit.agent.link, again)
        await wait_for(lambda: refused(central) == before + 2, 10, what="the late lies refused")

    # A flood: counted, each refused, written down only within the budget.
    flood = [m for i in range(FLOOD // 4) for m in a_whole_forged_call(f"central-1.{i:016x}")]
    before = refused(central)
    await publish_as_the_unit(broker, flood)
    await wait_for(lambda: refused(central) == before + len(flood), 30, what="the flood refused")

    entries = await asyncio.to_thread(central.audit.entries)
    forged_ids = {FORGED_CALL} | {f"central-1.{i:016x}" for i in range(FLOOD // 4)}
    recorded_lies = [e for e in entries if e.call_id in forged_ids]
    of_real = [e for e in entries if e.call_id == call.call_id and e.kind != "ticket_issued"]
    written_refusals = [e for e in entries if e.kind == REFUSED_KIND]
    report = await asyncio.to_thread(supervisions, central.audit, started - 1, time.time() + 1)
    alerts = [
        a for a in await asyncio.to_thread(AlertStore(central.engine).open_alerts)
        if a.status == FORGED_STATUS
    ]  # fmt: skip
    raised = [e for e in entries if e.kind == "alert_raised" and e.detail.get("status")]
    stored_events = await asyncio.to_thread(central.store.recent_events, UNIT, 1000)
    total_lies = len(lies) + 2 + len(flood)
    print(
        f"\nforged events sent {total_lies}: recorded {len(recorded_lies)}, "
        f"refused {refused(central)}, refusals written {len(written_refusals)}, "
        f"alerts {len(alerts)}; real call entries {len(of_real)}"
    )
    assert recorded_lies == []
    assert sorted(e.kind for e in of_real) == WHOLE
    assert [s.call_id for s in report] == [call.call_id]
    assert report[0].staff == "s-nurse" and report[0].duration_s < 60
    assert refused(central) == total_lies
    assert central.ingest.stats()["refused_call_events"][UNIT] == total_lies
    # Bounded: the refusal budget's burst (10) plus a refill or two while the test ran.
    assert 1 <= len(written_refusals) <= 12
    assert all(e.call_id is None and e.unit == UNIT for e in written_refusals)
    assert len(alerts) == 1 and alerts[0].unit == UNIT
    assert alerts[0].reasons[0] == FORGED_REASON
    assert len(raised) == 1
    # Not a single forged event in the unit's stored events either.
    lie_ids = {m.id for m in lies + again + flood}
    assert not lie_ids & {e.message_id for e in stored_events}
    assert (await asyncio.to_thread(central.audit.verify)).ok
    # The watch leaves it open; support closes it (audited), and only once.
    assert await central.alerts.clear_by_staff(alerts[0].id, "s-support", "unit replaced")
    assert not await central.alerts.clear_by_staff(alerts[0].id, "s-support", "again")
    cleared = await asyncio.to_thread(central.audit.entries, kind="alert_cleared")
    assert [(e.actor, e.detail["reason"]) for e in cleared] == [("s-support", "unit replaced")]


async def publish_as_the_unit_while_online(link: object, messages: list[EventMessage]) -> None:
    """The running agent's own session publishes them (the unit itself lies)."""
    from vaka.agent.link.session import UnitLink
    from vaka.protocol.topics import Channel

    assert isinstance(link, UnitLink)
    for message in messages:
        await link.publish(Channel.EVENTS, message)


WHOLE = ["call_ended", "call_started", "shutter_closed", "shutter_open"]


async def call_entries(central: CentralService, call_id: str) -> list:
    """The unit's four entries of a call, once all are in (sorted by kind)."""

    async def found() -> list:
        entries = await asyncio.to_thread(central.audit.entries_of_call, call_id)
        return sorted((e for e in entries if e.kind != "ticket_issued"), key=lambda e: e.kind)

    async def whole() -> bool:
        return [e.kind for e in await found()] == WHOLE

    await wait_for(whole, 15, what=f"the four entries of {call_id}")
    return await found()

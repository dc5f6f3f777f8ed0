"""Against the real stack: nothing acknowledged is lost when the broker or central dies.

Ten night checks, each with a ``kill -9`` of the broker at a different moment (before the dial,
while the camera looks, and from right at the hang-up to two seconds after it), then one with a
``kill -9`` of central (run as a process) just after the hang-up. Afterwards every call's start,
shutter open, shutter closed and end is in the audit trail exactly once, the hash chain verifies,
and the unit holds no unconfirmed event.
"""

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter

import pytest

from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD, UNIT, RunningAgent, load_directory, running_agent
from vaka.central.audit.trail import AuditLog
from vaka.central.fleet.store import SqlFleetStore
from vaka.central.service import CentralService
from vaka.central.storage.engine import open_engine
from vaka.devstack.broker import Broker
from vaka.devstack.central import running_central
from vaka.devstack.polling import WaitTimeout, wait_for
from vaka.devstack.stack import LocalStack
from vaka.errors import VakaError
from vaka.protocol.messages import EventMessage, EventPayload, encode
from vaka.staff.client import StaffClient

#: (when, seconds after it) of each broker kill
MOMENTS = [
    ("before the dial", 0.0),
    ("at the first frame", 0.0),
    ("while looking", 0.5),
    ("while looking", 1.5),
    ("at the hang-up", 0.0),
    ("after the hang-up", 0.05),
    ("after the hang-up", 0.2),
    ("after the hang-up", 0.5),
    ("after the hang-up", 1.0),
    ("after the hang-up", 2.0),
]
WHOLE = ("call_started", "shutter_open", "shutter_closed", "call_ended")


async def kill_broker(broker: Broker) -> None:
    """``kill -9`` and start again on the same port with what it autosaved."""
    await asyncio.to_thread(broker.kill)
    await asyncio.to_thread(broker.start)


async def ready(connected: asyncio.Event | None, unit: RunningAgent) -> None:
    """Central subscribed (if in this process), the unit online and idle."""
    if connected is not None:
        await asyncio.wait_for(connected.wait(), 30)
    await unit.agent.link.wait_online(30)
    calls = unit.agent.calls
    assert calls is not None
    await wait_for(lambda: calls.session is None, 30, what="the unit idle")


async def night_check(
    staff: StaffClient, unit: RunningAgent, kill: object, when: str, after: float
) -> str:
    """One night check with ``kill()`` at the moment named; the call's id."""
    assert callable(kill)
    if when == "before the dial":
        await kill()
    for _attempt in range(20):  # central may still be reconnecting after a kill
        try:
            call = await staff.dial(UNIT, "night_check")
            break
        except VakaError:
            await asyncio.sleep(0.5)
    else:
        raise AssertionError("no dial went through")
    await call.next_frame(timeout=10)
    # The first frame goes out before the shutter opens: a hang-up right at it may end the call
    # with the shutter still opening, and then there is (rightly) no "shutter open" to record.
    # Every call here waits for the open shutter before it ends, so that all four are due.
    opened = lambda: unit.shutter_states[-1] == "open"  # noqa: E731
    if when in ("at the first frame", "while looking"):
        await asyncio.sleep(after)
        await kill()  # the call lives on its media path: it goes on without the broker,
        await wait_for(opened, 10, what="the shutter open")
        await call.hangup()  # and ends when the viewer leaves (its heartbeat stops)
        calls = unit.agent.calls
        assert calls is not None
        await wait_for(lambda: calls.session is None, 15, what="the call over")
    else:
        await wait_for(opened, 10, what="the shutter open")
        await call.hangup()
        if when != "before the dial":
            await asyncio.sleep(after)
            await kill()
    return call.call_id


def exactly_once(audit: AuditLog, call_ids: list[str]) -> dict[str, Counter[str]]:
    """Per call, how often each of the four kinds is in the trail."""
    return {
        call_id: Counter(e.kind for e in audit.entries_of_call(call_id) if e.kind in WHOLE)
        for call_id in call_ids
    }


async def all_whole(audit: AuditLog, call_ids: list[str], timeout: float = 30) -> None:
    def whole() -> bool:
        counts = exactly_once(audit, call_ids)
        return all(all(c[k] >= 1 for k in WHOLE) for c in counts.values())

    async def check() -> bool:
        return await asyncio.to_thread(whole)

    # On a timeout the counts below say what is missing (a plain timeout would not).
    with contextlib.suppress(WaitTimeout):
        await wait_for(check, timeout, interval=0.2, what="every call's four entries")


@pytest.mark.usefixtures("loopback_ice")
async def test_no_acknowledged_entry_is_lost_over_broker_and_central_kills(
    stack: LocalStack, central: CentralService
) -> None:
    broker = stack.broker
    await load_directory(central)
    call_ids: list[str] = []
    started = time.monotonic()
    async with running_agent(broker) as unit:
        async with StaffClient(central.url) as staff:
            await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
            for when, after in MOMENTS:
                await ready(central.link.connected, unit)

                async def kill() -> None:
                    await kill_broker(broker)

                call_ids.append(await night_check(staff, unit, kill, when, after))
            await all_whole(central.audit, call_ids)
        assert not central.ingest.refused_events  # no resend came out of order
        broker_runs = time.monotonic() - started

        # Central as a process, on the same database and session, killed after a hang-up.
        await central.stop()
        process = stack.start_central_process()
        await ready(None, unit)
        async with StaffClient(process.url) as staff:
            await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)

            async def kill_central() -> None:
                await asyncio.to_thread(process.kill)
                await asyncio.to_thread(process.start)

            call_ids.append(await night_check(staff, unit, kill_central, "after the hang-up", 0.1))
        audit = AuditLog(open_engine(stack.central_config().database.url))
        await all_whole(audit, call_ids)
        await wait_for(lambda: unit.agent.link.unconfirmed == 0, 30, what="every event confirmed")

    counts = await asyncio.to_thread(exactly_once, audit, call_ids)
    verified = await asyncio.to_thread(audit.verify)
    for (when, after), call_id in zip([*MOMENTS, ("central killed", 0.1)], call_ids, strict=True):
        c = counts[call_id]
        print(f"{when:>20} +{after:.2f} s: " + ", ".join(f"{k} {c[k]}" for k in WHOLE))
    lost = sum(1 for c in counts.values() for k in WHOLE if c[k] == 0)
    doubled = sum(c[k] - 1 for c in counts.values() for k in WHOLE if c[k] > 1)
    print(
        f"{len(MOMENTS)} broker kills + 1 central kill in {broker_runs:.1f} s (broker runs): "
        f"{len(call_ids) * 4} entries expected, lost {lost}, doubled {doubled}; "
        f"chain {verified.entries} entries, ok={verified.ok}"
    )
    assert all(counts[c] == Counter(dict.fromkeys(WHOLE, 1)) for c in call_ids), counts
    assert verified.ok, verified.problem


async def test_centrals_session_and_subscriptions_survive_a_broker_kill(
    stack: LocalStack, central: CentralService
) -> None:
    """With central away and the broker killed and restarted, a unit's event waits at the broker
    for central's session (restored from the broker's store) and arrives when central comes back."""
    broker = stack.broker

    # The broker autosaves every second or two (when idle, Mosquitto 2.0.11 saves at most every
    # other second here): wait until it has written central's session.
    def saved_after_central() -> bool:
        log = broker.log()
        return "Saving in-memory database" in log[log.rfind("as central-1 ") :]

    await wait_for(saved_after_central, 10, what="a save after central subscribed")
    await central.stop()
    await kill_broker(broker)
    event = EventMessage(payload=EventPayload(kind="info", detail={"note": "while away"}))
    async with broker.client(UNIT) as unit:
        await unit.publish(f"vaka/v1/dev/{UNIT}/events", encode(event), qos=1)
    async with running_central(stack.central_config()) as back:

        async def arrived() -> bool:
            stored = await asyncio.to_thread(back.store.recent_events, UNIT, 10)
            return event.id in {e.message_id for e in stored}

        await wait_for(arrived, 15, what="the event kept for central's session")


async def test_an_event_central_received_but_had_not_committed_comes_again_after_a_crash(
    stack: LocalStack, central: CentralService
) -> None:
    """Central holds an event it cannot commit (the test holds the database's write lock), is
    killed with ``kill -9``, and gets the event again from the broker once it is back: it had not
    acknowledged it. With acknowledgements on receipt, the event would be gone."""
    config = stack.central_config()
    await central.stop()
    process = stack.start_central_process(config=config)
    db = config.database.url.removeprefix("sqlite:///")
    event = EventMessage(payload=EventPayload(kind="info", detail={"note": "not committed"}))
    lock = sqlite3.connect(db, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # every writer waits, then fails: nothing commits
        async with stack.broker.client(UNIT) as unit:
            await unit.publish(f"vaka/v1/dev/{UNIT}/events", encode(event), qos=1)
        await wait_for(
            lambda: "keeping" in process.log(), 30, what="central holding the uncommitted event"
        )
        await asyncio.to_thread(process.kill)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    store = SqlFleetStore(config.database.url)
    assert event.id not in {e.message_id for e in store.recent_events(UNIT, 10)}
    await asyncio.to_thread(process.start)

    async def arrived() -> bool:
        stored = await asyncio.to_thread(store.recent_events, UNIT, 10)
        return event.id in {e.message_id for e in stored}

    await wait_for(arrived, 20, what="the event delivered again to the restarted central")
    store.close()

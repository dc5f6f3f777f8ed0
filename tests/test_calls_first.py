"""Calls first: health, and the units' bookkeeping, give way while a call is being set up.

The rules of the pause (bounded, then as long again reading), the health connection holding
what arrived unread, the bookkeeping thread starting nothing, and the call relay holding from
the caller's first word: a report that reached central while a call channel was open is taken
once the channel has closed, not before.
"""

import asyncio
from pathlib import Path

from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD, load_directory
from tests.test_health_link import (
    FakeConnection,
    link_with_health,
    publish_packet,
    report,
    stored,
)
from vaka.central.broker.calls_first import CallsFirst
from vaka.central.broker.health_link import HealthSession
from vaka.central.service import CentralService
from vaka.central.storage.background import Bookkeeping
from vaka.devstack.central import running_central
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack
from vaka.protocol.topics import Channel, device_topic
from vaka.staff.client import StaffClient

UNIT = "u-health-link"  # the unit whose reports tests.test_health_link.stored reads


async def turns(n: int) -> None:
    """Let the event loop go round ``n`` times."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_set_up_pauses_health_until_the_last_one_is_released() -> None:
    gate = CallsFirst(2.0)
    first = gate.hold()
    assert not gate.free.is_set()
    second = gate.hold()
    first.release()
    assert not gate.free.is_set()  # the other set-up still goes on
    second.release()
    second.release()  # a second release changes nothing
    assert gate.free.is_set()
    stats = gate.stats()
    assert (stats["pauses"], stats["cut_short"], stats["holding"]) == (1, 0, 0)


async def test_a_long_set_up_is_cut_short_and_health_then_reads_as_long_again() -> None:
    gate = CallsFirst(0.05)
    stuck = gate.hold()  # a set-up that never ends
    await asyncio.wait_for(gate.free.wait(), 10)
    assert gate.cut_short == 1
    another = gate.hold()  # inside the reading time: health goes on
    assert gate.free.is_set() and gate.pauses == 1
    # After the reading time the set-ups still going on pause it again.
    await wait_for(lambda: not gate.free.is_set(), 10, what="a second pause")
    assert gate.pauses == 2
    stuck.release()
    another.release()
    assert gate.free.is_set()


async def test_released_after_the_media_settles_or_never_paused_when_off() -> None:
    gate = CallsFirst(2.0)
    hold = gate.hold()
    hold.release_after(0.01)
    await asyncio.wait_for(gate.free.wait(), 10)
    assert not hold.held
    hold.again()  # a TV answered after ringing: held once more, until released
    assert not gate.free.is_set() and gate.pauses == 2
    hold.release()
    assert gate.free.is_set() and gate.stats()["holding"] == 0
    off = CallsFirst(0)
    off.hold()
    assert off.free.is_set() and off.pauses == 0


async def test_health_already_read_waits_unparsed_and_unhanded_while_a_call_sets_up(
    tmp_path: Path,
) -> None:
    handed: list[bytes] = []
    link, session = link_with_health(tmp_path, lambda _t, payload: handed.append(payload))
    gate = session.calls_first = CallsFirst(2.0)
    client = session._new_client()
    connection = FakeConnection()
    client._connection = connection
    session.client = client
    hold = gate.hold()
    reading = asyncio.ensure_future(session.may_read())
    topic = device_topic(UNIT, Channel.HEALTH)
    for mid in range(1, 201):
        client._handle_packet(*publish_packet(topic, mid, b"%d" % mid))
    await turns(20)  # four turns hand over 200 reports when nothing is held
    assert handed == [] and connection.writes == [] and not reading.done()
    hold.release()
    await wait_for(lambda: len(handed) == 200, 5, what="every report handed over")
    assert handed == [b"%d" % mid for mid in range(1, 201)]
    assert connection.acked() == list(range(1, 201))
    await asyncio.wait_for(reading, 5)
    assert gate.pauses == 1 and link.stats()["unacked"] == 0


async def test_the_bookkeeping_thread_starts_nothing_while_a_call_sets_up() -> None:
    gate = CallsFirst(2.0)
    bookkeeping = Bookkeeping(may_run=gate.free)
    ran: list[str] = []
    try:
        hold = gate.hold()
        job = asyncio.ensure_future(bookkeeping.run(ran.append, "u-1"))
        await turns(20)
        assert ran == [] and not job.done()
        hold.release()
        await asyncio.wait_for(job, 10)
        assert ran == ["u-1"]
    finally:
        bookkeeping.close()


async def test_a_report_that_reached_central_during_a_set_up_is_taken_after_it(
    stack: LocalStack,
) -> None:
    """The relay holds from the moment a call channel opens. A report published then reaches
    central's health connection and waits there, decrypted and unparsed; once the channel
    closes it is parsed, committed and acknowledged."""
    config = stack.central_config()
    # the longest pause there is, so that the pause's bound never ends it in this test
    mqtt = config.mqtt.model_copy(update={"calls_first_s": 10.0})
    async with running_central(config.model_copy(update={"mqtt": mqtt})) as central:
        await _reported_during_a_set_up(stack, central)


async def _reported_during_a_set_up(stack: LocalStack, central: CentralService) -> None:
    await load_directory(central)
    await asyncio.wait_for(central.link.connected.wait(), 30)
    session = central.link.sessions[1]
    assert isinstance(session, HealthSession) and session.client is not None
    waiting = session.client._connection._protocol._hard_reader  # what arrived, not yet parsed
    engine = central.engine
    async with StaffClient(central.url) as staff:
        await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
        channel = await staff.http.ws_connect(
            f"{central.url}/api/calls", headers={"Authorization": f"Bearer {staff.token}"}
        )
        await wait_for(lambda: not central.calls_first.free.is_set(), 10, what="health paused")
        async with stack.broker.client(UNIT) as unit:
            await unit.publish(device_topic(UNIT, Channel.HEALTH), report(5), qos=1)
        # At central: still in the connection's buffer, or parsed by a read already under way
        # when the pause began; either way not handed to ingest.
        await wait_for(
            lambda: len(waiting._buffer) > 0 or session.unacked > 0, 10, what="the report here"
        )
        assert len(session.pending) == 0 and await asyncio.to_thread(stored, engine) is None
        await channel.close()  # no dial: the set-up ends

        async def taken() -> bool:
            return await asyncio.to_thread(stored, engine) == 5

        await wait_for(taken, 20, what="the report stored after the set-up")
    await wait_for(lambda: central.link.stats()["unacked"] == 0, 10, what="acknowledged")
    assert central.link.stats()["calls_first"]["holding"] == 0
    assert central.calls_first.pauses == 1

"""Against the real stack: one unit cannot take central down, and central's side cannot
take a unit down.

One unit sends the worst cases (deep nesting, a 5000-digit integer, a huge float, NaN, an
oversize payload, bytes that are not UTF-8, wrong types) on each of its channels, again and again,
while another unit completes a night check; a rogue central identity sends the same to that unit's
inbound channels. The check is recorded whole, central never reconnects, no handler fails, and
each poison message is refused and counted exactly once, on both sides.
"""

import asyncio

import pytest

from tests.conftest import TOTP_SECRET
from tests.nightcheck import OTHER_UNIT, PASSWORD, UNIT, load_directory, running_agent
from tests.test_record_forged import call_entries
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.protocol.topics import UNIT_READS, UNIT_WRITES, Channel, device_topic
from vaka.staff.client import StaffClient

ENVELOPE = b'{"v":1,"id":"0123456789abcdef","ts":'
POISON = {
    "deeply nested": b"[" * 5000 + b"]" * 5000,
    "5000-digit integer": ENVELOPE + b"9" * 5000 + b"}",
    "huge float": ENVELOPE + b"1e999999}",
    "not a number": ENVELOPE + b"NaN}",
    # past the guard's 64 KiB, under the broker's packet limit (which cuts a sender off)
    "oversize": b'{"pad":"' + b"x" * 100_000 + b'"}',
    "not UTF-8": b"\xff\xfe\x00\x80{",
    "wrong types": ENVELOPE + b'"yesterday","type":["x"],"payload":{"kind":5,"detail":[]}}',
}
ROUNDS = 3


async def send_poison(broker: Broker, identity: str, topics: list[str], rounds: int) -> int:
    """Publish every poison on every topic, ``rounds`` times; how many were sent."""
    sent = 0
    async with broker.client(identity) as client:
        for _round in range(rounds):
            for topic in topics:
                for payload in POISON.values():
                    await client.publish(topic, payload, qos=1)
                    sent += 1
            await asyncio.sleep(0.3)
    return sent


def central_refusals(central: CentralService) -> int:
    provisioner = central.provisioner
    return (
        central.ingest.refusals.total
        + central.relay.refusals.total
        + (provisioner.refusals.total if provisioner else 0)
    )


@pytest.mark.usefixtures("loopback_ice")
async def test_one_units_poison_refuses_no_other_units_night_check(
    broker: Broker, central: CentralService
) -> None:
    await load_directory(central)
    connections = central.link.connections
    before = central_refusals(central)
    from_unit = [device_topic(OTHER_UNIT, c) for c in sorted(UNIT_WRITES)]
    to_unit = [device_topic(UNIT, c) for c in sorted(UNIT_READS)]
    async with running_agent(broker) as unit, StaffClient(central.url) as staff:
        agent_before = unit.agent.link.refusals.total
        await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
        poisoning = asyncio.create_task(send_poison(broker, OTHER_UNIT, from_unit, ROUNDS))
        at_unit = asyncio.create_task(send_poison(broker, "central-2", to_unit, 1))
        call = await staff.dial(UNIT, "night_check")
        await call.next_frame(timeout=10)
        # The first frame goes out before the shutter opens: all four are due once it is open.
        await wait_for(lambda: unit.shutter_states[-1] == "open", 10, what="the shutter open")
        await call.hangup()
        entries = await call_entries(central, call.call_id)
        sent, sent_to_unit = await poisoning, await at_unit
        await wait_for(
            lambda: central_refusals(central) - before == sent, 30, what="every poison refused"
        )
        await wait_for(
            lambda: unit.agent.link.refusals.total - agent_before == sent_to_unit,
            30,
            what="every poison refused by the unit",
        )
        await asyncio.sleep(0.5)  # a double count would show by now
        refused_central = central_refusals(central) - before
        refused_unit = unit.agent.link.refusals.total - agent_before
        assert unit.agent.calls is not None and unit.agent.calls.session is None
    stats = central.link.stats()
    print(
        f"\npoison from one unit: {sent} sent on {len(UNIT_WRITES)} channels, "
        f"{refused_central} refused by central; {sent_to_unit} sent to a unit, "
        f"{refused_unit} refused by it; central connections {stats['connections']}, "
        f"handler failures {stats['handler_failures']}; the other unit's check: "
        f"{len(entries)} of 4 entries"
    )
    assert len(entries) == 4 and all(e.actor == "s-nurse" for e in entries)
    assert refused_central == sent == ROUNDS * len(UNIT_WRITES) * len(POISON)
    assert refused_unit == sent_to_unit == len(UNIT_READS) * len(POISON)
    assert central.link.connections == connections == len(central.link.sessions)  # none again
    assert stats["handler_failures"] == {}
    assert central.ingest.refusals.by_category  # with their reasons
    assert set(central.ingest.stats()["refused"]) <= {"BadMessage", "unexpected"}
    assert "unexpected" not in central.ingest.stats()["refused"]  # the guard caught each
    assert set(c.value for c in UNIT_WRITES) == {
        Channel.STATE.value,
        Channel.HEALTH.value,
        Channel.EVENTS.value,
        Channel.SIGNAL_OUT.value,
        Channel.RENEW.value,
    }

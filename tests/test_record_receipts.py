"""A unit keeps every event until central's receipt, not the broker's PUBACK: with no central to
confirm, it sends them again every ``receipt_wait_s``; once central is back and commits them, the
receipt ends that. When too many wait, the record's events (call, shutter, privacy) are the last
to be given up."""

import dataclasses
import json
from pathlib import Path

import pytest

from tests.conftest import collecting
from tests.nightcheck import UNIT
from vaka.agent.app import Agent
from vaka.agent.link.session import KEPT_LIMIT, UnitLink
from vaka.agent.link.settings import LinkSettings
from vaka.devstack.central import running_central
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack
from vaka.protocol.messages import EventMessage, EventPayload
from vaka.protocol.topics import Channel, device_topic

WAIT_S = 0.5


def quick_receipts(agent: Agent) -> None:
    agent.link.settings = dataclasses.replace(agent.link.settings, receipt_wait_s=WAIT_S)


@pytest.mark.parametrize(
    ("kind", "detail"),
    [("shutter", {"state": "closed"}), ("button", {"button": "staff"})],
    ids=["shutter", "button"],
)
async def test_the_unit_sends_an_event_again_until_centrals_receipt(
    stack: LocalStack, kind: str, detail: dict[str, str]
) -> None:
    event = EventMessage(payload=EventPayload(kind=kind, detail=detail))

    def sent(seen: list) -> int:
        return sum(1 for m in seen if json.loads(m.payload)["id"] == event.id)

    async with stack.broker.client("central-2") as watcher:
        async with collecting(watcher, device_topic(UNIT, Channel.EVENTS)) as seen:
            async with stack.running_unit(UNIT, prepare=quick_receipts) as agent:
                await agent.link.wait_online(10)
                await agent.link.publish_reliably(Channel.EVENTS, event)
                # The broker acknowledged it at once; with no central, no receipt: sent again.
                await wait_for(lambda: sent(seen) >= 3, 10, what="the event sent three times")
                assert agent.link.unconfirmed == 1
                async with running_central(stack.central_config()) as central:
                    await wait_for(lambda: agent.link.unconfirmed == 0, 15, what="the receipt")
                    stored = central.store.recent_events(UNIT, 10)
                    assert [e.message_id for e in stored if e.kind == kind] == [event.id]
    print(f"\nsent {sent(seen)} times before central's receipt (every {WAIT_S} s)")


async def test_too_many_waiting_events_give_up_the_others_before_the_record(tmp_path: Path) -> None:
    """Offline for long: the oldest events that are not the record's go first; a call event
    older than all of them stays until its receipt."""
    link = UnitLink(LinkSettings(UNIT, "nightcam", "127.0.0.1", 1, tmp_path, tmp_path, tmp_path))
    call = EventMessage(payload=EventPayload(kind="call", detail={"action": "ended"}))
    await link.publish_reliably(Channel.EVENTS, call)
    infos = [
        EventMessage(payload=EventPayload(kind="info", detail={"n": n})) for n in range(KEPT_LIMIT)
    ]
    for info in infos:
        await link.publish_reliably(Channel.EVENTS, info)
    assert link.unconfirmed == KEPT_LIMIT
    kept = set(link._kept)
    assert call.id in kept and infos[0].id not in kept and infos[-1].id in kept
    # Only record events left: then the oldest of them goes.
    shutters = [
        EventMessage(payload=EventPayload(kind="shutter", detail={"state": "open"}))
        for _ in range(KEPT_LIMIT)
    ]
    for shutter in shutters:
        await link.publish_reliably(Channel.EVENTS, shutter)
    assert list(link._kept) == [m.id for m in shutters]

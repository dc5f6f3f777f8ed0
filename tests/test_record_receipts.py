"""A unit keeps its call and shutter events until central's receipt, not the broker's PUBACK: with
no central to confirm, it sends them again every ``receipt_wait_s``; once central is back and
commits them, the receipt ends that."""

import dataclasses
import json

from tests.conftest import collecting
from tests.nightcheck import UNIT
from vaka.agent.app import Agent
from vaka.devstack.central import running_central
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack
from vaka.protocol.messages import EventMessage, EventPayload
from vaka.protocol.topics import Channel, device_topic

WAIT_S = 0.5


def quick_receipts(agent: Agent) -> None:
    agent.link.settings = dataclasses.replace(agent.link.settings, receipt_wait_s=WAIT_S)


async def test_the_unit_sends_a_call_event_again_until_centrals_receipt(
    stack: LocalStack,
) -> None:
    event = EventMessage(payload=EventPayload(kind="shutter", detail={"state": "closed"}))

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
                    assert [e.message_id for e in stored if e.kind == "shutter"] == [event.id]
    print(f"\nsent {sent(seen)} times before central's receipt (every {WAIT_S} s)")

"""Messages and reminders on a TV unit: a reminder due later wakes the TV and shows in large
type; the citizen's acknowledgement reaches central; one left alone is reported missed."""

import asyncio
import datetime as dt
import time

import pytest

from tests.tvunit import (
    DAY,
    TV,
    cec_bus,
    push_tv_config,
    running_tv,
    screen_of,
    tv_directory,
)
from vaka.agent.hw.display import TvState
from vaka.agent.ui import ButtonId, Idle, Message
from vaka.central.messages.requests import MessageRequest
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for

pytestmark = pytest.mark.timeout(60)


def _in(seconds: float) -> str:
    return dt.datetime.fromtimestamp(time.time() + seconds, dt.UTC).isoformat()


async def _status(central: CentralService, mid: str) -> str | None:
    rows = await asyncio.to_thread(central.messages.statuses, TV)
    return next((row["status"] for row in rows if row["mid"] == mid), None)


async def test_reminder_wakes_the_tv_is_acknowledged_or_missed(
    broker: Broker, central: CentralService
) -> None:
    await asyncio.to_thread(central.directory.load, tv_directory())
    member = central.directory.staff_member(DAY)
    assert member is not None
    async with running_tv(broker) as agent:
        await push_tv_config(central, agent)
        bus = cec_bus(agent)
        assert bus.state is TvState.STANDBY
        request = MessageRequest(unit=TV, kind="reminder", text="Medicin klockan 14", at=_in(2))
        row = await asyncio.to_thread(central.messages.create, member, request)
        central.messages.wake()
        await asyncio.sleep(1)
        assert not any(isinstance(s, Message) for _, s in screen_of(agent).history), "too early"
        await wait_for(lambda: isinstance(screen_of(agent).state, Message), 10)
        shown = screen_of(agent).state
        assert isinstance(shown, Message) and shown.text == "Medicin klockan 14"
        assert ("image-view-on",) in bus.sent and bus.state is TvState.ON
        screen_of(agent).press(ButtonId.ACKNOWLEDGE)

        async def acknowledged() -> bool:
            return await _status(central, row["mid"]) == "acknowledged"

        await wait_for(acknowledged, 10)
        await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 5)

        # Nobody presses: reported missed, and the TV goes back to sleep afterwards.
        request = MessageRequest(unit=TV, kind="reminder", text="Drick vatten", ack_within_s=2)
        row = await asyncio.to_thread(central.messages.create, member, request)
        central.messages.wake()
        await wait_for(lambda: isinstance(screen_of(agent).state, Message), 10)

        async def missed() -> bool:
            return await _status(central, row["mid"]) == "missed"

        await wait_for(missed, 15)
        assert isinstance(screen_of(agent).state, Idle)
        await wait_for(lambda: bus.state is TvState.STANDBY, 10)


async def test_a_message_sent_while_the_unit_was_offline_arrives_when_it_comes_online(
    broker: Broker, central: CentralService
) -> None:
    await asyncio.to_thread(central.directory.load, tv_directory())
    member = central.directory.staff_member(DAY)
    assert member is not None
    request = MessageRequest(unit=TV, kind="message", text="Vi kommer klockan 10")
    row = await asyncio.to_thread(central.messages.create, member, request)
    central.messages.wake()

    async def sent() -> bool:
        return await _status(central, row["mid"]) == "sent"

    await wait_for(sent, 10)  # to a unit that is not connected: lost on the way
    async with running_tv(broker) as agent:
        await wait_for(lambda: isinstance(screen_of(agent).state, Message), 10)
        screen_of(agent).press(ButtonId.ACKNOWLEDGE)

        async def acknowledged() -> bool:
            return await _status(central, row["mid"]) == "acknowledged"

        await wait_for(acknowledged, 10)
    # dealt with: nothing is kept to send again
    assert await asyncio.to_thread(central.messages._undelivered, TV, time.time()) == []

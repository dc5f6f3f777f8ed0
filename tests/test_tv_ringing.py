"""A TV that always answers: a ringing call is a task with its own deadline, not a blocked loop.

The real agent (headless screen), the real broker and central: a visit nobody answers stops
ringing by itself at the caller's deadline and says so ("no answer after N s"), and the unit
then takes a message and a second visit at once; while a call rings, messages arrive, a second
call is refused as busy at once, and the caller's cancel stops the ringing within a second. A
refused call is a normal outcome in central's log: one line, no traceback.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD, make_offer
from tests.tvunit import DAY, NIGHT, OUTSIDER, TV, push_tv_config, running_tv, screen_of, shown
from vaka.agent.app import Agent
from vaka.agent.call.state import CallPhase
from vaka.agent.ui import ButtonId, Idle, InCall, Incoming, Message
from vaka.central.service import CentralService
from vaka.central.settings.calls import CallLimits
from vaka.devstack.central import running_central
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack
from vaka.staff.client import StaffClient, StaffError

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def ringing_central(stack: LocalStack, ring_s: float) -> AsyncIterator[CentralService]:
    """Central whose calls ring ``ring_s`` on a TV (``[calls] ring_timeout_s``), directory
    loaded."""
    from tests.tvunit import tv_directory

    config = stack.central_config()
    # The longest pause of health for a call's set-up: only the ringing ends it (calls_first.py).
    mqtt = config.mqtt.model_copy(update={"calls_first_s": 10.0})
    config = config.model_copy(update={"calls": CallLimits(ring_timeout_s=ring_s), "mqtt": mqtt})
    async with running_central(config) as central:
        await asyncio.to_thread(central.directory.load, tv_directory())
        yield central


def ringing(agent: Agent) -> bool:
    return isinstance(screen_of(agent).state, Incoming)


def phase(agent: Agent) -> CallPhase:
    assert agent.calls is not None
    return agent.calls.state.phase


async def logged_in(staff: StaffClient, staff_id: str) -> StaffClient:
    await staff.login(staff_id, PASSWORD, totp_secret=TOTP_SECRET)
    return staff


async def test_an_unanswered_visit_leaves_the_tv_answering_messages_and_calls(
    stack: LocalStack,
) -> None:
    async with (
        ringing_central(stack, ring_s=3) as central,
        running_tv(stack.broker) as agent,
        StaffClient(central.url) as staff,
    ):
        await push_tv_config(central, agent)  # no auto-answer: only the citizen answers
        await logged_in(staff, DAY)
        started = time.monotonic()
        with pytest.raises(StaffError) as refused:
            await staff.dial(TV, purpose="video_visit")
        took = time.monotonic() - started
        # The unit gave up by itself at the caller's deadline, and said why in the real number.
        assert str(refused.value) == "call refused: no answer after 3 s"
        assert refused.value.outcome == "no_answer"
        assert 3 <= took < 5, took
        assert any(isinstance(s, Incoming) for s in shown(agent))
        assert not ringing(agent) and phase(agent) is CallPhase.IDLE
        gave_up = time.monotonic()

        # Within the next 30 s: a message is delivered and shown ...
        await staff.send_message(TV, "Kaffe klockan 15")
        await wait_for(lambda: isinstance(screen_of(agent).state, Message), 10, what="message")
        state = screen_of(agent).state
        assert isinstance(state, Message) and state.text == "Kaffe klockan 15"
        screen_of(agent).press(ButtonId.ACKNOWLEDGE)
        await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 5)

        # ... and a second visit rings and is answered.
        dial = asyncio.create_task(staff.dial(TV, purpose="video_visit"))
        await wait_for(lambda: ringing(agent), 10, what="the second visit ringing")
        screen_of(agent).press(ButtonId.ANSWER)
        call = await asyncio.wait_for(dial, 15)
        await call.next_frame()
        await wait_for(lambda: isinstance(screen_of(agent).state, InCall), 10)
        await call.hangup()
        await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 10)
        assert time.monotonic() - gave_up < 30


async def test_while_a_visit_rings_a_second_call_is_busy_messages_arrive_and_cancel_stops_it(
    stack: LocalStack,
) -> None:
    async with (
        ringing_central(stack, ring_s=30) as central,
        running_tv(stack.broker) as agent,
        StaffClient(central.url) as day,
        StaffClient(central.url) as other,
    ):
        await push_tv_config(central, agent)
        await logged_in(day, DAY)
        await logged_in(other, OUTSIDER)
        dial = asyncio.create_task(day.dial(TV, purpose="video_visit"))
        await wait_for(lambda: ringing(agent), 10, what="ringing")
        # A person answers a ringing TV: health is not held back for it meanwhile.
        gate = central.calls_first
        await wait_for(lambda: gate.free.is_set(), 5, what="health read while the TV rings")
        assert gate.pauses == 1 and gate.cut_short == 0

        # A second call while the first rings: busy, at once.
        started = time.monotonic()
        with pytest.raises(StaffError, match="busy: another call is in progress") as busy:
            await other.dial(TV, purpose="video_visit")
        assert busy.value.outcome == "busy"
        assert time.monotonic() - started < 3
        assert ringing(agent) and not dial.done()

        # A message while it rings: the unit takes it now (the call stays on the screen).
        await day.send_message(TV, "Ring mig sen")
        assert agent.tv is not None
        board = agent.tv.board
        await wait_for(lambda: board.current is not None, 10, what="the message on the unit")
        assert board.current is not None and board.current.text == "Ring mig sen"
        assert ringing(agent) and not dial.done()

        # The caller cancels: the TV stops ringing within a second.
        dial.cancel()
        cancelled = time.monotonic()
        await wait_for(lambda: not ringing(agent), 1.0, what="the TV leaving the incoming call")
        assert time.monotonic() - cancelled < 1.0
        with pytest.raises(asyncio.CancelledError):
            await dial
        await wait_for(lambda: isinstance(screen_of(agent).state, Message), 5)
        assert phase(agent) is CallPhase.IDLE
        await wait_for(lambda: "call_cancelled" in _kinds(central), 5)


def _kinds(central: CentralService) -> list[str]:
    return [e.kind for e in central.audit.entries()]


class _GoneChannel:
    """A staff channel whose far end vanished right after sending its dial request."""

    def __init__(self, dial: str) -> None:
        self.messages: list[str | None] = [dial]
        self.closed = False

    async def receive(self, timeout: float | None = None) -> str | bytes | None:
        return self.messages.pop(0) if self.messages else None

    async def send_json(self, message: dict[str, Any]) -> None:
        raise ConnectionResetError("Cannot write to closing transport")

    async def close(self) -> None:
        self.closed = True


async def test_a_refused_call_is_one_log_line_without_a_traceback(
    stack: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with ringing_central(stack, ring_s=30) as central:
        pc, sdp, _fingerprint = await make_offer()
        try:
            dial = {"type": "dial", "unit": TV, "purpose": "video_visit", "sdp": sdp}
            # Night staff may not make video visits: central refuses to a caller who has gone.
            member = central.directory.staff_member(NIGHT)
            assert member is not None
            await central.relay.handle(_GoneChannel(json.dumps(dial)), member)
            # ... and to one on a real socket that is closed at once.
            async with StaffClient(central.url) as staff:
                await logged_in(staff, NIGHT)
                async with staff.http.ws_connect(
                    f"{central.url}/api/calls",
                    headers={"Authorization": f"Bearer {staff.token}"},
                ) as ws:
                    await ws.send_json(dial)
                await asyncio.sleep(0.5)
                # And as the caller sees it, whole.
                with pytest.raises(StaffError, match="video_visit") as refused:
                    await staff.dial(TV, purpose="video_visit")
        finally:
            await pc.close()
        assert refused.value.outcome is None
        assert refused_tickets(central) == 3
    assert [r for r in caplog.records if r.exc_info] == []
    lines = [r for r in caplog.records if r.name.startswith("vaka.central.calls.")]
    refusals = [r for r in lines if "refused" in r.getMessage()]
    assert len(refusals) == 3, [r.getMessage() for r in lines]
    for record in refusals:
        assert record.levelno in (logging.INFO, logging.WARNING)
        assert "\n" not in record.getMessage() and "video_visit" in record.getMessage()


def refused_tickets(central: CentralService) -> int:
    return _kinds(central).count("ticket_refused")

"""The staff member's end of one call, as the relay (:mod:`vaka.central.calls.relay`) reads and
tells it: one read at a time from the dial to the end, and messages that reach a staff side only
if it is still there. A staff side that has gone is no error: a refused or cancelled call is a
normal outcome, logged on one line with its reason."""

import asyncio
import contextlib
import logging
from typing import Any

from vaka.central.calls.channel import StaffChannel
from vaka.errors import BadMessage
from vaka.protocol.guard import parse_json
from vaka.protocol.messages import SignalPayload
from vaka.protocol.reasons import with_code

log = logging.getLogger(__name__)

#: What the staff side sends to end the call (or cancel it while it rings).
HANGUP_TYPES = frozenset({"hangup", "cancel"})
#: What the staff side sends to ask for the clear view (:mod:`vaka.central.calls.escalation`).
ESCALATE_TYPE = "escalate"


class StaffSide:
    """The staff side's messages during one call: one ``receive`` at a time, kept across the
    call's phases (a receive that is cancelled halfway could lose a message), so that the
    socket is read — and its pings answered — from the dial to the end."""

    def __init__(self, ws: StaffChannel) -> None:
        self.ws = ws
        self.pending: asyncio.Task[str | bytes | None] = asyncio.create_task(ws.receive())
        #: set once the unit answered: only then is an escalation request heard
        self.in_call = False
        #: the reason of the last escalation request
        self.escalation_reason: str | None = None

    def said(self) -> str | None:
        """``"cancel"``, ``"left"``, ``"escalate"`` (in a call; the reason in
        :attr:`escalation_reason`) or ``None`` (nothing to act on; reading goes on), once
        :attr:`pending` is done."""
        if not self.pending.done():
            return None
        try:
            message = self.pending.result()
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            return "left"
        if message is None:
            return "left"
        self.pending = asyncio.create_task(self.ws.receive())
        if not isinstance(message, str):
            return None
        asked = _asked(message)
        if asked is None:
            return None
        if asked.get("type") in HANGUP_TYPES:
            return "cancel"
        if asked.get("type") == ESCALATE_TYPE and self.in_call:
            reason = asked.get("reason")
            self.escalation_reason = reason if isinstance(reason, str) else None
            return "escalate"
        return None

    def close(self) -> None:
        """Stop reading."""
        self.pending.cancel()


def _asked(text: str) -> dict[str, Any] | None:
    try:
        message = parse_json(text, what="call message")
    except BadMessage:
        return None
    return message if isinstance(message, dict) else None


async def say(ws: StaffChannel, message: dict[str, Any]) -> None:
    """Send ``message`` unless the staff side has gone (then there is nobody to tell)."""
    if ws.closed:
        return
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_json(message)


async def refuse(ws: StaffChannel, reason: str, call_id: str | None, **extra: Any) -> None:
    """Tell the staff side why there is no call (with its code, where ``reason`` is a
    :class:`~vaka.protocol.reasons.Reason`), and close: a normal outcome, one log line."""
    log.info("call %s refused: %s", call_id or "-", reason)
    await say(ws, {"type": "refused", "call_id": call_id, **with_code(reason), **extra})
    await ws.close()


async def close_with(ws: StaffChannel, reason: str) -> None:
    """Close a socket that never made a call (no dial request, or not one), saying why."""
    await say(ws, {"type": "refused", **with_code(reason)})
    await ws.close()


async def next_said(
    queue: asyncio.Queue[SignalPayload], staff: StaffSide, timeout: float
) -> SignalPayload | str:
    """The unit's next message, or what the staff side did first: ``"cancel"`` (it sent a
    hang-up) or ``"left"`` (its socket closed). :raises TimeoutError: neither in time."""
    from_unit = asyncio.create_task(queue.get())
    try:
        async with asyncio.timeout(timeout):
            while True:
                await asyncio.wait({from_unit, staff.pending}, return_when=asyncio.FIRST_COMPLETED)
                if from_unit.done():  # the unit first, should both have come
                    return from_unit.result()
                said = staff.said()
                if said is not None:
                    return said
    finally:
        if not from_unit.done():
            from_unit.cancel()

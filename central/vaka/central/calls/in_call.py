"""An answered call on central, until one side hangs up: hang-ups both ways, the staff side's
view escalation (:mod:`vaka.central.calls.escalation`) with the unit's answer to it, and the
unit's scene estimate of a night check (``{"type": "estimate", "level": …, "movement": …,
"person_in_bed": …}`` to the staff side, as the unit reports it)."""

import asyncio
from collections.abc import Awaitable, Callable

from vaka.central.calls import reasons
from vaka.central.calls.escalation import ViewEscalation
from vaka.central.calls.staff_side import StaffSide, say
from vaka.protocol.messages import SignalPayload
from vaka.protocol.reasons import with_code
from vaka.provisioning.tickets import TicketClaims

#: The unit's next message, or what the staff side did
#: (see :func:`~vaka.central.calls.staff_side.next_said`).
NextSaid = Callable[
    [asyncio.Queue[SignalPayload], StaffSide, float], Awaitable[SignalPayload | str]
]
SendUnit = Callable[[str, SignalPayload], Awaitable[None]]


async def follow(
    staff: StaffSide,
    claims: TicketClaims,
    queue: asyncio.Queue[SignalPayload],
    next_said: NextSaid,
    send_unit: SendUnit,
    escalation: ViewEscalation,
) -> None:
    """Until one side hangs up: the staff side's hang-up to the unit, the unit's end to the
    staff side; escalation requests to :class:`ViewEscalation`, the unit's view to the staff."""
    ws, unit, call_id = staff.ws, claims.aud, claims.cid
    staff.in_call = True
    clear = False  # the unit said its view is clear: a second escalation asks nothing more
    while True:
        said = await next_said(queue, staff, 24 * 3600)
        if isinstance(said, SignalPayload):
            if said.kind == "state" and said.estimate is not None:
                scene = {"call_id": call_id, "level": said.state, **said.estimate.model_dump()}
                await say(ws, {"type": "estimate", **scene})
                continue
            if said.kind == "state" and said.state in ("clear", "blurred"):
                clear = clear or said.state == "clear"
                view = {"type": "view", "call_id": call_id, "level": said.state}
                await say(ws, {**view, "reason": said.reason})
                continue
            if said.kind not in ("hangup", "error"):
                continue
            why = reasons.unit_ended(said.reason or said.kind)
            ended = {"type": "ended", "call_id": call_id, **with_code(why)}
            await say(ws, ended)
            await ws.close()
            return
        if said == "escalate":
            if clear:
                view = {"type": "view", "call_id": call_id, "level": "clear"}
                await say(ws, {**view, "reason": "the view is clear already"})
            else:
                await escalation.escalate(ws, claims, staff.escalation_reason)
            continue
        if said == "left":
            await send_unit(
                unit, SignalPayload(kind="hangup", call_id=call_id, reason="caller left")
            )
            return
        await send_unit(
            unit, SignalPayload(kind="hangup", call_id=call_id, reason="caller hung up")
        )
        await say(ws, {"type": "ended", "call_id": call_id, **with_code(reasons.YOU_HUNG_UP)})
        await ws.close()
        return

"""The caller's first words on a call WebSocket: a ``dial`` (after an optional ``prepare``), and
the ticket's claims for a dial that is allowed (:func:`ticket_claims`).

Reading them has one deadline from the socket's opening and refuses anything that is not a
valid dial with a reason the staff member can act on (:func:`read_dial_text`,
:func:`parse_dial`); :class:`~vaka.central.calls.relay.CallRelay` decides what follows.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaka.central.calls.channel import StaffChannel
from vaka.central.calls.staff_side import close_with
from vaka.central.circle.calls import CONTACT_PURPOSE
from vaka.central.directory.directory import StaffMember
from vaka.central.directory.policy import Authorization
from vaka.central.settings.calls import CallLimits
from vaka.errors import ProtocolError
from vaka.protocol.messages import describe_problems
from vaka.protocol.sdp import check_sdp, preferred_fingerprint
from vaka.provisioning.tickets import TicketClaims


class DialRequest(BaseModel):
    """The first WebSocket message of a call (or the second, after a ``prepare``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["dial"]
    unit: str = Field(max_length=64)
    purpose: Literal["night_check", "video_visit", "break_glass", "citizen_call", "contact_call"]
    sdp: str = Field(max_length=64 * 1024)
    reason: str | None = Field(default=None, max_length=500)
    request: str | None = Field(default=None, max_length=80)  # the citizen's request (REQ)


class DialRefused(ValueError):
    """The dial request is not one; the message says why in words a caller can act on."""


async def read_dial_text(ws: StaffChannel, opened: float, deadline_s: float) -> str | None:
    """The next text message before the dial deadline; ``None`` once the socket is closed."""
    # One deadline from the socket's opening: a receive timeout would start again after every
    # ping the client sends (aiohttp answers pings inside receive), so a socket that only pings
    # could be held open for ever.
    try:
        async with asyncio.timeout_at(opened + deadline_s):
            first = await ws.receive()
    except TimeoutError:
        await close_with(ws, f"no dial request within {deadline_s:g} s of opening")
        return None
    if not isinstance(first, str):
        await close_with(ws, "expected a dial request")
        return None
    return first


def parse_dial(text: str) -> tuple[DialRequest, str, str]:
    """The dial request, its checked SDP and the DTLS fingerprint to pin.

    :raises DialRefused: not a valid dial request, or an SDP central does not accept.
    """
    try:
        dial = DialRequest.model_validate_json(text)
        sdp = check_sdp(dial.sdp)
        return dial, sdp, preferred_fingerprint(sdp)
    except ValidationError as err:
        raise DialRefused(describe_problems(err, "request")) from None
    except ProtocolError as err:
        raise DialRefused(str(err)) from None


def ticket_claims(
    caller: StaffMember,
    dial: DialRequest,
    allowed: Authorization,
    call_id: str,
    fingerprint: str,
    now: float,
    limits: CallLimits,
) -> TicketClaims:
    """The claims of the ticket central signs for an allowed dial."""
    return TicketClaims(
        aud=dial.unit,
        sub=caller.staff_id,
        name=caller.display_name,
        role=caller.role,
        grp=allowed.group,
        purpose=dial.purpose,
        cid=call_id,
        iat=int(now),
        nbf=int(now),
        exp=int(now) + limits.ticket_ttl_s,
        win=allowed.window,
        maxd=allowed.max_duration_s,
        fp=fingerprint,
        brk=allowed.break_glass_reason,
        req=dial.request if dial.purpose in ("citizen_call", CONTACT_PURPOSE) else None,
        view=allowed.view,
        esc=allowed.may_escalate or None,
        aa=allowed.auto_answer_s,
    )

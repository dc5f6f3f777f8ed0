"""The optional first step of a call: the caller's ICE servers before it makes its offer.

aiortc has no trickle ICE, and the unit answers an offer only once, so the caller's offer must
already hold its relay candidates — and for that the caller needs its relay credential before it
creates the offer. On the call WebSocket the caller therefore first sends ``prepare`` (the
fields of ``dial`` without the SDP)::

    → {"type": "prepare", "unit": "u-1", "purpose": "night_check"}
    ← {"type": "prepared", "call_id": "central-1.…", "ice_servers": [...], "expires_at": 1700000060}
    → {"type": "dial", "unit": "u-1", "purpose": "night_check", "sdp": "…"}

Central checks the permission matrix at ``prepare`` already (no credential for a call the caller
may not make), fixes the ticket's expiry then, and mints the caller's credential with that
expiry (:mod:`vaka.central.calls.turn`); ``ice_servers`` is ``[]`` without ``[turn]``. The
``dial`` that follows on the same socket must repeat the same fields; the call keeps the call
id, the authorization and the expiry of its ``prepare``. A caller that sends ``dial`` at once
gets no relay credential, as before.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaka.central.audit.trail import AuditLog
from vaka.central.calls.channel import StaffChannel
from vaka.central.calls.staff_side import refuse
from vaka.central.calls.turn import RelayCredentials, ice_servers
from vaka.central.directory.directory import StaffMember
from vaka.central.directory.policy import Authorization, CallRefused
from vaka.protocol.messages import describe_problems
from vaka.protocol.reasons import reason_of

Purpose = Literal["night_check", "video_visit", "break_glass", "citizen_call", "contact_call"]


class PrepareRequest(BaseModel):
    """``prepare``: the dial's fields without the SDP."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["prepare"]
    unit: str = Field(max_length=64)
    purpose: Purpose
    reason: str | None = Field(default=None, max_length=500)
    request: str | None = Field(default=None, max_length=80)


class CallFields(Protocol):
    """What a ``prepare`` and a ``dial`` both name."""

    @property
    def unit(self) -> str: ...
    @property
    def purpose(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def request(self) -> str | None: ...


def dial_fields(request: CallFields) -> tuple[str, str, str | None, str | None]:
    """The fields a ``dial`` must repeat from its ``prepare``."""
    return (request.unit, request.purpose, request.reason, request.request)


class _Typed(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str = ""


def is_prepare(text: str) -> bool:
    """Whether a call WebSocket's message is a ``prepare``."""
    try:
        return _Typed.model_validate_json(text).type == "prepare"
    except ValidationError:
        return False


@dataclass(frozen=True)
class Prepared:
    """A prepared call: what was asked and allowed, when, and when its ticket ends."""

    fields: tuple[str, str, str | None, str | None]
    allowed: Authorization
    now: float
    expires_at: int


Authorize = Callable[[StaffMember, PrepareRequest, float], Awaitable[Authorization]]


async def prepare_call(
    ws: StaffChannel,
    caller: StaffMember,
    text: str,
    call_id: str,
    authorize: Authorize,
    audit: AuditLog,
    credentials: RelayCredentials,
    ticket_ttl_s: int,
) -> Prepared | None:
    """Authorize a prepared call and send the caller its ICE servers; ``None`` once refused."""
    try:
        asked = PrepareRequest.model_validate_json(text)
    except ValidationError as err:
        await _refused(ws, audit, describe_problems(err, "request"), caller.staff_id)
        return None
    now = time.time()
    try:
        allowed = await authorize(caller, asked, now)
    except CallRefused as err:
        await _refused(ws, audit, reason_of(err), caller.staff_id, asked, call_id)
        return None
    expires_at = int(now) + ticket_ttl_s
    credential = await credentials.mint(call_id, "caller", expires_at, now)
    await ws.send_json(
        {
            "type": "prepared",
            "call_id": call_id,
            "ice_servers": ice_servers(credential),
            "expires_at": expires_at,
        }
    )
    return Prepared(dial_fields(asked), allowed, now, expires_at)


async def _refused(
    ws: StaffChannel,
    audit: AuditLog,
    reason: str,
    actor: str,
    asked: PrepareRequest | None = None,
    call_id: str | None = None,
) -> None:
    def append() -> None:
        if asked is None:
            audit.append("ticket_refused", actor=actor, reason=reason)
        else:
            audit.append(
                "ticket_refused",
                actor=actor,
                unit=asked.unit,
                purpose=asked.purpose,
                call_id=call_id,
                reason=reason,
            )

    await asyncio.to_thread(append)
    await refuse(ws, reason, None)

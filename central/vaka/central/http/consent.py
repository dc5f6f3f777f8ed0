"""``GET /api/consent?citizen=…`` and ``POST /api/consent``: the consent record
(:mod:`vaka.central.directory.consent`) read and changed by staff who keep it.

Recording and withdrawing consent are for the roles that keep the care provider's records
(:data:`CONSENT_ROLES`); each change is an audit entry (``consent_given``,
``consent_withdrawn``) naming who made it, whose consent it is, the scope and, where given,
the reference to the signed form or note it rests on. A withdrawal takes effect with the next
ticket.
"""

import asyncio
import time
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaka.central.directory.consent import SCOPE_WORDS
from vaka.central.directory.spec import CITIZEN_SELF
from vaka.central.http.auth import authenticate
from vaka.central.http.deps import deps
from vaka.central.http.errors import json_error
from vaka.protocol.messages import describe_problems

#: Who may read and change the consent record.
CONSENT_ROLES = frozenset({"support", "administrator"})


class ConsentChange(BaseModel):
    """``POST /api/consent`` body."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    citizen: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    #: ``citizen`` for the citizen themself, else a cohabitant's pseudonym
    person: str = Field(default=CITIZEN_SELF, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    scope: Literal["night_check", "video_visit", "break_glass"]
    action: Literal["give", "withdraw"]
    #: where the consent (or its withdrawal) is written down: a form's reference, a note
    source: str | None = Field(default=None, max_length=200)


async def list_consent(request: web.Request) -> web.Response:
    """``GET /api/consent?citizen=c-1001``: who in the home consented to what, and withdrawals."""
    await authenticate(request, CONSENT_ROLES, action="read the consent record")
    citizen = request.query.get("citizen", "")
    directory = deps(request).directory
    if not citizen or not await asyncio.to_thread(directory.citizen_exists, citizen):
        raise json_error(404, f"no citizen {citizen[:64]!r}")
    people = await asyncio.to_thread(directory.consent.people, citizen)
    entries = await asyncio.to_thread(directory.consent.entries, citizen)
    return web.json_response({"citizen": citizen, "people": people, "consents": entries})


async def change_consent(request: web.Request) -> web.Response:
    """``POST /api/consent``: record or withdraw one person's consent to one scope (audited)."""
    member = await authenticate(request, CONSENT_ROLES, action="change the consent record")
    try:
        change = ConsentChange.model_validate_json(await request.read())
    except ValidationError as err:
        raise json_error(400, f"bad consent change: {describe_problems(err, 'body')}") from None
    directory = deps(request).directory
    if not await asyncio.to_thread(directory.citizen_exists, change.citizen):
        raise json_error(404, f"no citizen {change.citizen!r}")
    people = await asyncio.to_thread(directory.consent.people, change.citizen)
    if change.person not in people:
        raise json_error(
            400,
            f"{change.person} is not the citizen or a cohabitant of citizen {change.citizen}",
        )
    now = time.time()
    if change.action == "give":
        await asyncio.to_thread(
            directory.consent.give, change.citizen, change.person, change.scope, now
        )
        kind = "consent_given"
    else:
        withdrawn = await asyncio.to_thread(
            directory.consent.withdraw, change.citizen, change.person, change.scope, now
        )
        if not withdrawn:
            raise json_error(
                404,
                f"no consent for {SCOPE_WORDS[change.scope]} from {change.person} "
                f"of citizen {change.citizen} to withdraw",
            )
        kind = "consent_withdrawn"
    await asyncio.to_thread(
        deps(request).audit.append,
        kind,
        actor=member.staff_id,
        ts=now,
        citizen=change.citizen,
        person=change.person,
        scope=change.scope,
        source=change.source,
    )
    return web.json_response({"recorded": kind, "at": now})


def add_consent_routes(app: web.Application) -> None:
    """Mount ``GET /api/consent`` and ``POST /api/consent`` on ``app``."""
    app.router.add_get("/api/consent", list_consent)
    app.router.add_post("/api/consent", change_consent)

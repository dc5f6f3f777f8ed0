"""``/api/round``: tonight's night checks of the caller's citizens, and the outcome staff record
after each check (see :mod:`vaka.central.calls.round`)."""

import asyncio
import time
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from vaka.central.calls.round import (
    ROUND_ROLES,
    OutcomeRefused,
    OutcomeRequest,
    night_round,
    record_outcome,
)
from vaka.central.fleet.privacy_mode import PrivacyModes
from vaka.central.http.auth import authenticate, client_address
from vaka.central.http.body import json_data
from vaka.central.http.deps import deps
from vaka.central.http.errors import json_error


async def get_round(request: web.Request) -> web.Response:
    """``GET /api/round``: tonight's night checks of the caller's citizens."""
    caller = await authenticate(request, ROUND_ROLES, action="see the night round")
    d = deps(request)
    now = time.time()
    body = await asyncio.to_thread(
        night_round, d.directory, d.audit, d.store, d.thresholds, caller, d.timezone, now
    )
    if d.privacy is not None:
        await asyncio.to_thread(_with_privacy, d.privacy, body, d.timezone, now)
    return web.json_response(body)


def _with_privacy(privacy: PrivacyModes, body: dict[str, Any], timezone: str, now: float) -> None:
    """Mark each check whose unit's camera the citizen's privacy mode blocks now (blocking)."""
    for check in body.get("checks", []):
        unit = check.get("unit")
        active = privacy.active(unit, now) if unit else None
        if active is not None:
            check["privacy"] = active.view(timezone)


async def post_outcome(request: web.Request) -> web.Response:
    """``POST /api/round/outcome {call_id, unit, outcome, note?}``."""
    caller = await authenticate(request, ROUND_ROLES, action="record night-check outcomes")
    audit = deps(request).audit
    address = client_address(request)
    data = await json_data(request, "outcome")
    try:
        body = OutcomeRequest.model_validate(data)
    except ValidationError as err:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in err.errors())
        reason = f"invalid outcome: {fields} (outcome is all_well or visit_needed)"
        await asyncio.to_thread(
            audit.append, "outcome_refused", actor=caller.staff_id, reason=reason, address=address
        )
        raise json_error(400, reason) from None
    try:
        entry = await asyncio.to_thread(record_outcome, audit, caller, body, address)
    except OutcomeRefused as err:
        await asyncio.to_thread(
            audit.append,
            "outcome_refused",
            actor=caller.staff_id,
            unit=body.unit,
            call_id=body.call_id,
            reason=str(err),
            address=address,
        )
        raise json_error(err.status, str(err)) from None
    return web.json_response(
        {"call_id": body.call_id, "outcome": body.outcome, "audit_seq": entry.seq}
    )


def add_round_routes(app: web.Application) -> None:
    """Mount ``/api/round`` on ``app`` (after the staff API and the fleet API)."""
    app.router.add_get("/api/round", get_round)
    app.router.add_post("/api/round/outcome", post_outcome)

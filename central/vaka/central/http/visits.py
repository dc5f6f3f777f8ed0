"""``GET /api/visits``: the TV units the caller may visit (see :mod:`vaka.central.calls.visits`)."""

import asyncio

from aiohttp import web

from vaka.central.calls.visits import VISIT_ROLES, visits
from vaka.central.http.auth import authenticate
from vaka.central.http.deps import deps
from vaka.central.http.errors import json_error


async def list_visits(request: web.Request) -> web.Response:
    """``GET /api/visits``: ``{"visits": [{unit, citizen, groups, profile, status, online,
    reasons, last_seen}], "count"}`` — the caller's citizens' TV units."""
    member = await authenticate(request, VISIT_ROLES, action="make video visits")
    if request.query:
        unknown = ", ".join(sorted(request.query))
        raise json_error(400, f"unknown query parameter(s): {unknown}")
    d = deps(request)
    found = await asyncio.to_thread(visits, d.directory, d.store, d.thresholds, member.staff_id)
    return web.json_response({"visits": found, "count": len(found)})


def add_visit_routes(app: web.Application) -> None:
    """Mount ``GET /api/visits`` on ``app``."""
    app.router.add_get("/api/visits", list_visits)

"""``GET /api/alerts``: the alerts before night checks that a staff member may see."""

import asyncio

from aiohttp import web

from vaka.central.alerts.watch import SEE_ALL_ROLES, visible_alerts
from vaka.central.http.auth import authenticate
from vaka.central.http.deps import deps
from vaka.central.http.errors import json_error

_FLAGS = {"1": True, "true": True, "0": False, "false": False}


async def list_alerts(request: web.Request) -> web.Response:
    """``GET /api/alerts[?open=1]``: alerts the staff member may see (open ones, or the newest)."""
    member = await authenticate(request)
    unknown = set(request.query) - {"open"}
    if unknown:
        raise json_error(400, f"unknown query parameter(s): {', '.join(sorted(unknown))}")
    flag = request.query.get("open", "0").lower()
    if flag not in _FLAGS:
        raise json_error(400, "open must be 1 or 0")
    watch = deps(request).alerts
    if _FLAGS[flag]:
        found = await asyncio.to_thread(watch.store.open_alerts)
    else:
        found = await asyncio.to_thread(watch.store.recent)
    if member.role not in SEE_ALL_ROLES:
        found = await asyncio.to_thread(visible_alerts, watch.directory, member.staff_id, found)
    views = [a.view(watch.timezone) for a in found]
    return web.json_response({"alerts": views, "count": len(views)})


def add_alert_routes(app: web.Application) -> None:
    """Mount ``GET /api/alerts`` on ``app``."""
    app.router.add_get("/api/alerts", list_alerts)

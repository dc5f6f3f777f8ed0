"""``GET /api/alerts``: the alerts before night checks that a staff member may see."""

import asyncio
import json

from aiohttp import web

from vaka.central.alerts import SEE_ALL_ROLES, Alert, AlertWatch
from vaka.central.directory import Directory
from vaka.central.staff_api import authenticate

WATCH: web.AppKey[AlertWatch] = web.AppKey("alert_watch", AlertWatch)
_FLAGS = {"1": True, "true": True, "0": False, "false": False}


def _error(cls: type[web.HTTPException], reason: str) -> web.HTTPException:
    return cls(text=json.dumps({"error": reason}), content_type="application/json")


async def list_alerts(request: web.Request) -> web.Response:
    """``GET /api/alerts[?open=1]``: alerts the staff member may see (open ones, or the newest)."""
    member = await authenticate(request)
    unknown = set(request.query) - {"open"}
    if unknown:
        raise _error(
            web.HTTPBadRequest, f"unknown query parameter(s): {', '.join(sorted(unknown))}"
        )
    flag = request.query.get("open", "0").lower()
    if flag not in _FLAGS:
        raise _error(web.HTTPBadRequest, "open must be 1 or 0")
    watch = request.app[WATCH]
    if _FLAGS[flag]:
        found = await asyncio.to_thread(watch.store.open_alerts)
    else:
        found = await asyncio.to_thread(watch.store.recent)
    if member.role not in SEE_ALL_ROLES:
        found = await asyncio.to_thread(_visible, watch.directory, member.staff_id, found)
    views = [a.view(watch.timezone) for a in found]
    return web.json_response({"alerts": views, "count": len(views)})


def _visible(directory: Directory, staff_id: str, found: list[Alert]) -> list[Alert]:
    """The alerts of the staff member's groups (the unit's group, or one allowed to check)."""
    mine = directory.groups_of(staff_id)
    allowed: dict[str, set[str]] = {}
    visible = []
    for a in found:
        if a.citizen not in allowed:
            allowed[a.citizen] = directory.permitting_groups(a.citizen, "night_check", "to_unit")
        if (a.group in mine) or (mine & allowed[a.citizen]):
            visible.append(a)
    return visible


def add_alert_routes(app: web.Application, watch: AlertWatch) -> None:
    """Mount ``GET /api/alerts`` (the staff routes must be on ``app`` too, for log-in)."""
    app[WATCH] = watch
    app.router.add_get("/api/alerts", list_alerts)

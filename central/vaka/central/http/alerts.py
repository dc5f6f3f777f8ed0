"""``GET /api/alerts``: the alerts that a staff member may see; ``POST /api/alerts/{id}/clear``:
support closes one that the watch does not close by itself (a unit reporting calls that were
never placed)."""

import asyncio

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class ClearRequest(BaseModel):
    """``POST /api/alerts/{id}/clear`` body."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    reason: str = Field(min_length=1, max_length=200)


async def clear_alert(request: web.Request) -> web.Response:
    """``POST /api/alerts/{id}/clear`` ``{"reason": ...}``: close an open alert (audited)."""
    member = await authenticate(request, SEE_ALL_ROLES, action="close alerts")
    try:
        body = ClearRequest.model_validate_json(await request.read())
    except ValidationError:
        raise json_error(
            400, 'send {"reason": "<why it is closed, up to 200 characters>"}'
        ) from None
    alert_id = request.match_info["alert_id"]
    if not await deps(request).alerts.clear_by_staff(alert_id, member.staff_id, body.reason):
        raise json_error(404, f"no open alert {alert_id[:40]!r}")
    return web.json_response({"cleared": alert_id})


def add_alert_routes(app: web.Application) -> None:
    """Mount ``GET /api/alerts`` and ``POST /api/alerts/{id}/clear`` on ``app``."""
    app.router.add_get("/api/alerts", list_alerts)
    app.router.add_post("/api/alerts/{alert_id}/clear", clear_alert)

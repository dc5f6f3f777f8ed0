"""Central's HTTP side: the fleet API and a plain fleet page for the support function."""

import asyncio
import html
import time
from typing import Any

from aiohttp import web

from vaka.central.ingest import FleetIngest
from vaka.central.status import Thresholds, unit_view
from vaka.central.store import FleetStore
from vaka.errors import BadTopic
from vaka.protocol.topics import check_device_id

STORE: web.AppKey[FleetStore] = web.AppKey("store", FleetStore)
INGEST: web.AppKey[FleetIngest] = web.AppKey("ingest", FleetIngest)
THRESHOLDS: web.AppKey[Thresholds] = web.AppKey("thresholds", Thresholds)

STATUSES = ("online", "degraded", "offline")


def _error(status: int, reason: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 404: web.HTTPNotFound}[status]
    return cls(text=f'{{"error": "{reason}"}}', content_type="application/json")


async def _views(request: web.Request) -> list[dict[str, Any]]:
    store = request.app[STORE]
    records = await asyncio.to_thread(store.units)
    now = time.time()
    return [unit_view(r, now, request.app[THRESHOLDS]) for r in records]


async def list_units(request: web.Request) -> web.Response:
    """``GET /api/units[?status=online|degraded|offline]``."""
    wanted = request.query.get("status")
    unknown = set(request.query) - {"status"}
    if unknown:
        raise _error(400, f"unknown query parameter(s): {', '.join(sorted(unknown))}")
    if wanted is not None and wanted not in STATUSES:
        raise _error(400, f"status must be one of {', '.join(STATUSES)}")
    views = await _views(request)
    if wanted:
        views = [v for v in views if v["status"] == wanted]
    return web.json_response({"units": views, "count": len(views)})


async def get_unit(request: web.Request) -> web.Response:
    """``GET /api/units/{id}``: one unit with its recent events."""
    device_id = request.match_info["id"]
    try:
        check_device_id(device_id)
    except BadTopic as err:
        raise _error(400, str(err).replace('"', "'")) from None
    store = request.app[STORE]
    record = await asyncio.to_thread(store.unit, device_id)
    if record is None:
        raise _error(404, f"no unit {device_id} in the registry")
    view = unit_view(record, time.time(), request.app[THRESHOLDS])
    events = await asyncio.to_thread(store.recent_events, device_id, 20)
    view["events"] = [
        {"kind": e.kind, "detail": e.detail, "sent_at": e.sent_at, "received_at": e.received_at}
        for e in events
    ]
    return web.json_response(view)


async def stats(request: web.Request) -> web.Response:
    """``GET /api/stats``: ingest counters, refusals and latency."""
    return web.json_response(request.app[INGEST].stats())


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


async def fleet_page(request: web.Request) -> web.Response:
    """``GET /``: a plain, auto-refreshing fleet table."""
    views = await _views(request)
    now = time.time()
    counts = {s: sum(v["status"] == s for v in views) for s in STATUSES}
    rows = []
    for v in views:
        rows.append(
            "<tr class='{s}'><td>{id}</td><td>{profile}</td><td><b>{s}</b> for {ago}</td>"
            "<td>{reasons}</td><td>{version}</td></tr>".format(
                s=v["status"],
                id=html.escape(v["id"]),
                profile=html.escape(v["profile"] or "?"),
                ago=_ago(now - v["since"]),
                reasons=html.escape("; ".join(v["reasons"])) or "—",
                version=html.escape(v["agent_version"] or "?"),
            )
        )
    body = PAGE.format(
        total=len(views),
        online=counts["online"],
        degraded=counts["degraded"],
        offline=counts["offline"],
        rows="\n".join(rows) or "<tr><td colspan=5>No units have connected yet.</td></tr>",
    )
    return web.Response(text=body, content_type="text/html")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5">
<title>Vaka — fleet</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1rem; font-size: 18px; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ padding: .5rem; border-bottom: 1px solid #ccc; text-align: left; }}
tr.online b {{ color: #05683a; }} tr.degraded b {{ color: #8a5a00; }}
tr.offline b {{ color: #b00020; }}
</style></head><body>
<h1>Fleet</h1>
<p>{total} units: {online} online, {degraded} degraded, {offline} offline.</p>
<table><thead><tr><th>Unit</th><th>Profile</th><th>Status</th><th>Why</th><th>Agent</th></tr>
</thead><tbody>
{rows}
</tbody></table></body></html>
"""


def make_app(store: FleetStore, ingest: FleetIngest, thresholds: Thresholds) -> web.Application:
    """The aiohttp application (API and pages)."""
    app = web.Application(client_max_size=64 * 1024)
    app[STORE] = store
    app[INGEST] = ingest
    app[THRESHOLDS] = thresholds
    app.router.add_get("/", fleet_page)
    app.router.add_get("/api/units", list_units)
    app.router.add_get("/api/units/{id}", get_unit)
    app.router.add_get("/api/stats", stats)
    return app

"""The fleet API, a plain fleet page for the support function, the staff console's static files,
and the security headers on every answer.

The fleet API and page are for support, technicians and administrators (see
:func:`vaka.central.http.auth.authenticate`).
"""

import asyncio
import html
import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from vaka.central.audit.browse import last_calls
from vaka.central.fleet.lifecycle import Lifecycle, LifecycleRecord
from vaka.central.fleet.status import unconnected_view, unit_view
from vaka.central.http.auth import authenticate
from vaka.central.http.deps import deps
from vaka.central.http.errors import json_error
from vaka.errors import BadTopic
from vaka.protocol.topics import check_device_id

STATUSES = ("online", "degraded", "offline")
FLEET_ROLES = frozenset({"support", "technician", "administrator"})
CONSOLE_DIR = Path(__file__).parent.parent / "console"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


#: how many past health samples and calls a unit's page shows
HEALTH_SHOWN = 24
CALLS_SHOWN = 10


async def _views(request: web.Request) -> list[dict[str, Any]]:
    """Every unit the registry knows, and those enrolled that have not connected yet."""
    d = deps(request)
    records = await asyncio.to_thread(d.store.units)
    states = await asyncio.to_thread(d.standing.store.all)
    now = time.time()
    views = [
        unit_view(
            r, now, d.thresholds, states.get(r.device_id, LifecycleRecord(r.device_id, ACTIVE))
        )
        for r in records
    ]
    known = {r.device_id for r in records}
    views += [unconnected_view(s) for unit, s in states.items() if unit not in known]
    return sorted(views, key=lambda v: str(v["id"]))


ACTIVE = Lifecycle.ACTIVE


async def list_units(request: web.Request) -> web.Response:
    """``GET /api/units[?status=online|degraded|offline]``."""
    await authenticate(request, FLEET_ROLES, action="see the fleet")
    wanted = request.query.get("status")
    unknown = set(request.query) - {"status"}
    if unknown:
        raise json_error(400, f"unknown query parameter(s): {', '.join(sorted(unknown))}")
    if wanted is not None and wanted not in STATUSES:
        raise json_error(400, f"status must be one of {', '.join(STATUSES)}")
    views = await _views(request)
    if wanted:
        views = [v for v in views if v["status"] == wanted]
    return web.json_response({"units": views, "count": len(views)})


async def get_unit(request: web.Request) -> web.Response:
    """``GET /api/units/{id}``: one unit with its recent events."""
    await authenticate(request, FLEET_ROLES, action="see the fleet")
    device_id = request.match_info["id"]
    try:
        check_device_id(device_id)
    except BadTopic as err:
        raise json_error(400, str(err).replace('"', "'")) from None
    d = deps(request)
    store = d.store
    record = await asyncio.to_thread(store.unit, device_id)
    lifecycle = await d.standing.get(device_id)
    if record is None and lifecycle.since is None:
        raise json_error(404, f"no unit {device_id} in the registry")
    if record is None:
        view = unconnected_view(lifecycle)
    else:
        view = unit_view(record, time.time(), d.thresholds, lifecycle)
    events = await asyncio.to_thread(store.recent_events, device_id, 20)
    view["events"] = [
        {"kind": e.kind, "detail": e.detail, "sent_at": e.sent_at, "received_at": e.received_at}
        for e in events
    ]
    view.update(await _unit_page(request, device_id))
    return web.json_response(view)


async def _unit_page(request: web.Request, unit: str) -> dict[str, Any]:
    """What the unit's page shows beside its status: its citizen, health history, open alerts
    and last calls."""
    d = deps(request)
    history = await asyncio.to_thread(d.store.health_history, unit)
    alerts = await asyncio.to_thread(d.alerts.store.open_alerts_of, unit)
    return {
        "citizen": await asyncio.to_thread(d.directory.citizen_of, unit),
        "health_period_s": d.thresholds.health_history_period_s,
        "health_history": [
            {"sent_at": h.sent_at, "received_at": h.received_at, "health": h.payload}
            for h in history[:HEALTH_SHOWN]
        ],
        "open_alerts": [a.view(d.timezone) for a in alerts],
        "calls": await asyncio.to_thread(last_calls, d.audit, unit, CALLS_SHOWN),
    }


async def stats(request: web.Request) -> web.Response:
    """``GET /api/stats``: ingest counters, refusals and latency; the broker link's counters."""
    await authenticate(request, FLEET_ROLES, action="see the fleet")
    d = deps(request)
    refused_elsewhere = {
        "signal/out": d.relay.refusals.total,
        "enrol and renew": d.provisioner.refusals.total if d.provisioner else 0,
    }
    return web.json_response(
        {**d.ingest.stats(), "link": d.link.stats(), "refused_elsewhere": refused_elsewhere}
    )


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
    """``GET /fleet``: a plain, auto-refreshing fleet table (no script)."""
    try:
        await authenticate(request, FLEET_ROLES, action="see the fleet")
    except web.HTTPException as err:
        return web.Response(
            status=err.status,
            content_type="text/html",
            text=REFUSED_PAGE.format(reason=html.escape(_reason(err))),
        )
    views = await _views(request)
    now = time.time()
    counts = {s: sum(v["status"] == s for v in views) for s in STATUSES}
    rows = []
    for v in views:
        rows.append(
            "<tr class='{s}'><td>{id}</td><td>{profile}</td><td><b>{s}</b> for {ago} ({life})</td>"
            "<td>{reasons}</td><td>{version}</td></tr>".format(
                s=v["status"],
                life=v["lifecycle"]["state"],
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
<link rel="stylesheet" href="/console/console.css">
</head><body class="plain">
<p><a href="/">Back to the console</a></p>
<h1>Fleet</h1>
<p>{total} units: {online} online, {degraded} degraded, {offline} offline.</p>
<table><thead><tr><th>Unit</th><th>Profile</th><th>Status</th><th>Why</th><th>Agent</th></tr>
</thead><tbody>
{rows}
</tbody></table></body></html>
"""


def _reason(err: web.HTTPException) -> str:
    try:
        return str(json.loads(err.text or "{}")["error"])
    except (ValueError, KeyError):
        return err.reason


REFUSED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Vaka — log in first</title>
<link rel="stylesheet" href="/console/console.css">
</head><body class="plain"><h1>Fleet</h1><p class="error">{reason}</p>
<p><a class="button" href="/">Log in to the console</a></p></body></html>
"""


async def console_page(request: web.Request) -> web.FileResponse:
    """``GET /``: the staff console (a static page; its scripts use the API)."""
    return web.FileResponse(CONSOLE_DIR / "index.html")


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer: no framing, no referrer, no inline script; no caching of the API."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.path.startswith("/api/") or request.path in ("/", "/fleet"):
        headers["Cache-Control"] = "no-store"


def add_fleet_routes(app: web.Application) -> None:
    """Mount the console, the fleet page and the fleet API on ``app``."""
    app.router.add_get("/", console_page)
    app.router.add_static("/console/", CONSOLE_DIR, follow_symlinks=False)
    app.router.add_get("/fleet", fleet_page)
    app.router.add_get("/api/units", list_units)
    app.router.add_get("/api/units/{id}", get_unit)
    app.router.add_get("/api/stats", stats)

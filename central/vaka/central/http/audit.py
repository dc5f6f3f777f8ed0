"""Reading the audit trail and the record of performed supervisions over HTTP.

``GET /api/audit?since=&until=&kind=&unit=&actor=&limit=&before=`` (support, administrator): entries
newest first, a page at a time (``before`` = the ``next_before`` of the previous page), with the
hash chain's verification (``vaka-central audit verify``) on the first page;
``GET /api/audit.csv?since=&until=&kind=&unit=`` the newest 10 000 of them as a CSV download.

``GET /api/reports/supervisions?since=&until=`` (administrator): performed supervisions as JSON;
``GET /api/reports/supervisions.csv?since=&until=`` the same as a CSV download.

``since`` and ``until`` are a date (``2024-03-01``, the whole day in ``[calls] timezone``; as
``until`` it includes that day), a local date and time (``2024-03-01T22:00``), a time with an
offset, or seconds since the epoch. Without them the report covers the last 7 days.
"""

import asyncio
import dataclasses
import datetime as dt
import re
import time
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from vaka.central.audit.browse import audit_csv, audit_page
from vaka.central.audit.reports import supervisions, supervisions_csv
from vaka.central.http.auth import authenticate
from vaka.central.http.deps import deps
from vaka.central.http.errors import json_error

AUDIT_ROLES = frozenset({"support", "administrator"})
REPORT_ROLES = frozenset({"administrator"})
MAX_LIMIT = 500
#: entries in one audit CSV download (the newest; narrow the range for older ones)
CSV_LIMIT = 10_000
DEFAULT_LIMIT = 50
REPORT_DEFAULT_DAYS = 7
_KIND = re.compile(r"^[a-z_]{1,48}$")
_UNIT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class BadQuery(ValueError):
    """A query parameter is not understood; the message says which and why."""


def parse_time(name: str, text: str, timezone: str, *, end: bool = False) -> float:
    """A query's time as epoch seconds; a bare date as ``end`` means the end of that day."""
    value = text.strip()
    if re.fullmatch(r"\d{1,12}(\.\d+)?", value):
        return float(value)
    zone = ZoneInfo(timezone)
    try:
        if _DATE.match(value):
            day = dt.date.fromisoformat(value)
            if end:
                day += dt.timedelta(days=1)
            return dt.datetime.combine(day, dt.time(), zone).timestamp()
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadQuery(
            f"{name} must be a date (2024-03-01), a date and time (2024-03-01T22:00) or "
            f"seconds since the epoch, not {value[:40]!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return when.timestamp()


def _range(
    query: Any, timezone: str, default_days: float | None
) -> tuple[float | None, float | None]:
    since = query.get("since") or None
    until = query.get("until") or None
    start = parse_time("since", since, timezone) if since else None
    stop = parse_time("until", until, timezone, end=True) if until else None
    if default_days is not None:
        stop = stop if stop is not None else time.time()
        start = start if start is not None else stop - default_days * 86400
    if start is not None and stop is not None and start >= stop:
        raise BadQuery("since must be before until")
    return start, stop


def _check_known(query: Any, known: set[str]) -> None:
    unknown = set(query) - known
    if unknown:
        raise BadQuery(f"unknown query parameter(s): {', '.join(sorted(unknown))}")


def _audit_filters(
    q: Any, timezone: str
) -> tuple[float | None, float | None, str | None, str | None]:
    """``since``, ``until``, ``kind`` and ``unit`` of an audit query, or :class:`BadQuery`."""
    since, until = _range(q, timezone, None)
    kind = q.get("kind") or None
    if kind is not None and not _KIND.match(kind):
        raise BadQuery("kind is a word like call_ended or ticket_issued")
    unit = q.get("unit") or None
    if unit is not None and not _UNIT.match(unit):
        raise BadQuery("unit is a unit id like nc-0042")
    return since, until, kind, unit


async def get_audit(request: web.Request) -> web.Response:
    """``GET /api/audit``: see the module docstring."""
    await authenticate(request, AUDIT_ROLES, action="read the audit trail")
    q = request.query
    timezone = deps(request).timezone
    try:
        _check_known(q, {"since", "until", "kind", "unit", "actor", "limit", "before"})
        since, until, kind, unit = _audit_filters(q, timezone)
        actor = q.get("actor") or None
        if actor is not None and not _UNIT.match(actor):
            raise BadQuery("actor is a staff id like n-anna")
        limit = int(q.get("limit") or DEFAULT_LIMIT)
        before = int(q["before"]) if q.get("before") else None
    except ValueError as err:
        reason = str(err) if isinstance(err, BadQuery) else "limit and before are whole numbers"
        raise json_error(400, reason) from None
    if not 1 <= limit <= MAX_LIMIT:
        raise json_error(400, f"limit must be 1 to {MAX_LIMIT}")
    page = await asyncio.to_thread(
        audit_page,
        deps(request).audit,
        since=since,
        until=until,
        kind=kind,
        unit=unit,
        actor=actor,
        limit=limit,
        before=before,
    )
    page["timezone"] = timezone
    return web.json_response(page)


async def get_audit_csv(request: web.Request) -> web.Response:
    """``GET /api/audit.csv?since=&until=&kind=&unit=``: the newest :data:`CSV_LIMIT` matching
    entries as a CSV attachment."""
    await authenticate(request, AUDIT_ROLES, action="read the audit trail")
    timezone = deps(request).timezone
    try:
        _check_known(request.query, {"since", "until", "kind", "unit"})
        since, until, kind, unit = _audit_filters(request.query, timezone)
    except BadQuery as err:
        raise json_error(400, str(err)) from None
    page = await asyncio.to_thread(
        audit_page,
        deps(request).audit,
        since=since,
        until=until,
        kind=kind,
        unit=unit,
        limit=CSV_LIMIT,
        before=None,
    )
    return web.Response(
        text=audit_csv(page["entries"]),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )


async def _report_range(request: web.Request) -> tuple[float, float]:
    await authenticate(request, REPORT_ROLES, action="read the supervision report")
    try:
        _check_known(request.query, {"since", "until"})
        since, until = _range(request.query, deps(request).timezone, REPORT_DEFAULT_DAYS)
    except BadQuery as err:
        raise json_error(400, str(err)) from None
    assert since is not None and until is not None
    return since, until


async def get_supervisions(request: web.Request) -> web.Response:
    """``GET /api/reports/supervisions?since=&until=``: performed supervisions (JSON)."""
    since, until = await _report_range(request)
    rows = await asyncio.to_thread(supervisions, deps(request).audit, since, until)
    return web.json_response(
        {
            "since": since,
            "until": until,
            "timezone": deps(request).timezone,
            "supervisions": [dataclasses.asdict(r) for r in rows],
        }
    )


def _stamp(ts: float, timezone: str) -> str:
    return dt.datetime.fromtimestamp(ts, ZoneInfo(timezone)).strftime("%Y-%m-%d")


async def get_supervisions_csv(request: web.Request) -> web.Response:
    """``GET /api/reports/supervisions.csv?since=&until=``: the same as a CSV attachment."""
    since, until = await _report_range(request)
    rows = await asyncio.to_thread(supervisions, deps(request).audit, since, until)
    timezone = deps(request).timezone
    name = f"supervisions-{_stamp(since, timezone)}-{_stamp(until - 1, timezone)}.csv"
    return web.Response(
        text=supervisions_csv(rows),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def add_audit_routes(app: web.Application) -> None:
    """Mount the audit and report API on ``app`` (after the staff API)."""
    app.router.add_get("/api/audit", get_audit)
    app.router.add_get("/api/audit.csv", get_audit_csv)
    app.router.add_get("/api/reports/supervisions", get_supervisions)
    app.router.add_get("/api/reports/supervisions.csv", get_supervisions_csv)

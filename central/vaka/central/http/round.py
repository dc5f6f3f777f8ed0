"""The night round: tonight's scheduled night checks of the caller's citizens, and the outcome
staff record after each check.

``GET /api/round`` lists, for night staff, the night checks of the citizens their groups may
check (``night_check`` permissions); administrators see every citizen's. *Tonight* is the night
that contains the current moment, from 12:00 to 12:00 local time (``[calls] timezone``); a check
whose window is still open belongs to it even when it started before noon.

``POST /api/round/outcome`` records what the staff member saw — ``all_well`` or
``visit_needed`` (with an optional note) — as an audit entry ``supervision_outcome`` on the
call; :mod:`vaka.central.reports` puts it in the record of performed supervisions.
"""

import asyncio
import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from vaka.central.audit import AuditEntry, AuditLog
from vaka.central.audit import audit as audit_table
from vaka.central.directory import Directory, StaffMember, assignments, permissions, schedules
from vaka.central.staff_api import AUDIT, DIRECTORY, RELAY, authenticate, client_address
from vaka.central.status import Thresholds, derive_status
from vaka.central.store import FleetStore
from vaka.central.web import STORE, THRESHOLDS

ROUND_ROLES = frozenset({"night_staff", "administrator"})
#: the audit kind of a recorded outcome
OUTCOME_KIND = "supervision_outcome"
OUTCOMES = ("all_well", "visit_needed")
#: the night runs from this local hour to the same hour the next day
NIGHT_STARTS_HOUR = 12


class OutcomeRequest(BaseModel):
    """``POST /api/round/outcome`` body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    call_id: str = Field(min_length=1, max_length=80)
    unit: str = Field(min_length=1, max_length=64)
    outcome: Literal["all_well", "visit_needed"]
    note: str | None = Field(default=None, max_length=500)


@dataclass(frozen=True)
class CheckTime:
    """One occurrence of a scheduled night check (aware local datetimes)."""

    at: dt.datetime
    start: dt.datetime
    end: dt.datetime


def night_bounds(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The night containing ``now`` (aware, local): from 12:00 to 12:00 the next day."""
    start = now.replace(hour=NIGHT_STARTS_HOUR, minute=0, second=0, microsecond=0)
    if now < start:
        start -= dt.timedelta(days=1)
    return start, start + dt.timedelta(days=1)


def tonights_checks(schedule: list[tuple[int, int]], now: dt.datetime) -> list[CheckTime]:
    """The occurrences of ``schedule`` (minute of day, tolerance) that belong to tonight, in
    order: those whose time falls in the night containing ``now``, and any whose window holds
    ``now``."""
    night_start, night_end = night_bounds(now)
    found: dict[dt.datetime, CheckTime] = {}
    for minute, tolerance in schedule:
        for day in (-1, 0, 1, 2):
            midnight = night_start.replace(hour=0) + dt.timedelta(days=day)
            # Wall-clock arithmetic in the zone (a DST night has 23 or 25 hours).
            at = (midnight.replace(tzinfo=None) + dt.timedelta(minutes=minute)).replace(
                tzinfo=now.tzinfo
            )
            spread = dt.timedelta(minutes=tolerance)
            if night_start <= at < night_end or at - spread <= now <= at + spread:
                found[at] = CheckTime(at, at - spread, at + spread)
    return [found[k] for k in sorted(found)]


def _citizens_checked_by(directory: Directory, groups: set[str] | None) -> dict[str, list[str]]:
    """citizen -> the caller's groups allowed night checks (``None``: every group)."""
    query = select(permissions.c.citizen_id, permissions.c.group_id).where(
        permissions.c.purpose == "night_check", permissions.c.direction == "to_unit"
    )
    out: dict[str, list[str]] = {}
    with directory.engine.connect() as conn:
        for citizen, group in conn.execute(query):
            if groups is None or group in groups:
                out.setdefault(citizen, []).append(group)
    return out


def _units_of(directory: Directory, citizens: list[str]) -> dict[str, list[tuple[str, str]]]:
    """citizen -> [(unit, profile)] for the units in their home."""
    query = select(assignments.c.citizen_id, assignments.c.device_id, assignments.c.profile).where(
        assignments.c.citizen_id.in_(citizens)
    )
    out: dict[str, list[tuple[str, str]]] = {}
    with directory.engine.connect() as conn:
        for citizen, unit, profile in conn.execute(query.order_by(assignments.c.device_id)):
            out.setdefault(citizen, []).append((unit, profile or ""))
    return out


def _schedules_of(directory: Directory, citizens: list[str]) -> dict[str, list[tuple[int, int]]]:
    query = (
        select(schedules.c.citizen_id, schedules.c.at_minute, schedules.c.tolerance_min)
        .where(schedules.c.citizen_id.in_(citizens), schedules.c.purpose == "night_check")
        .order_by(schedules.c.at_minute)
    )
    out: dict[str, list[tuple[int, int]]] = {}
    with directory.engine.connect() as conn:
        for citizen, minute, tolerance in conn.execute(query):
            out.setdefault(citizen, []).append((minute, tolerance))
    return out


@dataclass(frozen=True)
class _Performed:
    """Tonight's night-check calls from the audit trail, by their ticket window."""

    calls: dict[str, AuditEntry]  # call id -> ticket_issued
    ended: dict[str, AuditEntry]  # call id -> call_ended
    outcomes: dict[str, AuditEntry]  # call id -> supervision_outcome


def _performed(audit: AuditLog, since: float) -> _Performed:
    tickets = {
        e.call_id: e
        for e in audit.entries(since=since, kind="ticket_issued")
        if e.call_id and e.purpose == "night_check"
    }
    ended = {
        e.call_id: e for e in audit.entries(since=since, kind="call_ended") if e.call_id in tickets
    }
    outcomes = {e.call_id: e for e in audit.entries(since=since, kind=OUTCOME_KIND) if e.call_id}
    return _Performed(tickets, ended, outcomes)


def _unit_state(store: FleetStore, unit: str, now: float, thresholds: Thresholds) -> dict[str, Any]:
    record = store.unit(unit)
    if record is None:
        return {"status": "offline", "reasons": ["never connected"], "since": None}
    status = derive_status(record, now, thresholds)
    return {"status": status.status, "reasons": status.reasons, "since": status.since}


def _hhmm(when: dt.datetime) -> str:
    return when.strftime("%H:%M")


def night_round(
    directory: Directory,
    audit: AuditLog,
    store: FleetStore,
    thresholds: Thresholds,
    caller: StaffMember,
    timezone: str,
    now: float,
) -> dict[str, Any]:
    """The body of ``GET /api/round`` for ``caller`` (blocking)."""
    zone = ZoneInfo(timezone)
    local_now = dt.datetime.fromtimestamp(now, zone)
    night_start, night_end = night_bounds(local_now)
    groups = None if caller.role == "administrator" else directory.groups_of(caller.staff_id)
    citizens = _citizens_checked_by(directory, groups)
    names = sorted(citizens)
    units = _units_of(directory, names)
    plans = _schedules_of(directory, names)
    # Tickets of tonight's windows may have been issued up to a day before the night ends.
    done = _performed(audit, night_start.timestamp() - 6 * 3600)
    states: dict[str, dict[str, Any]] = {}
    checks: list[dict[str, Any]] = []
    for citizen in names:
        for occurrence in tonights_checks(plans.get(citizen, []), local_now):
            window = [int(occurrence.start.timestamp()), int(occurrence.end.timestamp())]
            for unit, profile in units.get(citizen, []) or [("", "")]:
                if unit and unit not in states:
                    states[unit] = _unit_state(store, unit, now, thresholds)
                calls = [
                    t
                    for t in done.calls.values()
                    if t.unit == unit and list(t.detail.get("window") or []) == window
                ]
                performed = [t for t in calls if t.call_id in done.ended]
                outcome = next(
                    (
                        done.outcomes[t.call_id]
                        for t in reversed(calls)
                        if t.call_id in done.outcomes
                    ),
                    None,
                )
                if now < window[0]:
                    timing = "upcoming"
                elif now <= window[1]:
                    timing = "open"
                else:
                    timing = "closed"
                checks.append(
                    {
                        "citizen": citizen,
                        "unit": unit or None,
                        "profile": profile or None,
                        "groups": sorted(citizens[citizen]),
                        "at": occurrence.at.isoformat(timespec="minutes"),
                        "time": _hhmm(occurrence.at),
                        "window": window,
                        "window_text": f"{_hhmm(occurrence.start)}\u2013{_hhmm(occurrence.end)}",
                        "timing": timing,
                        "unit_state": states.get(unit)
                        if unit
                        else {"status": "offline", "reasons": ["no unit assigned"], "since": None},
                        "done": bool(performed) or outcome is not None,
                        "calls": [t.call_id for t in calls],
                        "outcome": outcome.detail.get("outcome") if outcome else None,
                        "outcome_by": outcome.actor if outcome else None,
                    }
                )
    checks.sort(key=lambda c: (c["at"], c["citizen"], c["unit"] or ""))
    return {
        "now": now,
        "timezone": timezone,
        "night": [
            night_start.isoformat(timespec="minutes"),
            night_end.isoformat(timespec="minutes"),
        ],
        "staff": caller.staff_id,
        "checks": checks,
    }


class OutcomeRefused(ValueError):
    """An outcome cannot be recorded; the message says why. ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _entries_of_call(log_: AuditLog, call_id: str) -> list[dict[str, Any]]:
    """The audit rows of one call (the column is indexed), in order."""
    query = select(audit_table).where(audit_table.c.call_id == call_id).order_by(audit_table.c.seq)
    with log_.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def record_outcome(
    audit: AuditLog, caller: StaffMember, body: OutcomeRequest, address: str
) -> AuditEntry:
    """Append ``supervision_outcome`` for the caller's own night-check call (blocking)."""
    of_call = _entries_of_call(audit, body.call_id)
    ticket = next((e for e in of_call if e["kind"] == "ticket_issued"), None)
    if ticket is None:
        raise OutcomeRefused(f"no call {body.call_id} was started", 404)
    if ticket["unit"] != body.unit:
        raise OutcomeRefused(
            f"the call {body.call_id} was to unit {ticket['unit']}, not {body.unit}"
        )
    if ticket["purpose"] != "night_check":
        raise OutcomeRefused(f"the call {body.call_id} was not a night check ({ticket['purpose']})")
    if ticket["actor"] != caller.staff_id:
        raise OutcomeRefused(f"the call {body.call_id} was made by another staff member", 403)
    if any(e["kind"] == OUTCOME_KIND for e in of_call):
        raise OutcomeRefused(f"an outcome is already recorded for the call {body.call_id}", 409)
    note = (body.note or "").strip()
    return audit.append(
        OUTCOME_KIND,
        actor=caller.staff_id,
        unit=body.unit,
        purpose="night_check",
        call_id=body.call_id,
        citizen=json.loads(ticket["detail"]).get("citizen"),
        outcome=body.outcome,
        note=note or None,
        address=address,
    )


_STATUS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
}


def _error(status: int, reason: str) -> web.HTTPException:
    cls = _STATUS.get(status, web.HTTPBadRequest)
    return cls(text=web.json_response({"error": reason}).text, content_type="application/json")


async def get_round(request: web.Request) -> web.Response:
    """``GET /api/round``: tonight's night checks of the caller's citizens."""
    caller = await authenticate(request, ROUND_ROLES, action="see the night round")
    app = request.app
    body = await asyncio.to_thread(
        night_round,
        app[DIRECTORY],
        app[AUDIT],
        app[STORE],
        app[THRESHOLDS],
        caller,
        app[RELAY].limits.timezone,
        time.time(),
    )
    return web.json_response(body)


async def post_outcome(request: web.Request) -> web.Response:
    """``POST /api/round/outcome {call_id, unit, outcome, note?}``."""
    caller = await authenticate(request, ROUND_ROLES, action="record night-check outcomes")
    audit = request.app[AUDIT]
    address = client_address(request)
    try:
        body = OutcomeRequest.model_validate_json(await request.read())
    except ValidationError as err:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in err.errors())
        reason = f"invalid outcome: {fields} (outcome is all_well or visit_needed)"
        await asyncio.to_thread(
            audit.append, "outcome_refused", actor=caller.staff_id, reason=reason, address=address
        )
        raise _error(400, reason) from None
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
        raise _error(err.status, str(err)) from None
    return web.json_response(
        {"call_id": body.call_id, "outcome": body.outcome, "audit_seq": entry.seq}
    )


def add_round_routes(app: web.Application) -> None:
    """Mount ``/api/round`` on ``app`` (after the staff API and the fleet API)."""
    app.router.add_get("/api/round", get_round)
    app.router.add_post("/api/round/outcome", post_outcome)

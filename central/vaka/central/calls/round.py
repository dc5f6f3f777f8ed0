"""The night round: tonight's scheduled night checks of the caller's citizens, and the outcome
staff record after each check.

``GET /api/round`` lists, for night staff, the night checks of the citizens their groups may
check (``night_check`` permissions); administrators see every citizen's. *Tonight* is the night
that contains the current moment, from 12:00 to 12:00 local time (``[calls] timezone``); a check
whose window is still open belongs to it even when it started before noon.

``POST /api/round/outcome`` records what the staff member saw — ``all_well`` or
``visit_needed`` (with an optional note) — as an audit entry ``supervision_outcome`` on the
call; :mod:`vaka.central.audit.reports` puts it in the record of performed supervisions.
"""

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from vaka.central.audit.trail import AuditEntry, AuditLog
from vaka.central.directory.directory import Directory, StaffMember
from vaka.central.fleet.status import derive_status
from vaka.central.fleet.store import FleetStore
from vaka.central.settings.fleet import Thresholds
from vaka.central.storage.tables import assignments, permissions, schedules
from vaka.protocol.reasons import Reason, code_of

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
        return _state("offline", [Reason("never connected", "never_connected")], None)
    status = derive_status(record, now, thresholds)
    return _state(status.status, status.reasons, status.since)


def _state(status: str, reasons: list[str], since: float | None) -> dict[str, Any]:
    """A unit's state in a check: the English reasons and their codes side by side."""
    codes = [code_of(r) for r in reasons]
    return {"status": status, "reasons": reasons, "reason_codes": codes, "since": since}


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
            for unit, profile in units.get(citizen, []) or [("", "")]:
                if unit and unit not in states:
                    states[unit] = _unit_state(store, unit, now, thresholds)
                entry = _check(occurrence, unit, done, now)
                checks.append(
                    {
                        "citizen": citizen,
                        "unit": unit or None,
                        "profile": profile or None,
                        "groups": sorted(citizens[citizen]),
                        **entry,
                        "unit_state": states.get(unit) if unit else NO_UNIT,
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


#: the unit state of a check whose citizen has no unit
NO_UNIT = _state("offline", [Reason("no unit assigned", "no_unit")], None)


def _check(occurrence: CheckTime, unit: str, done: _Performed, now: float) -> dict[str, Any]:
    """One check's time, window, timing and what was done about it (calls, outcome)."""
    window = [int(occurrence.start.timestamp()), int(occurrence.end.timestamp())]
    calls = [
        t
        for t in done.calls.values()
        if t.unit == unit and list(t.detail.get("window") or []) == window
    ]
    performed = [t for t in calls if t.call_id in done.ended]
    outcome = next(
        (done.outcomes[t.call_id] for t in reversed(calls) if t.call_id in done.outcomes),
        None,
    )
    if now < window[0]:
        timing = "upcoming"
    elif now <= window[1]:
        timing = "open"
    else:
        timing = "closed"
    return {
        "at": occurrence.at.isoformat(timespec="minutes"),
        "time": _hhmm(occurrence.at),
        "window": window,
        "window_text": f"{_hhmm(occurrence.start)}\u2013{_hhmm(occurrence.end)}",
        "timing": timing,
        "done": bool(performed) or outcome is not None,
        "calls": [t.call_id for t in calls],
        "outcome": outcome.detail.get("outcome") if outcome else None,
        "outcome_by": outcome.actor if outcome else None,
    }


class OutcomeRefused(ValueError):
    """An outcome cannot be recorded; the message says why. ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def record_outcome(
    audit: AuditLog, caller: StaffMember, body: OutcomeRequest, address: str
) -> AuditEntry:
    """Append ``supervision_outcome`` for the caller's own night-check call (blocking)."""
    of_call = audit.entries_of_call(body.call_id)
    ticket = next((e for e in of_call if e.kind == "ticket_issued"), None)
    if ticket is None:
        raise OutcomeRefused(f"no call {body.call_id} was started", 404)
    if ticket.unit != body.unit:
        raise OutcomeRefused(f"the call {body.call_id} was to unit {ticket.unit}, not {body.unit}")
    if ticket.purpose != "night_check":
        raise OutcomeRefused(f"the call {body.call_id} was not a night check ({ticket.purpose})")
    if ticket.actor != caller.staff_id:
        raise OutcomeRefused(f"the call {body.call_id} was made by another staff member", 403)
    if any(e.kind == OUTCOME_KIND for e in of_call):
        raise OutcomeRefused(f"an outcome is already recorded for the call {body.call_id}", 409)
    note = (body.note or "").strip()
    return audit.append(
        OUTCOME_KIND,
        actor=caller.staff_id,
        unit=body.unit,
        purpose="night_check",
        call_id=body.call_id,
        citizen=ticket.detail.get("citizen"),
        outcome=body.outcome,
        note=note or None,
        address=address,
    )

"""Alerts before a scheduled night check: a unit that cannot be reached in time needs a visit.

:class:`AlertWatch` runs in every central instance every ``[alerts] check_every_s``. For each
unit assigned to a citizen with night-check schedules it finds the next scheduled check
(:func:`vaka.central.directory.policy.next_check`, local time from ``[calls] timezone``); if the
unit's derived status (:mod:`vaka.central.fleet.status`) is offline or degraded and the check is
at most ``lead_min`` minutes away (or its window is open), it raises an alert: a row in
``alerts``, the audit entry ``alert_raised`` and the notifier event ``unit_down_before_check``.
When the unit is online again the alert is cleared (``alert_cleared``, ``unit_recovered``); when
the check's window has closed it is closed as expired (``alert_cleared`` with the reason, no
event).

Several instances may watch at once: ``(unit, check_at)`` is unique and every change is a
conditional write, so only the instance whose write took effect audits and notifies.
"""

import asyncio
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from vaka.central.alerts.notify import Notifier
from vaka.central.audit.trail import AuditLog
from vaka.central.directory.directory import Directory
from vaka.central.directory.policy import next_check
from vaka.central.fleet.status import UnitStatus, derive_status
from vaka.central.fleet.store import FleetStore
from vaka.central.settings.alerts import AlertSettings
from vaka.central.settings.fleet import Thresholds
from vaka.central.storage.engine import upsert
from vaka.central.storage.tables import alerts, assignments, permissions, schedules

log = logging.getLogger(__name__)


#: The status of the alert for a unit that reports calls central never placed
#: (:mod:`vaka.central.alerts.unplaced`): the watch leaves it open; staff close it.
FORGED_STATUS = "forged_events"

#: Roles that see every alert; others see those of their groups.
SEE_ALL_ROLES = frozenset({"support", "technician", "administrator"})


@dataclass(frozen=True)
class WatchedUnit:
    """A unit of a citizen with night checks, and the group responsible for it."""

    unit: str
    citizen: str
    group: str | None
    schedule: list[tuple[int, int]]


@dataclass(frozen=True)
class Alert:
    """One alert row."""

    id: str
    unit: str
    citizen: str
    group: str | None
    check_at: float
    check_until: float
    status: str
    reasons: list[str]
    raised_at: float
    cleared_at: float | None
    cleared_reason: str | None

    def view(self, timezone: str) -> dict[str, Any]:
        """The JSON shape in ``GET /api/alerts``."""
        local = dt.datetime.fromtimestamp(self.check_at, ZoneInfo(timezone))
        return {
            "id": self.id,
            "unit": self.unit,
            "citizen": self.citizen,
            "group": self.group,
            "check_at": self.check_at,
            "check_at_local": local.isoformat(timespec="minutes"),
            "status": self.status,
            "reasons": self.reasons,
            "raised_at": self.raised_at,
            "cleared_at": self.cleared_at,
            "cleared_reason": self.cleared_reason,
        }


class AlertStore:
    """The ``alerts`` table and the directory queries the watch needs. Blocking."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def watched_units(self) -> list[WatchedUnit]:
        """Every assigned unit whose citizen has night-check schedules."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    assignments.c.device_id,
                    assignments.c.citizen_id,
                    assignments.c.group_id,
                    schedules.c.at_minute,
                    schedules.c.tolerance_min,
                )
                .join(schedules, schedules.c.citizen_id == assignments.c.citizen_id)
                .where(schedules.c.purpose == "night_check")
                .order_by(assignments.c.device_id, schedules.c.at_minute)
            ).all()
            permitted = conn.execute(
                select(permissions.c.citizen_id, permissions.c.group_id)
                .where(permissions.c.purpose == "night_check", permissions.c.direction == "to_unit")
                .order_by(permissions.c.group_id)
            ).all()
        first_group: dict[str, str] = {}
        for citizen, group in permitted:
            first_group.setdefault(citizen, group)
        found: dict[str, WatchedUnit] = {}
        for unit, citizen, group, minute, tolerance in rows:
            if unit not in found:
                found[unit] = WatchedUnit(unit, citizen, group or first_group.get(citizen), [])
            found[unit].schedule.append((minute, tolerance))
        return list(found.values())

    def raise_alert(self, alert: Alert) -> Alert | None:
        """Insert ``alert`` or reopen a cleared one of the same unit and check; ``None`` if an
        open one exists already (this or another instance raised it)."""
        values = {
            "id": alert.id,
            "unit": alert.unit,
            "citizen": alert.citizen,
            "group_id": alert.group,
            "check_at": int(alert.check_at),
            "check_until": int(alert.check_until),
            "status": alert.status,
            "reasons": json.dumps(alert.reasons),
            "raised_at": alert.raised_at,
            "cleared_at": None,
            "cleared_reason": None,
        }
        ins = upsert(self.engine, alerts).values(**values)
        stmt = ins.on_conflict_do_update(
            index_elements=[alerts.c.unit, alerts.c.check_at],
            set_={
                "status": ins.excluded.status,
                "reasons": ins.excluded.reasons,
                "raised_at": ins.excluded.raised_at,
                "cleared_at": None,
                "cleared_reason": None,
            },
            where=alerts.c.cleared_at.is_not(None)
            & (alerts.c.check_until >= ins.excluded.raised_at),
        )
        with self.engine.begin() as conn:
            if not conn.execute(stmt).rowcount:
                return None
            row = (
                conn.execute(
                    select(alerts).where(
                        alerts.c.unit == alert.unit, alerts.c.check_at == int(alert.check_at)
                    )
                )
                .mappings()
                .one()
            )
        return _alert(dict(row))

    def clear(self, alert_id: str, at: float, reason: str) -> bool:
        """Close an open alert; ``False`` if it was closed already."""
        stmt = (
            update(alerts)
            .where(alerts.c.id == alert_id, alerts.c.cleared_at.is_(None))
            .values(cleared_at=at, cleared_reason=reason)
        )
        with self.engine.begin() as conn:
            return bool(conn.execute(stmt).rowcount)

    def open_alerts(self) -> list[Alert]:
        """Every open alert, soonest check first."""
        query = select(alerts).where(alerts.c.cleared_at.is_(None)).order_by(alerts.c.check_at)
        with self.engine.connect() as conn:
            return [_alert(dict(r)) for r in conn.execute(query).mappings()]

    def recent(self, limit: int = 200) -> list[Alert]:
        """The newest alerts, open or closed, newest first."""
        query = select(alerts).order_by(alerts.c.raised_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_alert(dict(r)) for r in conn.execute(query).mappings()]


def _alert(row: dict[str, Any]) -> Alert:
    return Alert(
        id=row["id"],
        unit=row["unit"],
        citizen=row["citizen"],
        group=row["group_id"],
        check_at=float(row["check_at"]),
        check_until=float(row["check_until"]),
        status=row["status"],
        reasons=json.loads(row["reasons"]),
        raised_at=row["raised_at"],
        cleared_at=row["cleared_at"],
        cleared_reason=row["cleared_reason"],
    )


def visible_alerts(directory: Directory, staff_id: str, found: list[Alert]) -> list[Alert]:
    """The alerts of ``staff_id``'s groups (the unit's group, or one allowed to check);
    blocking."""
    mine = directory.groups_of(staff_id)
    allowed: dict[str, set[str]] = {}
    visible = []
    for a in found:
        if a.citizen not in allowed:
            allowed[a.citizen] = directory.permitting_groups(a.citizen, "night_check", "to_unit")
        if (a.group in mine) or (mine & allowed[a.citizen]):
            visible.append(a)
    return visible


NEVER_SEEN = UnitStatus("offline", 0.0, ["never connected to central"])


class AlertWatch:
    """Raises and clears alerts; ``run()`` is one of the service's tasks."""

    def __init__(
        self,
        engine: Engine,
        fleet: FleetStore,
        directory: Directory,
        audit: AuditLog,
        notifier: Notifier,
        settings: AlertSettings,
        thresholds: Thresholds,
        timezone: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = AlertStore(engine)
        self.fleet = fleet
        self.directory = directory
        self.audit = audit
        self.notifier = notifier
        self.settings = settings
        self.thresholds = thresholds
        self.timezone = timezone
        self._tz = ZoneInfo(timezone)
        self._clock = clock

    async def run(self) -> None:
        """Check every ``check_every_s`` until cancelled; a failed round is logged and retried."""
        while True:
            await asyncio.sleep(self.settings.check_every_s)
            try:
                await self.check_once()
            except Exception:
                log.exception(
                    "alert check failed; trying again in %g s", self.settings.check_every_s
                )

    async def check_once(self, now: float | None = None) -> None:
        """One round: close what recovered or expired, raise what is down before its check."""
        now = self._clock() if now is None else now
        watched = await asyncio.to_thread(self.store.watched_units)
        records = {r.device_id: r for r in await asyncio.to_thread(self.fleet.units)}

        def status_of(unit: str) -> UnitStatus:
            record = records.get(unit)
            return NEVER_SEEN if record is None else derive_status(record, now, self.thresholds)

        for alert in await asyncio.to_thread(self.store.open_alerts):
            if alert.status == FORGED_STATUS:
                continue  # not about the unit being down: staff close it
            if now > alert.check_until:
                await self._clear(alert, now, "check time passed", notify=False)
            elif status_of(alert.unit).status == "online":
                await self._clear(alert, now, "unit back online", notify=True)
        local = dt.datetime.fromtimestamp(now, self._tz)
        lead_s = self.settings.lead_min * 60
        for w in watched:
            check = next_check(w.schedule, local)
            if check is None or check.at.timestamp() - now > lead_s:
                continue
            status = status_of(w.unit)
            if status.status == "online":
                continue
            candidate = Alert(
                str(uuid.uuid4()),
                w.unit,
                w.citizen,
                w.group,
                check.at.timestamp(),
                check.end.timestamp(),
                status.status,
                status.reasons,
                now,
                None,
                None,
            )
            raised = await asyncio.to_thread(self.store.raise_alert, candidate)
            if raised is not None:
                await self._announce_raised(raised, now)

    async def clear_by_staff(self, alert_id: str, staff_id: str, reason: str) -> bool:
        """Close an open alert on a staff member's word (audited); ``False`` if none is open."""
        now = self._clock()
        found = next(
            (a for a in await asyncio.to_thread(self.store.open_alerts) if a.id == alert_id), None
        )
        if found is None or not await asyncio.to_thread(self.store.clear, alert_id, now, "staff"):
            return False
        log.info("alert %s for unit %s closed by %s: %s", alert_id, found.unit, staff_id, reason)
        await asyncio.to_thread(
            self.audit.append,
            "alert_cleared",
            actor=staff_id,
            unit=found.unit,
            ts=now,
            alert_id=alert_id,
            status=found.status,
            reason=reason,
        )
        return True

    def _detail(self, alert: Alert) -> dict[str, Any]:
        local = dt.datetime.fromtimestamp(alert.check_at, self._tz)
        return {
            "alert_id": alert.id,
            "unit": alert.unit,
            "citizen": alert.citizen,
            "group": alert.group,
            "check_at": local.isoformat(timespec="minutes"),
            "check_at_ts": int(alert.check_at),
        }

    async def _announce_raised(self, alert: Alert, now: float) -> None:
        detail = {**self._detail(alert), "status": alert.status, "reasons": alert.reasons}
        minutes = max(0, round((alert.check_at - now) / 60))
        log.warning(
            "ALERT unit %s is %s (%s) and citizen %s has a night check at %s (in %d min)",
            alert.unit,
            alert.status,
            "; ".join(alert.reasons),
            alert.citizen,
            detail["check_at"],
            minutes,
        )
        await asyncio.to_thread(
            self.audit.append, "alert_raised", unit=alert.unit, ts=now, **_audited(detail)
        )
        await self.notifier.notify("unit_down_before_check", {**detail, "minutes_left": minutes})

    async def _clear(self, alert: Alert, now: float, reason: str, notify: bool) -> None:
        if not await asyncio.to_thread(self.store.clear, alert.id, now, reason):
            return
        detail = self._detail(alert)
        log.info("alert for unit %s cleared: %s", alert.unit, reason)
        await asyncio.to_thread(
            self.audit.append,
            "alert_cleared",
            unit=alert.unit,
            ts=now,
            reason=reason,
            **_audited(detail),
        )
        if notify:
            await self.notifier.notify(
                "unit_recovered", {**detail, "down_for_s": round(now - alert.raised_at)}
            )


def _audited(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in detail.items() if k != "unit"}

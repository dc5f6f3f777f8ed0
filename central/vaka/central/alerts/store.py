"""The ``alerts`` table: raising an alert once (across central instances), closing it once, and
the directory queries the watch needs.

``(unit, check_at)`` is unique and every change is a conditional write, so only the writer whose
change took effect audits and notifies.
"""

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from vaka.central.storage.engine import upsert
from vaka.central.storage.tables import alerts, assignments, permissions, schedules
from vaka.protocol.reasons import code_of, from_view, to_view

#: The status of the alert for a unit that reports calls central never placed
#: (:mod:`vaka.central.alerts.unplaced`): the watch leaves it open; staff close it.
FORGED_STATUS = "forged_events"
#: The status of the alert for a night check the citizen's privacy mode blocks, where the care
#: provider's rule sends a physical visit instead (:mod:`vaka.central.alerts.privacy_visit`):
#: the watch leaves it open; staff close it (or the mode ends before the check).
PRIVACY_STATUS = "privacy_mode"


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
            "reason_codes": [code_of(r) for r in self.reasons],
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
        open one exists already (this or another instance raised it: its status and reasons
        become ``alert``'s, nobody is told again)."""
        values = {
            "id": alert.id,
            "unit": alert.unit,
            "citizen": alert.citizen,
            "group_id": alert.group,
            "check_at": int(alert.check_at),
            "check_until": int(alert.check_until),
            "status": alert.status,
            "reasons": json.dumps([to_view(r) for r in alert.reasons]),
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
                # Open already: it keeps its id and raise time, but says why the unit is down
                # now (it may have connected and stopped since "never connected").
                conn.execute(
                    update(alerts)
                    .where(
                        alerts.c.unit == alert.unit,
                        alerts.c.check_at == int(alert.check_at),
                        alerts.c.cleared_at.is_(None),
                    )
                    .values(status=values["status"], reasons=values["reasons"])
                )
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

    def open_alerts_of(self, unit: str) -> list[Alert]:
        """The unit's open alerts, soonest check first."""
        query = (
            select(alerts)
            .where(alerts.c.unit == unit, alerts.c.cleared_at.is_(None))
            .order_by(alerts.c.check_at)
        )
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
        reasons=[from_view(r) for r in json.loads(row["reasons"])],
        raised_at=row["raised_at"],
        cleared_at=row["cleared_at"],
        cleared_reason=row["cleared_reason"],
    )

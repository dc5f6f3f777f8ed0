"""Alerts before a scheduled night check: a unit that cannot be reached in time needs a visit.

:class:`AlertWatch` runs in every central instance every ``[alerts] check_every_s``. For each
unit assigned to a citizen with night-check schedules it finds the next scheduled check
(:func:`vaka.central.directory.policy.next_check`, local time from ``[calls] timezone``); if the
unit's derived status (:mod:`vaka.central.fleet.status`) is offline or degraded and the check is
at most ``lead_min`` minutes away (or its window is open), it raises an alert: a row in
``alerts``, the audit entry ``alert_raised`` and the notifier event ``unit_down_before_check``.
When the unit is online again the alert is cleared (``alert_cleared``, ``unit_recovered``); when
the check's window has closed it is closed as expired (``alert_cleared`` with the reason, no
event). A unit that is suspended, revoked or decommissioned (its lifecycle,
:mod:`vaka.central.fleet.lifecycle`) gets no alerts; :meth:`AlertWatch.close_for_unit` closes
its open ones with the reason when it enters that state (and each round closes any left over).

Several instances may watch at once: ``(unit, check_at)`` is unique and every change is a
conditional write, so only the instance whose write took effect audits and notifies.
"""

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from vaka.central.alerts.notify import Notifier
from vaka.central.alerts.store import FORGED_STATUS, PRIVACY_STATUS, Alert, AlertStore
from vaka.central.audit.trail import AuditLog
from vaka.central.directory.directory import Directory
from vaka.central.directory.policy import next_check
from vaka.central.fleet.lifecycle import QUIET, LifecycleStore
from vaka.central.fleet.status import NEVER_CONNECTED, UnitStatus, derive_status
from vaka.central.fleet.store import FleetStore
from vaka.central.settings.alerts import AlertSettings
from vaka.central.settings.fleet import Thresholds

log = logging.getLogger(__name__)


#: Roles that see every alert; others see those of their groups.
SEE_ALL_ROLES = frozenset({"support", "technician", "administrator"})


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


NEVER_SEEN = UnitStatus("offline", 0.0, [NEVER_CONNECTED])


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
        self.lifecycle = LifecycleStore(engine)
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
        quiet = {
            unit: record
            for unit, record in (await asyncio.to_thread(self.lifecycle.all)).items()
            if record.state in QUIET
        }

        def status_of(unit: str) -> UnitStatus:
            record = records.get(unit)
            return NEVER_SEEN if record is None else derive_status(record, now, self.thresholds)

        for alert in await asyncio.to_thread(self.store.open_alerts):
            if alert.unit in quiet:
                await self._clear(alert, now, _left_service(quiet[alert.unit].state), notify=False)
            elif alert.status in (FORGED_STATUS, PRIVACY_STATUS):
                continue  # not about the unit being down: staff close it
            if now > alert.check_until:
                await self._clear(alert, now, "check time passed", notify=False)
            elif status_of(alert.unit).status == "online":
                await self._clear(alert, now, "unit back online", notify=True)
        local = dt.datetime.fromtimestamp(now, self._tz)
        lead_s = self.settings.lead_min * 60
        for w in watched:
            if w.unit in quiet:
                continue  # not expected to answer: nobody is sent because of it
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

    async def close_for_unit(self, unit: str, reason: str, actor: str | None) -> int:
        """Close every open alert of ``unit`` (it was revoked, decommissioned or suspended) with
        ``reason``, each audited once; how many this call closed."""
        now = self._clock()
        closed = 0
        for alert in await asyncio.to_thread(self.store.open_alerts_of, unit):
            closed += await self._clear(alert, now, reason[:64], notify=False, actor=actor)
        return closed

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

    async def _clear(
        self, alert: Alert, now: float, reason: str, notify: bool, actor: str | None = None
    ) -> bool:
        if not await asyncio.to_thread(self.store.clear, alert.id, now, reason):
            return False
        detail = self._detail(alert)
        log.info("alert for unit %s cleared: %s", alert.unit, reason)
        await asyncio.to_thread(
            self.audit.append,
            "alert_cleared",
            actor=actor,
            unit=alert.unit,
            ts=now,
            reason=reason,
            **_audited(detail),
        )
        if notify:
            await self.notifier.notify(
                "unit_recovered", {**detail, "down_for_s": round(now - alert.raised_at)}
            )
        return True


def _left_service(state: str) -> str:
    """The reason an alert of a unit in a quiet lifecycle state is closed with."""
    return f"unit {state}"


def _audited(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in detail.items() if k != "unit"}

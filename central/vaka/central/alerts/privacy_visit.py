"""A physical visit instead of a night check that the citizen's privacy mode blocks.

When a citizen starts a privacy mode ("I have visitors", "I am away") and a night check of their
care decision falls inside it, the care provider's rule (``[privacy] privacy_mode_visit``)
decides: ``physical_visit`` (the default) raises an alert for the check — status
``privacy_mode``, "the citizen has visitors until 23:40; a physical visit replaces the night
check" — which stays open until staff close it; ``skip`` raises nothing (the check is refused and
the audit trail says why). A mode that ends before its check closes the alert again.

Runs as an ingest hook after :class:`~vaka.central.fleet.privacy_mode.PrivacyModes` (blocking,
on the writing thread).
"""

import datetime as dt
import logging
import uuid
from zoneinfo import ZoneInfo

from vaka.central.alerts.store import PRIVACY_STATUS, Alert, AlertStore
from vaka.central.audit.trail import AuditLog
from vaka.central.directory.directory import Directory
from vaka.central.directory.policy import next_check
from vaka.central.fleet.privacy_mode import PrivacyModes
from vaka.central.fleet.store import EventRecord

log = logging.getLogger(__name__)

VISIT_REASON = "a physical visit replaces the night check"
#: The most checks one mode raises alerts for (a mode lasts at most a day).
MAX_CHECKS = 8


class PrivacyVisits:
    """Raises (and closes) the alerts for physical visits the privacy mode calls for."""

    def __init__(
        self,
        store: AlertStore,
        directory: Directory,
        audit: AuditLog,
        modes: PrivacyModes,
        rule: str,
        timezone: str,
    ) -> None:
        self.store = store
        self.directory = directory
        self.audit = audit
        self.modes = modes
        self.rule = rule
        self.timezone = timezone

    def on_event_record(self, record: EventRecord) -> None:
        """An ingest hook: a unit's privacy mode started or ended."""
        if record.kind != "privacy":
            return
        if record.detail.get("action") == "ended":
            self._mode_ended(record.device_id, record.received_at)
            return
        active = self.modes.active(record.device_id, record.received_at)
        if active is None or self.rule != "physical_visit":
            return
        citizen = self.directory.citizen_of(active.unit)
        if citizen is None:
            return
        schedule = self.directory.schedule(citizen)
        tz = ZoneInfo(self.timezone)
        at = dt.datetime.fromtimestamp(active.since, tz)
        reason = active.reason(self.timezone)
        for _ in range(MAX_CHECKS):
            check = next_check(schedule, at)
            if check is None or check.at.timestamp() >= active.until:
                return
            group = sorted(self.directory.permitting_groups(citizen, "night_check", "to_unit"))
            candidate = Alert(
                str(uuid.uuid4()),
                active.unit,
                citizen,
                group[0] if group else None,
                check.at.timestamp(),
                check.end.timestamp(),
                PRIVACY_STATUS,
                [reason, VISIT_REASON],
                record.received_at,
                None,
                None,
            )
            raised = self.store.raise_alert(candidate)
            if raised is not None:
                log.warning(
                    "ALERT unit %s: %s; %s at %s",
                    active.unit,
                    reason,
                    VISIT_REASON,
                    check.at.isoformat(timespec="minutes"),
                )
                self.audit.append(
                    "alert_raised",
                    unit=active.unit,
                    ts=record.received_at,
                    alert_id=raised.id,
                    citizen=citizen,
                    check_at=check.at.isoformat(timespec="minutes"),
                    status=PRIVACY_STATUS,
                    reasons=[str(reason), VISIT_REASON],
                )
            at = check.end + dt.timedelta(minutes=1)

    def _mode_ended(self, unit: str, now: float) -> None:
        """The mode ended early: the checks still ahead can be made again."""
        for alert in self.store.open_alerts_of(unit):
            if alert.status != PRIVACY_STATUS or alert.check_at <= now:
                continue
            if self.store.clear(alert.id, now, "privacy mode ended"):
                self.audit.append(
                    "alert_cleared",
                    unit=unit,
                    ts=now,
                    alert_id=alert.id,
                    status=PRIVACY_STATUS,
                    reason="privacy mode ended",
                )
